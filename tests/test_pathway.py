"""The pathway view: consent and owner rules, claims and concurrent moves, erasure,
follow-up due and the pathway report (docs/pathway.md)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubnode.events.envelope import event_id
from hubnode.events.feedback import ServiceRef
from hubnode.events.ids import hub_display
from hubnode.events.pathway import (
    AdvocacyClosed,
    AdvocacyOpened,
    ConsentRecorded,
    ConsentWithdrawn,
    EnquiryLogged,
    FollowupRecorded,
    KeyBox,
    ReferralClaimed,
    ReferralOutcomeRecorded,
    ReferralRef,
    ReferralRequested,
    ReferralStatusChanged,
    Sealed,
    SubjectErased,
    SubjectErasureConfirmed,
)
from hubnode.projections.pathway import PathwayProjection
from hubnode.projections.pathway_read import (
    DAY_MS,
    cases,
    claimable,
    followups_due,
    nearest_rank,
    pathway_report,
    referral,
    subject_info,
    timeline,
)
from hubnode.testing import ChainWriter, ProjectionHarness

NET = "test-net"
P = "pathway"
S1 = "s-" + "a" * 20
S2 = "s-" + "b" * 20


def harness() -> ProjectionHarness:
    return ProjectionHarness(PathwayProjection, net=NET)


def sealed(tag: str) -> Sealed:
    return Sealed(nonce=bytes(12), data=tag.encode().ljust(16, b"."))


def boxes(*hubs: ChainWriter) -> tuple[KeyBox, ...]:
    """Stand-in key boxes (the view checks who they are for, never opens them)."""
    ids = dict.fromkeys(hub_display(h.hub) for h in hubs)
    return tuple(
        KeyBox(hub=i, key=hashlib.sha256(i.encode()).digest(), epk=bytes(32), box=bytes(48))
        for i in ids
    )


def enquiry(w: ChainWriter, subject: str = S1, eid: str = "e1", **kw: object) -> bytes:
    fields: dict[str, object] = {"channel": "walk-in", "needs": ("housing",)} | kw
    body = EnquiryLogged(enquiry=eid, subject=subject, person=sealed(f"person {eid}"), **fields)  # type: ignore[arg-type]
    return w.next("enquiry.logged", body)


def consent(
    w: ChainWriter,
    *recipients: ChainWriter,
    subject: str = S1,
    purposes: tuple[str, ...] = ("referral", "follow-up"),
    keys: tuple[KeyBox, ...] | None = None,
) -> bytes:
    body = ConsentRecorded(
        subject=subject,
        purposes=purposes,  # type: ignore[arg-type]
        recipients=tuple(hub_display(r.hub) for r in recipients),
        keys=boxes(w, *recipients) if keys is None else keys,
    )
    return w.next("consent.recorded", body)


def refer(
    w: ChainWriter,
    rid: str,
    to: ChainWriter | None = None,
    *,
    subject: str = S1,
    category: str | None = None,
    service: str | None = None,
) -> bytes:
    body = ReferralRequested(
        referral=rid,
        subject=subject,
        to_hub=hub_display(to.hub) if to is not None and service is None else None,
        service=ServiceRef(hub=hub_display(to.hub), id=service) if to and service else None,
        category=category,
        note=sealed(f"note {rid}"),
    )
    return w.next("referral.requested", body)


def ref(owner: ChainWriter, rid: str) -> ReferralRef:
    return ReferralRef(hub=hub_display(owner.hub), id=rid)


def move(
    w: ChainWriter, owner: ChainWriter, rid: str, parent: bytes, status: str, reason: str = ""
) -> bytes:
    body = ReferralStatusChanged(
        referral=ref(owner, rid),
        parent=event_id(parent),
        status=status,  # type: ignore[arg-type]
        reason=reason,
    )
    return w.next("referral.status_changed", body)


def claim(w: ChainWriter, owner: ChainWriter, rid: str, parent: bytes) -> bytes:
    return w.next(
        "referral.claimed", ReferralClaimed(referral=ref(owner, rid), parent=event_id(parent))
    )


def state(h: ProjectionHarness, owner: ChainWriter, rid: str) -> tuple[str, bytes | None]:
    r = referral(h.runner, owner.hub, rid)
    assert r is not None
    return r.status, r.receiver


def ignored_reason(h: ProjectionHarness, w: ChainWriter, seq: int) -> str:
    return h.ignored(P).get((w.hub, seq), "")


# -- consent and owner rules -----------------------------------------------------------


def test_a_referral_to_a_hub_outside_the_consent_is_ignored_on_every_hub() -> None:
    with harness() as h:
        a, b, c = h.writer(), h.writer(), h.writer()
        h.feed([enquiry(a), consent(a, b), refer(a, "r1", c), refer(a, "r2", b)])
        assert referral(h.runner, a.hub, "r1") is None
        assert "does not name " + hub_display(c.hub) in ignored_reason(h, a, 3)
        assert state(h, a, "r2") == ("requested", b.hub)


def test_a_referral_needs_referral_among_the_consents_purposes() -> None:
    with harness() as h:
        a, b = h.writer(), h.writer()
        h.feed([enquiry(a), consent(a, b, purposes=("follow-up",)), refer(a, "r1", b)])
        assert referral(h.runner, a.hub, "r1") is None
        assert "does not cover referral" in ignored_reason(h, a, 3)


def test_the_owner_may_refer_to_itself_without_other_recipients() -> None:
    with harness() as h:
        a = h.writer()
        h.feed([enquiry(a), consent(a), refer(a, "r1", a, service="advice")])
        assert state(h, a, "r1") == ("requested", a.hub)


def test_consent_keys_must_box_exactly_the_recipients_and_the_owner() -> None:
    with harness() as h:
        a, b, c = h.writer(), h.writer(), h.writer()
        h.feed(
            [
                enquiry(a),
                consent(a, b, keys=boxes(b)),  # the owner itself has no box
                consent(a, b, keys=boxes(b, c)),  # a box for a hub not in consent
            ]
        )
        assert "missing ['" + hub_display(a.hub) in ignored_reason(h, a, 2)
        assert "extra ['" + hub_display(c.hub) in ignored_reason(h, a, 3)
        info = subject_info(h.runner, a.hub, S1)
        assert info is not None and info.consent.recipients == ()


def test_withdrawn_consent_leaves_no_recipients_so_referrals_to_others_are_ignored() -> None:
    with harness() as h:
        a, b = h.writer(), h.writer()
        h.feed([enquiry(a), consent(a, b)])
        h.feed([a.next("consent.withdrawn", ConsentWithdrawn(subject=S1)), refer(a, "r1", b)])
        info = subject_info(h.runner, a.hub, S1)
        assert info is not None and info.consent.withdrawn and info.consent.recipients == ()
        assert referral(h.runner, a.hub, "r1") is None


def test_only_the_owner_records_consent_refers_and_erases() -> None:
    with harness() as h:
        a, b = h.writer(), h.writer()
        h.feed([enquiry(a), consent(a)])
        h.feed(
            [
                consent(b, b),
                refer(b, "r1", b),
                b.next("subject.erased", SubjectErased(subject=S1, reason="asked")),
            ]
        )
        for seq in (1, 2, 3):
            assert "logged no enquiry for " + S1 in ignored_reason(h, b, seq)
        info = subject_info(h.runner, a.hub, S1)
        assert info is not None and not info.erased


def test_a_repeated_local_id_from_the_same_hub_is_ignored() -> None:
    with harness() as h:
        a, b = h.writer(), h.writer()
        h.feed([enquiry(a), enquiry(a), consent(a, b), refer(a, "r1", b), refer(a, "r1", a)])
        assert "already logged an enquiry" in ignored_reason(h, a, 2)
        assert "already made a referral" in ignored_reason(h, a, 5)
        assert state(h, a, "r1") == ("requested", b.hub)


# -- lifecycle, claims and concurrent moves --------------------------------------------


def test_moves_follow_the_table_and_others_are_ignored_with_from_to_and_role() -> None:
    with harness() as h:
        a, b = h.writer(), h.writer()
        h.feed([enquiry(a), consent(a, b)])
        r = refer(a, "r1", b)
        h.feed([r])
        early = move(a, a, "r1", r, "completed")  # the referring hub cannot complete
        accept = move(b, a, "r1", r, "accepted")
        h.feed([early, accept])
        assert state(h, a, "r1") == ("accepted", b.hub)
        why = ignored_reason(h, a, 4)
        assert "from requested to completed" in why
        hold = move(b, a, "r1", accept, "on-hold")  # needs a reason
        h.feed([hold])
        assert "needs a reason" in ignored_reason(h, b, 2)
        assert state(h, a, "r1") == ("accepted", b.hub)


def test_two_hubs_claiming_one_open_referral_resolve_the_same_way_in_any_order() -> None:
    a, b, c = ChainWriter(NET), ChainWriter(NET), ChainWriter(NET)
    setup = [enquiry(a), consent(a, b, c)]
    r = refer(a, "r1", category="housing")
    claims = [claim(b, a, "r1", r), claim(c, a, "r1", r)]
    winner = b if event_id(claims[0]) < event_id(claims[1]) else c
    loser = c if winner is b else b
    results = []
    for order in (claims, claims[::-1]):
        with harness() as h:
            h.feed([*setup, r, *order])
            results.append(h.hash(P))
            assert state(h, a, "r1") == ("accepted", winner.hub)
            assert "lower event id wins" in ignored_reason(h, loser, 1)
            assert claimable(h.runner, loser.hub) == []
    assert results[0] == results[1]


def test_a_claim_needs_an_open_referral_and_a_consented_hub_other_than_the_owner() -> None:
    with harness() as h:
        a, b, outsider = h.writer(), h.writer(), h.writer()
        h.feed([enquiry(a), consent(a, b)])
        open_r = refer(a, "r1", category="food")
        named = refer(a, "r2", b)
        h.feed([open_r, named])
        assert [r.id for r in claimable(h.runner, b.hub)] == ["r1"]
        h.feed([claim(outsider, a, "r1", open_r), claim(a, a, "r1", open_r)])
        h.feed([claim(b, a, "r2", named)])
        assert "does not name" in ignored_reason(h, outsider, 1)
        assert "cannot claim its own" in ignored_reason(h, a, 5)
        assert "not an open referral" in ignored_reason(h, b, 1)
        assert state(h, a, "r1") == ("requested", None)


def test_a_cancel_racing_an_accept_resolves_the_same_way_in_any_order() -> None:
    a, b = ChainWriter(NET), ChainWriter(NET)
    setup = [enquiry(a), consent(a, b)]
    r = refer(a, "r1", b)
    setup.append(r)
    cancel = move(a, a, "r1", r, "cancelled", "no longer needed")
    accept = move(b, a, "r1", r, "accepted")
    start = move(b, a, "r1", accept, "in-progress")  # builds on the accept
    accept_wins = event_id(accept) < event_id(cancel)
    hashes = set()
    for order in ([cancel, accept, start], [accept, start, cancel], [start, cancel, accept]):
        with harness() as h:
            h.feed(setup + order)
            hashes.add(h.hash(P))
            if accept_wins:
                assert state(h, a, "r1") == ("in-progress", b.hub)
                assert "lower event id wins" in ignored_reason(h, a, 4)
            else:
                assert state(h, a, "r1") == ("cancelled", b.hub)
                assert "follows a move that was ignored" in ignored_reason(h, b, 2)
    assert len(hashes) == 1


def test_a_move_whose_parent_has_not_arrived_waits_and_is_not_ignored() -> None:
    with harness() as h:
        a, b = h.writer(), h.writer()
        setup = [enquiry(a), consent(a, b)]
        r = refer(a, "r1", b)
        accept = move(b, a, "r1", r, "accepted")
        h.feed([accept])  # the referral itself is still on its way
        assert h.ignored(P) == {}
        assert h.query(P, "SELECT state FROM {moves}") == [("waiting",)]
        h.feed([*setup, r])
        assert state(h, a, "r1") == ("accepted", b.hub)
        assert [s.state for s in timeline(h.runner, a.hub, "r1")] == ["applied"]


def test_outcomes_count_only_from_the_receiving_hub_and_the_latest_wins() -> None:
    with harness() as h:
        a, b = h.writer(), h.writer()
        h.feed([enquiry(a), consent(a, b)])
        r = refer(a, "r1", b)
        h.feed([r, move(b, a, "r1", r, "accepted")])
        out = ReferralOutcomeRecorded(referral=ref(a, "r1"), outcome="housed", satisfied=True)
        h.feed([a.next("referral.outcome_recorded", out)])
        assert "only the receiving hub" in ignored_reason(h, a, 4)
        h.feed([b.next("referral.outcome_recorded", out)])
        later = ReferralOutcomeRecorded(referral=ref(a, "r1"), outcome="moved", satisfied=False)
        h.feed([b.next("referral.outcome_recorded", later)])
        got = referral(h.runner, a.hub, "r1")
        assert got is not None and (got.outcome, got.satisfied) == ("moved", False)


def test_followups_and_advocacy_come_from_the_owner_or_the_consent_snapshot() -> None:
    with harness() as h:
        a, b, outsider = h.writer(), h.writer(), h.writer()
        h.feed([enquiry(a), consent(a, b), refer(a, "r1", b)])
        fu = FollowupRecorded(followup="f1", referral=ref(a, "r1"), satisfied=False)
        opened = AdvocacyOpened(case="c1", referral=ref(a, "r1"))
        h.feed([outsider.next("followup.recorded", fu), outsider.next("advocacy.opened", opened)])
        h.feed([b.next("followup.recorded", fu), b.next("advocacy.opened", opened)])
        # A later consent naming the outsider changes nothing: the snapshot is judged.
        h.feed([consent(a, b, outsider)])
        h.feed([a.next("advocacy.closed", AdvocacyClosed(case="c1", outcome="resolved"))])
        assert "neither the referring hub nor named" in ignored_reason(h, outsider, 1)
        assert "neither the referring hub nor named" in ignored_reason(h, outsider, 2)
        assert "opened no advocacy case c1" in ignored_reason(h, a, 5)
        got = referral(h.runner, a.hub, "r1")
        assert got is not None and got.followups == 1
        assert [(c.hub, c.id, c.is_open) for c in cases(h.runner)] == [(b.hub, "c1", True)]
        h.feed([b.next("advocacy.closed", AdvocacyClosed(case="c1", outcome="resolved"))])
        assert [(c.outcome, c.is_open) for c in cases(h.runner)] == [("resolved", False)]


# -- erasure ----------------------------------------------------------------------------


def sealed_columns(h: ProjectionHarness) -> list[object]:
    found: list[object] = []
    for sql in (
        "SELECT nonce, sealed FROM {enquiries}",
        "SELECT nonce, sealed FROM {referrals}",
        "SELECT nonce, sealed FROM {followups}",
        "SELECT nonce, sealed, close_nonce, close_sealed FROM {cases}",
    ):
        found += [v for row in h.query(P, sql) for v in row if v is not None]
    return found


def test_erasure_drops_every_sealed_byte_of_the_subject_also_from_later_events() -> None:
    with harness() as h:
        a, b = h.writer(), h.writer()
        fu = FollowupRecorded(
            followup="f1", referral=ref(a, "r1"), satisfied=False, note=sealed("fu")
        )
        h.feed([enquiry(a), consent(a, b), refer(a, "r1", b), b.next("followup.recorded", fu)])
        assert len(sealed_columns(h)) == 6
        erase = SubjectErased(subject=S1, reason="the person asked")
        h.feed([a.next("subject.erased", erase)])
        assert sealed_columns(h) == []
        late = AdvocacyOpened(case="c1", referral=ref(a, "r1"), note=sealed("late"))
        h.feed([b.next("advocacy.opened", late)])
        h.feed([enquiry(a, eid="e2"), consent(a, b), refer(a, "r2", b)])
        assert sealed_columns(h) == []
        for seq in (5, 6, 7):
            assert "was erased by its hub" in ignored_reason(h, a, seq)
        info = subject_info(h.runner, a.hub, S1)
        assert info is not None and info.erased and info.erase_reason == "the person asked"
        assert [e.person for e in info.enquiries] == [None]


def test_an_erasure_confirmation_counts_even_when_it_arrives_before_the_erasure() -> None:
    with harness() as h:
        a, b = h.writer(), h.writer()
        setup = [enquiry(a), consent(a, b)]
        erase = a.next("subject.erased", SubjectErased(subject=S1, reason="asked"))
        confirm = SubjectErasureConfirmed(owner=hub_display(a.hub), subject=S1)
        h.feed([b.next("subject.erasure_confirmed", confirm)])
        h.feed([*setup, erase])
        info = subject_info(h.runner, a.hub, S1)
        assert info is not None and [c.hub for c in info.confirmations] == [b.hub]


# -- every order, the same view ----------------------------------------------------------


def history() -> list[list[bytes]]:
    """Five hubs working on two people: claims, races, outcomes, follow-up, advocacy,
    an outsider, a late move and an erasure."""
    a, b, c, d, e = (ChainWriter(NET) for _ in range(5))
    a_events = [enquiry(a), consent(a, b, c, d), enquiry(a, S2, "e2", channel="phone")]
    a_events.append(consent(a, b, subject=S2))
    r1 = refer(a, "r1", category="housing")
    r2 = refer(a, "r2", b, subject=S1)
    a_events += [r1, r2, refer(a, "r3", b, subject=S2)]
    b_claim, c_claim = claim(b, a, "r1", r1), claim(c, a, "r1", r1)
    b_accept = move(b, a, "r2", r2, "accepted")
    a_cancel = move(a, a, "r2", r2, "cancelled", "found elsewhere")
    b_start = move(b, a, "r2", b_accept, "in-progress")
    b_done = move(b, a, "r2", b_start, "completed")
    out = ReferralOutcomeRecorded(referral=ref(a, "r2"), outcome="tenancy kept", satisfied=True)
    b_out = b.next("referral.outcome_recorded", out)
    a_events += [a_cancel, a.next("subject.erased", SubjectErased(subject=S2, reason="asked"))]
    fu = FollowupRecorded(followup="f1", referral=ref(a, "r2"), satisfied=False)
    a_events.append(a.next("followup.recorded", fu))
    d_open = d.next("advocacy.opened", AdvocacyOpened(case="c1", referral=ref(a, "r2")))
    d_close = d.next("advocacy.closed", AdvocacyClosed(case="c1", outcome="resolved"))
    c_fail = move(c, a, "r1", c_claim, "failed", "no capacity")
    e_claim = claim(e, a, "r1", r1)
    confirm = SubjectErasureConfirmed(owner=hub_display(a.hub), subject=S2)
    b_events = [
        b_claim,
        b_accept,
        b_start,
        b_done,
        b_out,
        b.next("subject.erasure_confirmed", confirm),
    ]
    return [a_events, b_events, [c_claim, c_fail], [d_open, d_close], [e_claim]]


HISTORY = history()


def hash_of(order: Sequence[int], cut: int) -> str:
    nexts = [0] * len(HISTORY)
    records = []
    for hub in order:
        records.append(HISTORY[hub][nexts[hub]])
        nexts[hub] += 1
    with harness() as h:
        h.feed(records[:cut])
        h.feed(records[cut:])
        return h.hash(P)


ALL = [i for i, hub in enumerate(HISTORY) for _ in hub]
REFERENCE = hash_of(ALL, 0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=st.permutations(ALL), cut=st.integers(0, len(ALL)))
def test_hubs_holding_the_same_events_compute_the_same_pathway_hash(
    order: list[int], cut: int
) -> None:
    # Each hub's events in seq order, hubs mixed any way: what gossip may deliver.
    assert hash_of(order, cut) == REFERENCE


def test_the_pathway_hash_differs_when_a_fact_differs() -> None:
    other = [HISTORY[0], HISTORY[1][:-2], *HISTORY[2:]]
    with harness() as h:
        h.feed([r for hub in other for r in hub])
        assert h.hash(P) != REFERENCE


# -- follow-up due and the report ---------------------------------------------------------


def test_followups_due_depend_only_on_the_clock_asked_about() -> None:
    with harness() as h:
        a, b = h.writer(), h.writer()
        t0 = 1_800_000_000_000
        a.ts = b.ts = t0
        setup = [enquiry(a), consent(a, b)]
        r1, r2 = refer(a, "r1", b), refer(a, "r2", b)
        setup += [r1, r2]
        accept = move(b, a, "r1", r1, "accepted")
        b.ts = t0 + DAY_MS
        done = move(b, a, "r1", accept, "completed")
        h.feed([*setup, accept, done])
        completed_at = t0 + DAY_MS
        assert followups_due(h.runner, a.hub, t0 + 3 * DAY_MS - 10) == []
        [unanswered] = followups_due(h.runner, a.hub, t0 + 3 * DAY_MS + 10)
        assert (unanswered.referral.id, unanswered.why) == ("r2", "unanswered")
        due = completed_at + 14 * DAY_MS
        assert [d.referral.id for d in followups_due(h.runner, a.hub, due - 1)] == ["r2"]
        listed = followups_due(h.runner, a.hub, due)
        assert [(d.referral.id, d.why, d.due) for d in listed][-1] == ("r1", "follow-up", due)
        assert followups_due(h.runner, a.hub, due, days=30, answer_days=30) == []
        fu = FollowupRecorded(followup="f1", referral=ref(a, "r1"), satisfied=True)
        h.feed([a.next("followup.recorded", fu)])
        assert [d.referral.id for d in followups_due(h.runner, a.hub, due)] == ["r2"]
        assert followups_due(h.runner, b.hub, due) == []  # only the referring hub chases


def test_the_pathway_report_counts_channels_needs_outcomes_response_and_followup_rate() -> None:
    with harness() as h:
        a, b = h.writer(), h.writer()
        t0 = 1_800_000_000_000
        a.ts = b.ts = t0
        records = [
            enquiry(a, channel="phone", needs=("housing", "debt")),
            consent(a, b),
            enquiry(a, eid="e2", channel="web", needs=("debt",)),
        ]
        rs = [refer(a, f"r{i}", b) for i in range(3)]
        records += rs
        b.ts = t0 + 1000
        acc0 = move(b, a, "r0", rs[0], "accepted")
        b.ts = t0 + 5000
        acc1 = move(b, a, "r1", rs[1], "accepted")
        done0 = move(b, a, "r0", acc0, "completed")
        fail1 = move(b, a, "r1", acc1, "failed", "closed down")
        out = ReferralOutcomeRecorded(referral=ref(a, "r0"), outcome="fine", satisfied=True)
        fu = FollowupRecorded(followup="f1", referral=ref(a, "r0"), satisfied=False)
        records += [acc0, acc1, done0, fail1, b.next("referral.outcome_recorded", out)]
        records.append(a.next("followup.recorded", fu))
        h.feed(records)
        rep = pathway_report(h.runner, a.hub)
        assert (rep.enquiries, rep.by_channel["phone"], rep.by_channel["web"]) == (2, 1, 1)
        assert rep.by_need == {"debt": 2, "housing": 1}
        assert (rep.referrals, rep.by_status["completed"], rep.by_status["failed"]) == (3, 1, 1)
        assert rep.by_status["requested"] == 1
        assert rep.outcome_satisfied == {"yes": 1, "no": 0, "none": 2}
        assert rep.followup_satisfied == {"yes": 0, "no": 1}
        assert rep.responded == 2
        assert rep.response_median_ms is not None and rep.response_p90_ms is not None
        assert rep.response_median_ms < rep.response_p90_ms
        assert (rep.closed, rep.followed_up, rep.followup_rate) == (2, 1, 0.5)


def test_nearest_rank_percentiles() -> None:
    assert nearest_rank([], 50) is None
    assert nearest_rank([5], 90) == 5
    assert nearest_rank([4, 1, 3, 2], 50) == 2
    assert nearest_rank(list(range(1, 11)), 90) == 9
    assert nearest_rank(list(range(1, 11)), 100) == 10


def test_next_moves_say_what_each_hub_may_do() -> None:
    with harness() as h:
        a, b, c = h.writer(), h.writer(), h.writer()
        h.feed([enquiry(a), consent(a, b, c)])
        open_r = refer(a, "r1", category="food")
        h.feed([open_r])
        r = referral(h.runner, a.hub, "r1")
        assert r is not None
        assert r.next_moves(a.hub) == ["cancelled", "entered-in-error"]
        assert r.next_moves(b.hub) == ["claim"]
        h.feed([claim(b, a, "r1", open_r)])
        r = referral(h.runner, a.hub, "r1")
        assert r is not None
        assert r.next_moves(b.hub) == ["in-progress", "on-hold", "completed", "failed"]
        assert r.next_moves(c.hub) == []
