"""Reading the pathway view: referrals and their next moves, follow-ups due, advocacy
cases, a subject's record and the per-hub pathway report.

Every function takes the hub's :class:`ProjectionRunner` and returns plain dataclasses.
Personal details come back only as :class:`Sealed` bytes: opening them is the caller's
business (:mod:`hubnode.privacy`), and only where this hub holds the subject's key.
Clocks are the authors' (``ts``), and "now" is always a parameter, so due dates and
reports are pure functions of the view and the time asked about.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Final, Literal

from hubnode.events.ids import hub_display, parse_hub
from hubnode.events.lifecycle import (
    CLAIM,
    RECEIVING,
    REFERRING,
    STATUSES,
    Party,
    Status,
    allowed_moves,
)
from hubnode.events.pathway import CHANNELS, Sealed
from hubnode.projections.pathway import NAME
from hubnode.projections.pathway_rules import APPLIED, IGNORED
from hubnode.projections.runner import ProjectionRunner

DAY_MS: Final = 24 * 3600 * 1000
CLAIM_MOVE: Final = "claim"
"""How :meth:`Referral.next_moves` names a claim of an open referral."""


def _sealed(nonce: bytes | None, data: bytes | None) -> Sealed | None:
    return None if nonce is None or data is None else Sealed(nonce=nonce, data=data)


def referral_ref(referrer: bytes, referral: str) -> str:
    """How a referral is written for people and on the command line: ``hub:…:ID``."""
    return f"{hub_display(referrer)}:{referral}"


# -- referrals --------------------------------------------------------------------------


@dataclass(frozen=True)
class Referral:
    referrer: bytes
    id: str
    subject: str
    root: bytes
    """Id of the ``referral.requested`` event: the root of the referral's moves."""
    seq: int
    ts: int
    target: bytes | None
    """The hub the referral was made to (named, or the service's); None: open referral."""
    service: tuple[bytes, str] | None
    category: str | None
    urgency: str
    note: Sealed | None
    consent: tuple[bytes, ...]
    """The hubs the person's consent named when the referral was made."""
    receiver: bytes | None
    status: Status
    head: bytes
    """Id of the latest move that counts (the parent of the next move)."""
    status_ts: int
    responded_ts: int | None
    outcome: str | None
    satisfied: bool | None
    followups: int

    @property
    def ref(self) -> str:
        return referral_ref(self.referrer, self.id)

    def roles(self, hub: bytes) -> list[Party]:
        """The parties ``hub`` is in this referral (both when it referred to itself)."""
        roles: list[Party] = []
        if hub == self.referrer:
            roles.append(REFERRING)
        if self.receiver is not None and hub == self.receiver:
            roles.append(RECEIVING)
        return roles

    def claimable_by(self, hub: bytes) -> bool:
        return (
            self.receiver is None
            and self.status == CLAIM[0]
            and hub != self.referrer
            and hub in self.consent
        )

    def next_moves(self, hub: bytes) -> list[str]:
        """What ``hub`` may do next: statuses in table order, or ``claim``."""
        moves = [CLAIM_MOVE] if self.claimable_by(hub) else []
        for role in self.roles(hub):
            moves += [m for m in allowed_moves(self.status, role) if m not in moves]
        return moves


_REFERRAL_COLUMNS: Final = (
    "referrer, referral, subject, root, seq, ts, target, service_hub, service_id, category, "
    "urgency, nonce, sealed, snapshot, receiver, status, head, status_ts, responded_ts, "
    "outcome, satisfied, followups"
)


def _referral(row: tuple[Any, ...]) -> Referral:
    (referrer, rid, subject, root, seq, ts, target, s_hub, s_id, category, urgency) = row[:11]
    nonce, data, snapshot, receiver, status, head, status_ts, responded = row[11:19]
    outcome, satisfied, followups = row[19:]
    return Referral(
        referrer,
        rid,
        subject,
        root,
        seq,
        ts,
        target,
        None if s_hub is None else (s_hub, s_id),
        category,
        urgency,
        _sealed(nonce, data),
        tuple(parse_hub(h) for h in json.loads(snapshot)),
        receiver,
        status,
        head,
        status_ts,
        responded,
        outcome,
        None if satisfied is None else bool(satisfied),
        followups,
    )


def referral(runner: ProjectionRunner, referrer: bytes, referral_id: str) -> Referral | None:
    rows = runner.query(
        NAME,
        f"SELECT {_REFERRAL_COLUMNS} FROM {{referrals}} WHERE referrer = ? AND referral = ?",
        (referrer, referral_id),
    )
    return _referral(rows[0]) if rows else None


