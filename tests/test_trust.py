"""The trust set (DESIGN §5): whom a node accepts events from.

This hub, the hubs added locally, and every hub admitted by at least ``threshold`` distinct
trusted hubs: a fixpoint, the same whatever order the admissions arrived in.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubnode import EventLog, SigningKey, Status
from hubnode.events.ids import hub_display
from hubnode.events.network import HubAdmitted
from hubnode.testing import ChainWriter
from hubnode.trust import TrustSet, fold_admissions

from .conftest import NET, registered, update

OWN = b"o" * 32
A, B, C, D, E = (bytes([c]) * 32 for c in b"abcde")
X = b"x" * 32
"""A hub nobody trusts."""


def test_this_hub_is_trusted():
    trust = TrustSet(OWN, [])
    assert OWN in trust and trust.contains(OWN)
    assert trust.members == {OWN}
    assert len(trust) == 1
    assert trust.why(OWN) == "this hub"


def test_locally_added_hubs_are_trusted():
    trust = TrustSet(OWN, [A])
    assert trust.why(A) == "local"
    trust.add_local(B)
    assert trust.members == {OWN, A, B}
    assert trust.why(B) == "local"


def test_a_hub_nobody_vouched_for_is_not_trusted():
    trust = TrustSet(OWN, [A])
    assert X not in trust
    assert not trust.contains(X)
    assert trust.why(X) == "not trusted"
    assert trust.admitters(X) == frozenset()


def test_an_admission_by_a_trusted_hub_trusts_the_admitted():
    trust = TrustSet(OWN, [A])
    assert trust.admit(A, B) is True
    assert B in trust
    assert trust.why(B) == "admitted"
    assert trust.admitters(B) == {A}
    assert trust.admit(A, B) is False  # nothing new


def test_this_hubs_own_admissions_count():
    trust = TrustSet(OWN, [])
    assert trust.admit(OWN, B) is True
    assert trust.why(B) == "admitted"


def test_an_admission_by_an_untrusted_hub_counts_once_its_author_is_trusted():
    trust = TrustSet(OWN, [])
    assert trust.admit(X, B) is False
    assert B not in trust
    assert trust.admitters(B) == {X}  # remembered, not yet counted
    trust.add_local(X)
    assert B in trust
    assert trust.why(B) == "admitted"


def test_admissions_chain_through_admitted_hubs():
    # A is local; A admits B; B admits C; C admits D.
    trust = TrustSet(OWN, [A])
    trust.admit(A, B)
    trust.admit(B, C)
    trust.admit(C, D)
    assert trust.members == {OWN, A, B, C, D}


def test_a_chain_read_backwards_is_trusted_once_its_first_link_arrives():
    trust = TrustSet(OWN, [A])
    assert trust.admit(C, D) is False
    assert trust.admit(B, C) is False
    assert trust.admit(A, B) is True
    assert trust.members == {OWN, A, B, C, D}


def test_with_threshold_2_one_admitter_is_not_enough():
    trust = TrustSet(OWN, [A, B], threshold=2)
    assert trust.admit(A, C) is False
    assert trust.admit(A, C) is False  # the same admitter twice counts once
    assert C not in trust
    assert trust.admit(B, C) is True
    assert trust.admitters(C) == {A, B}
    assert trust.why(C) == "admitted"


def test_with_threshold_2_untrusted_admitters_do_not_count_until_trusted():
    trust = TrustSet(OWN, [A, B], threshold=2)
    trust.admit(X, D)
    trust.admit(A, D)
    assert D not in trust
    trust.admit(A, X)
    assert X not in trust  # one admitter so far
    assert trust.admit(B, X) is True
    # X is trusted now, so its earlier admission of D counts: A and X.
    assert trust.members == {OWN, A, B, X, D}


def test_local_hubs_need_no_admission_whatever_the_threshold():
    trust = TrustSet(OWN, [A], threshold=3)
    assert trust.members == {OWN, A}


@pytest.mark.parametrize("threshold", [0, -1])
def test_a_threshold_below_1_is_refused(threshold: int):
    with pytest.raises(ValueError, match=f"at least 1, got {threshold}"):
        TrustSet(OWN, [], threshold=threshold)


# -- properties ---------------------------------------------------------------------------------

POOL = [OWN, A, B, C, D, E, X, b"y" * 32]
admissions = st.lists(st.tuples(st.sampled_from(POOL), st.sampled_from(POOL)), max_size=30)


def fixpoint(local: set[bytes], threshold: int, pairs: list[tuple[bytes, bytes]]) -> set[bytes]:
    """The trust set by its definition: grow until no hub gains enough trusted admitters."""
    trusted = {OWN} | local
    while True:
        grown = trusted | {
            hub
            for _, hub in pairs
            if len({by for by, h in pairs if h == hub and by in trusted}) >= threshold
        }
        if grown == trusted:
            return trusted
        trusted = grown


@settings(max_examples=200, deadline=None)
@given(
    pairs=admissions,
    local=st.sets(st.sampled_from(POOL[1:]), max_size=2),
    threshold=st.integers(1, 3),
    data=st.data(),
)
def test_any_order_of_the_same_admissions_gives_the_same_set(pairs, local, threshold, data):
    shuffled = data.draw(st.permutations(pairs))
    results = []
    for order in (pairs, shuffled):
        trust = TrustSet(OWN, local, threshold)
        grown_before = set(trust.members)
        for admitter, admitted in order:
            grew = trust.admit(admitter, admitted)
            assert grown_before <= trust.members  # never shrinks
            assert grew == (trust.members != grown_before)
            grown_before = set(trust.members)
        results.append(trust.members)
    assert results[0] == results[1] == fixpoint(local, threshold, pairs)


# -- folding a log's admissions -----------------------------------------------------------------


def admission(hub: bytes, note: str = "") -> HubAdmitted:
    return HubAdmitted(hub=hub_display(hub), note=note)


def hub_chain(seed: int) -> tuple[ChainWriter, bytes]:
    """A hub's chain writer (fixed key) and its first record, ``hub.registered``."""
    writer = ChainWriter(NET, SigningKey.from_seed(bytes([seed]) * 32))
    return writer, writer.next("hub.registered", registered(f"Hub {seed}"))