def referrals(
    runner: ProjectionRunner,
    *,
    hub: bytes | None = None,
    role: Party | None = None,
    status: str | None = None,
    subject: str | None = None,
) -> list[Referral]:
    """Referrals oldest first; with ``hub``, those it is a party in (or in ``role``)."""
    clauses: list[str] = []
    params: list[Any] = []
    if hub is not None and role == REFERRING:
        clauses.append("referrer = ?")
        params.append(hub)
    elif hub is not None and role == RECEIVING:
        clauses.append("receiver = ?")
        params.append(hub)
    elif hub is not None:
        clauses.append("(referrer = ? OR receiver = ?)")
        params += [hub, hub]
    if status is not None:
        clauses.append("status = ?")
        params.append(status)
    if subject is not None:
        clauses.append("subject = ?")
        params.append(subject)
    sql = f"SELECT {_REFERRAL_COLUMNS} FROM {{referrals}}"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    rows = runner.query(NAME, sql + " ORDER BY ts, referrer, referral", params)
    return [_referral(r) for r in rows]


def claimable(runner: ProjectionRunner, hub: bytes) -> list[Referral]:
    """Open referrals ``hub`` may claim: no receiving hub yet, ``hub`` in the consent."""
    rows = runner.query(
        NAME,
        f"SELECT {_REFERRAL_COLUMNS} FROM {{referrals}} WHERE receiver IS NULL "
        "AND status = ? ORDER BY ts, referrer, referral",
        (CLAIM[0],),
    )
    return [r for r in map(_referral, rows) if r.claimable_by(hub)]


@dataclass(frozen=True)
class Step:
    """One event of a referral's timeline."""

    kind: str
    hub: bytes
    seq: int
    ts: int
    what: str
    """The status moved to, ``claimed``, the outcome, or ``satisfied``/``not satisfied``."""
    reason: str
    state: str
    """``applied``, ``ignored`` (``why`` says why) or ``waiting`` (its parent is missing)."""
    why: str
    record: str
    """The local id the event's sealed note is bound to (docs/privacy.md)."""
    note: Sealed | None


def timeline(runner: ProjectionRunner, referrer: bytes, referral_id: str) -> list[Step]:
    """Every event of one referral after the request, by the authors' clocks."""
    key = (referrer, referral_id)
    steps: list[Step] = []
    for hub, seq, ts, claim, status, reason, state in runner.query(
        NAME,
        "SELECT hub, seq, ts, claim, status, reason, state FROM {moves} "
        "WHERE referrer = ? AND referral = ?",
        key,
    ):
        kind = "referral.claimed" if claim else "referral.status_changed"
        what = "claimed" if claim else status
        steps.append(Step(kind, hub, seq, ts, what, reason, state, "", referral_id, None))
    for hub, seq, ts, outcome, satisfied, state in runner.query(
        NAME,
        "SELECT hub, seq, ts, outcome, satisfied, state FROM {outcomes} "
        "WHERE referrer = ? AND referral = ?",
        key,
    ):
        what = f"outcome: {outcome} ({'satisfied' if satisfied else 'not satisfied'})"
        steps.append(
            Step("referral.outcome_recorded", hub, seq, ts, what, "", state, "", referral_id, None)
        )
    for hub, fid, seq, ts, satisfied, nonce, data, state in runner.query(
        NAME,
        "SELECT hub, followup, seq, ts, satisfied, nonce, sealed, state FROM {followups} "
        "WHERE referrer = ? AND referral = ?",
        key,
    ):
        what = f"follow-up: {'satisfied' if satisfied else 'not satisfied'}"
        note = _sealed(nonce, data)
        steps.append(Step("followup.recorded", hub, seq, ts, what, "", state, "", fid, note))
    for case in _cases(runner, "WHERE c.referrer = ? AND c.referral = ?", key):
        what = f"advocacy case {case.id} opened"
        steps.append(
            Step("advocacy.opened", case.hub, case.seq, case.ts, what, "", case.state, "",
                 case.id, case.note)
        )  # fmt: skip
        if case.closed_seq is not None and case.closed_ts is not None:
            what = f"advocacy case {case.id} closed: {case.outcome}"
            steps.append(
                Step("advocacy.closed", case.hub, case.closed_seq, case.closed_ts, what, "",
                     case.state, "", case.id, case.close_note)
            )  # fmt: skip
    steps = [replace(s, why=_why(runner, s.hub, s.seq)) if s.state == IGNORED else s for s in steps]
    return sorted(steps, key=lambda s: (s.ts, s.hub, s.seq))


def _why(runner: ProjectionRunner, hub: bytes, seq: int) -> str:
    """The reason the view ignored ``hub``'s event ``seq``."""
    rows = runner.query(NAME, "SELECT reason FROM {_ignored} WHERE hub = ? AND seq = ?", (hub, seq))
    return str(rows[0][0]) if rows else ""


# -- follow-up due ----------------------------------------------------------------------