async def test_fold_admissions_reads_every_hubs_admissions_from_the_log(log: EventLog):
    (a, a1), (b, b1), (c, c1), (d, _), (e, _), (x, x1) = (hub_chain(s) for s in range(1, 7))
    assert log.hub is not None
    trust = TrustSet(log.hub, [a.hub])
    records = [
        a1,
        b1,
        c1,
        x1,
        a.next("hub.admitted", admission(b.hub, "met at the forum")),
        b.next("hub.profile_updated", update(2)),
        b.next("hub.admitted", admission(c.hub)),
        x.next("hub.admitted", admission(e.hub)),  # X is trusted by nobody (yet)
    ]
    assert {o.status for o in await log.ingest(records)} == {Status.ACCEPTED}
    grew, pos = await fold_admissions(trust, log)
    assert grew
    assert pos == (await log.events())[-1].pos  # a hub.admitted is the last event stored
    assert trust.members == {log.hub, a.hub, b.hub, c.hub}
    assert trust.admitters(e.hub) == {x.hub}

    # Nothing new: nothing grows, the position stays.
    assert await fold_admissions(trust, log, pos) == (False, pos)

    # A admits X later: X's admission of E, read before, counts now.
    await log.ingest([a.next("hub.admitted", admission(x.hub))])
    await log.append("hub.admitted", admission(d.hub))  # this hub's own admission
    grew, pos = await fold_admissions(trust, log, pos)
    assert grew
    assert trust.members == {log.hub, a.hub, b.hub, c.hub, d.hub, x.hub, e.hub}
    assert trust.why(e.hub) == "admitted"
    assert pos == (await log.events())[-1].pos


async def test_fold_admissions_reads_past_one_page(log: EventLog):
    # fold_admissions reads 1000 events at a time; a 1001st admission must not be missed.
    writer, first = hub_chain(9)
    # From 2: 0 and 1 would be y = 0 and y = 1, small-order points no hub can have.
    admitted = [bytes([i % 256, i // 256]) + b"\x00" * 30 for i in range(2, 1_003)]
    records = [first] + [writer.next("hub.admitted", admission(hub)) for hub in admitted]
    assert {o.status for o in await log.ingest(records)} == {Status.ACCEPTED}
    trust = TrustSet(b"o" * 32, [writer.hub])
    grew, pos = await fold_admissions(trust, log)
    assert grew
    assert trust.members >= set(admitted)
    assert len(trust) == 1 + 1 + 1_001
    assert pos == (await log.events(limit=2_000))[-1].pos


def test_a_hub_short_of_the_threshold_is_shown_with_its_vouches() -> None:
    own, a, b, newcomer, stranger = (bytes([i]) * 32 for i in range(1, 6))
    trust = TrustSet(own, [a, b], threshold=2)
    trust.admit(a, newcomer)
    trust.admit(stranger, newcomer)  # an untrusted voucher does not count
    assert newcomer not in trust
    assert trust.why(newcomer) == "vouched 1 of 2"
    assert {newcomer, stranger} <= trust.known()
    trust.admit(b, newcomer)
    assert trust.why(newcomer) == "admitted"