@dataclass(frozen=True)
class Due:
    referral: Referral
    why: Literal["follow-up", "unanswered"]
    """``follow-up``: completed or failed with no follow-up; ``unanswered``: still requested."""
    since: int
    """When the clock started (ms, the author's): the completion/failure, or the request."""
    due: int


def followups_due(
    runner: ProjectionRunner, hub: bytes, now_ms: int, days: int = 14, answer_days: int = 3
) -> list[Due]:
    """Referrals ``hub`` made that need chasing at ``now_ms``, the longest overdue first.

    Completed or failed at least ``days`` ago with no follow-up that counts; or still
    requested (not answered by the receiving hub) ``answer_days`` after the request.
    """
    found: list[Due] = []
    for r in referrals(runner, hub=hub, role=REFERRING):
        if r.status in ("completed", "failed") and r.followups == 0:
            due = r.status_ts + days * DAY_MS
            if due <= now_ms:
                found.append(Due(r, "follow-up", r.status_ts, due))
        elif r.status == "requested":
            due = r.ts + answer_days * DAY_MS
            if due <= now_ms:
                found.append(Due(r, "unanswered", r.ts, due))
    return sorted(found, key=lambda d: (d.due, d.referral.ref))


# -- advocacy ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    hub: bytes
    """The hub that opened the case (only it closes it)."""
    id: str
    referrer: bytes
    referral: str
    subject: str | None
    """The referral's subject; None while the referral has not arrived here."""
    seq: int
    ts: int
    note: Sealed | None
    closed_seq: int | None
    closed_ts: int | None
    outcome: str | None
    close_note: Sealed | None
    state: str

    @property
    def is_open(self) -> bool:
        return self.closed_seq is None


def _cases(runner: ProjectionRunner, where: str, params: tuple[Any, ...]) -> list[Case]:
    rows = runner.query(
        NAME,
        "SELECT c.hub, c.case_id, c.referrer, c.referral, r.subject, c.seq, c.ts, c.nonce, "
        "c.sealed, c.closed_seq, c.closed_ts, c.outcome, c.close_nonce, c.close_sealed, c.state "
        "FROM {cases} c LEFT JOIN {referrals} r "
        f"ON r.referrer = c.referrer AND r.referral = c.referral {where} "
        "ORDER BY c.ts, c.hub, c.case_id",
        params,
    )
    return [
        Case(h, cid, ref, rid, subj, seq, ts, _sealed(n, d), cseq, cts, out, _sealed(cn, cd), st)
        for h, cid, ref, rid, subj, seq, ts, n, d, cseq, cts, out, cn, cd, st in rows
    ]


def cases(runner: ProjectionRunner, hub: bytes | None = None) -> list[Case]:
    """Advocacy cases that count (opened by ``hub`` if given), oldest first."""
    if hub is None:
        return _cases(runner, "WHERE c.state = ?", (APPLIED,))
    return _cases(runner, "WHERE c.state = ? AND c.hub = ?", (APPLIED, hub))


def case(runner: ProjectionRunner, hub: bytes, case_id: str) -> Case | None:
    """``hub``'s case ``case_id`` whatever its state (applied, ignored or waiting)."""
    found = _cases(runner, "WHERE c.hub = ? AND c.case_id = ?", (hub, case_id))
    return found[0] if found else None


# -- subjects ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Enquiry:
    owner: bytes
    id: str
    subject: str
    channel: str
    needs: tuple[str, ...]
    urgency: str
    area: str | None
    person: Sealed | None
    """The person's sealed details; None once the subject is erased."""
    seq: int
    ts: int


@dataclass(frozen=True)
class Consent:
    purposes: tuple[str, ...]
    recipients: tuple[bytes, ...]
    seq: int | None
    """The owner's seq of the consent event in force (None: never recorded)."""
    ts: int | None
    withdrawn: bool


@dataclass(frozen=True)
class Confirmation:
    hub: bytes
    seq: int
    ts: int


@dataclass(frozen=True)
class SubjectInfo:
    owner: bytes
    subject: str
    seq: int
    ts: int
    enquiries: list[Enquiry]
    consent: Consent
    erased_seq: int | None
    erased_ts: int | None
    erase_reason: str | None
    confirmations: list[Confirmation]
    """Hubs that confirmed destroying the subject's key, by hub id."""

    @property
    def erased(self) -> bool:
        return self.erased_seq is not None


def subject_owners(runner: ProjectionRunner, subject: str) -> list[bytes]:
    """The hubs that logged an enquiry for pseudonym ``subject`` (normally one)."""
    rows = runner.query(
        NAME, "SELECT owner FROM {subjects} WHERE subject = ? ORDER BY owner", (subject,)
    )
    return [r[0] for r in rows]


def subject_info(runner: ProjectionRunner, owner: bytes, subject: str) -> SubjectInfo | None:
    key = (owner, subject)
    rows = runner.query(
        NAME,
        "SELECT seq, ts, purposes, recipients, consent_seq, consent_ts, withdrawn, erased_seq, "
        "erased_ts, erase_reason FROM {subjects} WHERE owner = ? AND subject = ?",
        key,
    )
    if not rows:
        return None
    seq, ts, purposes, recipients, c_seq, c_ts, withdrawn, e_seq, e_ts, e_reason = rows[0]
    enquiries = [
        Enquiry(owner, eid, subject, ch, tuple(json.loads(needs)), urg, area, _sealed(n, d), s, t)
        for eid, ch, needs, urg, area, n, d, s, t in runner.query(
            NAME,
            "SELECT enquiry, channel, needs, urgency, area, nonce, sealed, seq, ts "
            "FROM {enquiries} WHERE owner = ? AND subject = ? ORDER BY seq",
            key,
        )
    ]
    consent = Consent(
        tuple(json.loads(purposes)),
        tuple(parse_hub(h) for h in json.loads(recipients)),
        c_seq,
        c_ts,
        bool(withdrawn),
    )
    confirmations = [
        Confirmation(*r)
        for r in runner.query(
            NAME,
            "SELECT hub, seq, ts FROM {confirmations} WHERE owner = ? AND subject = ? ORDER BY hub",
            key,
        )
    ]
    return SubjectInfo(
        owner, subject, seq, ts, enquiries, consent, e_seq, e_ts, e_reason, confirmations
    )


# -- the pathway report -----------------------------------------------------------------


@dataclass(frozen=True)
class PathwayReport:
    """A hub's pathway as the seeds measure it: who came, where they went, did it work."""

    hub: bytes
    enquiries: int
    by_channel: dict[str, int]
    by_need: dict[str, int]
    referrals: int
    by_status: dict[str, int]
    outcome_satisfied: dict[str, int]
    """From the receiving hubs' recorded outcomes: yes, no, and none recorded."""
    followup_satisfied: dict[str, int]
    """From the follow-ups that count: yes and no."""
    responded: int
    """Referrals the receiving hub has answered (its first move, or a claim)."""
    response_median_ms: int | None
    response_p90_ms: int | None
    closed: int
    """Referrals completed or failed."""
    followed_up: int
    """Of those, how many have a follow-up that counts."""

    @property
    def followup_rate(self) -> float | None:
        return None if self.closed == 0 else self.followed_up / self.closed


def nearest_rank(values: list[int], percent: int) -> int | None:
    """The ``percent``-th percentile by nearest rank (no interpolation); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent * len(ordered) / 100) - 1)]


def pathway_report(runner: ProjectionRunner, hub: bytes) -> PathwayReport:
    """Enquiries ``hub`` logged and referrals it made: channels, needs, statuses,
    satisfaction, time to first response (median, 90th percentile) and follow-up rate.

    Response times use the authors' clocks; a negative one (clock skew) counts as 0.
    """
    channels: Counter[str] = Counter(dict.fromkeys(CHANNELS, 0))
    needs: Counter[str] = Counter()
    enquiries = runner.query(NAME, "SELECT channel, needs FROM {enquiries} WHERE owner = ?", (hub,))
    for channel, need_list in enquiries:
        channels[channel] += 1
        needs.update(json.loads(need_list))
    made = referrals(runner, hub=hub, role=REFERRING)
    statuses: Counter[str] = Counter(dict.fromkeys(STATUSES, 0))
    statuses.update(r.status for r in made)
    outcome = {
        "yes": sum(1 for r in made if r.satisfied is True),
        "no": sum(1 for r in made if r.satisfied is False),
        "none": sum(1 for r in made if r.satisfied is None),
    }
    followup = Counter({"yes": 0, "no": 0})
    for (satisfied,) in runner.query(
        NAME,
        "SELECT f.satisfied FROM {followups} f JOIN {referrals} r ON r.referrer = f.referrer "
        "AND r.referral = f.referral WHERE f.referrer = ? AND f.state = ?",
        (hub, APPLIED),
    ):
        followup["yes" if satisfied else "no"] += 1
    waits = [max(0, r.responded_ts - r.ts) for r in made if r.responded_ts is not None]
    closed = [r for r in made if r.status in ("completed", "failed")]
    return PathwayReport(
        hub,
        len(enquiries),
        dict(channels),
        dict(sorted(needs.items())),
        len(made),
        dict(statuses),
        outcome,
        dict(followup),
        len(waits),
        nearest_rank(waits, 50),
        nearest_rank(waits, 90),
        len(closed),
        sum(1 for r in closed if r.followups > 0),
    )


def as_status(text: str) -> Status:
    """``text`` as a lifecycle status; ValueError naming the statuses if it is not one."""
    if text not in STATUSES:
        raise ValueError(f"{text!r} is not a referral status; use one of {', '.join(STATUSES)}")
    return text
