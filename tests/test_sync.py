"""The sans-io sync core (DESIGN §6): what to fetch, from whom, and when to give up on a holder.

The core is driven with plain inputs and a fake clock (floats): no network, no asyncio.
Hub and peer ids are 32-byte strings; a peer is itself a hub, so "the author" of hub ``H``
is the peer whose id is ``H``. Event ids are a function of (hub, seq) unless a test forks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubnode.protocol.sync import (
    TRANSITIONS,
    Fetch,
    FetchState,
    IllegalTransition,
    PeerView,
    SyncCore,
    SyncEvent,
    SyncLimits,
    _HubSync,
)

OWN = b"o" * 32
H = b"h" * 32
"""The hub whose events are being fetched (and, as a peer, its author)."""
H2, H3 = b"i" * 32, b"j" * 32
X, Y, Z = b"x" * 32, b"y" * 32, b"z" * 32
"""Peers that hold other hubs' events."""

Heads = dict[bytes, tuple[int, bytes]]


def id_of(hub: bytes, seq: int, branch: int = 0) -> bytes:
    """The id of ``hub``'s event ``seq`` (``branch`` > 0: a forked twin of it)."""
    return hashlib.sha256(hub + seq.to_bytes(8, "big") + bytes([branch])).digest()


def at(hub: bytes, seq: int, branch: int = 0) -> tuple[int, bytes]:
    return seq, id_of(hub, seq, branch)


def core_at(local: Heads | None = None, now: float = 0.0, **limits: Any) -> SyncCore:
    """A core holding ``local`` (and its own hub up to 3), with these ``SyncLimits``."""
    core = SyncCore(OWN, SyncLimits(**limits))
    assert core.on_local_heads({OWN: at(OWN, 3), **(local or {})}, now) == []
    return core


def answer(core: SyncCore, fetch: Fetch, upto: int, now: float, **kw: int) -> list[Fetch]:
    """What the adapter does on a reply: ingest (local heads move to ``upto``), then report."""
    before = core.on_local_heads({fetch.hub: at(fetch.hub, upto)}, now)
    assert before == [] or all(f.hub != fetch.hub for f in before)
    return before + core.on_reply(fetch, now, **kw)


# -- what is fetched ----------------------------------------------------------------------------


def test_a_peer_ahead_makes_one_fetch_from_the_next_seq():
    core = core_at({H: at(H, 5)})
    assert core.on_peer_heads(X, {H: at(H, 9)}, 1.0) == [Fetch(H, 6, 4, X)]
    assert core.state(H) is FetchState.FETCHING
    assert core.in_flight() == 1


def test_a_hub_never_seen_is_fetched_from_seq_1():
    core = core_at()
    assert core.on_peer_heads(X, {H: at(H, 3)}, 1.0) == [Fetch(H, 1, 3, X)]


def test_peers_level_with_or_behind_this_node_cause_no_fetch():
    core = core_at({H: at(H, 5)})
    assert core.on_peer_heads(X, {H: at(H, 5), OWN: at(OWN, 2)}, 1.0) == []
    assert core.on_peer_heads(Y, {H: at(H, 4)}, 1.0) == []
    assert core.behind() == {}
    assert core.in_flight() == 0


def test_catch_up_costs_what_is_missing_not_the_log():
    # 10 events missing of a 100 000-event hub: one fetch of 10 records, then nothing.
    core = core_at({H: at(H, 99_990)})
    (fetch,) = core.on_peer_heads(X, {H: at(H, 100_000)}, 1.0)
    assert fetch == Fetch(H, 99_991, 10, X)
    assert answer(core, fetch, 100_000, 1.1) == []
    assert core.behind() == {}
    assert core.state(H) is FetchState.IDLE


def test_far_behind_fetches_batch_after_batch_until_caught_up():
    core = core_at(batch=500)
    asked = [core.on_peer_heads(X, {H: at(H, 1_200)}, 1.0)]
    while asked[-1]:
        (fetch,) = asked[-1]
        asked.append(answer(core, fetch, fetch.start + fetch.limit - 1, 2.0))
    assert asked == [
        [Fetch(H, 1, 500, X)],
        [Fetch(H, 501, 500, X)],
        [Fetch(H, 1_001, 200, X)],
        [],
    ]
    assert core.local[H] == at(H, 1_200)


def test_a_short_reply_asks_again_from_where_it_stopped():
    core = core_at()
    (fetch,) = core.on_peer_heads(X, {H: at(H, 100)}, 1.0)
    assert answer(core, fetch, 30, 1.1) == [Fetch(H, 31, 70, X)]  # the reply hit max_bytes


def test_no_second_fetch_for_a_hub_while_one_is_in_flight():
    core = core_at()
    assert core.on_peer_heads(X, {H: at(H, 10)}, 1.0) == [Fetch(H, 1, 10, X)]
    assert core.on_peer_heads(X, {H: at(H, 12)}, 1.1) == []
    assert core.on_peer_heads(Y, {H: at(H, 40)}, 1.2) == []
    assert core.on_claim(H, 50, Z, 1.3) == []
    assert core.on_local_heads({H2: at(H2, 1)}, 1.4) == []
    assert core.on_tick(1.5) == []
    assert core.in_flight() == 1


def test_max_in_flight_caps_fetches_over_all_hubs():
    hubs = [bytes([ord("a") + i]) * 32 for i in range(5)]
    core = core_at(max_in_flight=2)
    first = core.on_peer_heads(X, {h: at(h, 3) for h in hubs}, 1.0)
    assert [f.hub for f in first] == hubs[:2]
    assert core.in_flight() == 2
    assert core.on_peer_heads(Y, {h: at(h, 3) for h in hubs}, 1.1) == []
    assert core.on_tick(1.2) == []
    # One answered: exactly one slot frees, taken by the next hub behind.
    (third,) = answer(core, first[0], 3, 1.3)
    assert third.hub == hubs[2]
    assert core.in_flight() == 2
    (fourth,) = core.on_failure(first[1], 1.4)
    assert fourth.hub == hubs[3]
    assert core.in_flight() == 2


def with_peers(local: Heads, peers: dict[bytes, Heads], now: float = 1.0) -> list[Fetch]:
    """What a core that already heard ``peers`` fetches once it learns its ``local`` heads."""
    core = SyncCore(OWN)
    for peer, heads in peers.items():
        core.peers[peer] = PeerView(heads=dict(heads))
    return core.on_local_heads(local, now)


def test_the_author_is_asked_first_even_if_another_peer_holds_more():
    assert with_peers({H: at(H, 10)}, {X: {H: at(H, 50)}, H: {H: at(H, 40)}}) == [
        Fetch(H, 11, 40, H)
    ]


def test_without_the_author_the_furthest_peer_is_asked():
    peers = {X: {H: at(H, 30)}, Y: {H: at(H, 50)}, Z: {H: at(H, 20)}}
    assert with_peers({H: at(H, 10)}, peers) == [Fetch(H, 11, 40, Y)]


def test_an_author_that_does_not_hold_the_next_seq_is_not_asked():
    peers = {H: {H: at(H, 8)}, X: {H: at(H, 12)}}
    assert with_peers({H: at(H, 9)}, peers) == [Fetch(H, 10, 3, X)]


def test_when_the_author_runs_out_the_furthest_holder_continues():
    core = core_at({H: at(H, 10)})
    (fetch,) = core.on_peer_heads(H, {H: at(H, 40)}, 1.0)
    assert fetch == Fetch(H, 11, 30, H)
    assert core.on_peer_heads(X, {H: at(H, 50)}, 1.1) == []
    assert answer(core, fetch, 40, 1.2) == [Fetch(H, 41, 10, X)]


def test_a_claim_ahead_of_a_gap_makes_a_fetch():
    # A live record of seq 7 arrived from X while this node holds up to 3.
    core = core_at({H: at(H, 3)})
    assert core.on_claim(H, 7, X, 1.0) == [Fetch(H, 4, 4, X)]
    assert core.lag(X) == 4


def test_a_claim_never_lowers_what_a_peer_announced():
    core = core_at({H: at(H, 3)})
    core.on_peer_heads(X, {H: at(H, 9)}, 1.0)
    core.on_claim(H, 5, X, 1.1)
    assert core.peers[X].heads[H] == at(H, 9)


# -- failures, backoff, lost reports ------------------------------------------------------------


def test_a_failed_holder_is_backed_off_and_another_holder_is_tried():
    core = core_at()
    core.on_peer_heads(X, {H: at(H, 50)}, 1.0)
    assert core.on_peer_heads(Y, {H: at(H, 40)}, 1.0) == []
    fetch = Fetch(H, 1, 50, X)
    assert core.on_failure(fetch, 4.0) == []
    assert core.state(H) is FetchState.BACKOFF
    assert core.on_tick(4.25) == []
    # Asked for as many as the furthest holder announced; Y answers with what it holds.
    assert core.on_tick(4.5) == [Fetch(H, 1, 50, Y)]


def test_a_failed_author_is_not_asked_again_while_other_holders_remain():
    # The point of asking any holder: a hub that is offline is still served by its peers.
    core = core_at({H: at(H, 10)})
    (fetch,) = core.on_peer_heads(H, {H: at(H, 50)}, 0.0)
    assert fetch.peer == H
    assert core.on_peer_heads(X, {H: at(H, 50)}, 0.0) == []
    assert core.on_failure(fetch, 3.0) == []
    assert core.on_tick(3.25) == []
    # When the hub retries, the author is free to be asked again, but X has not failed.
    assert core.on_tick(3.5) == [Fetch(H, 11, 40, X)]


def test_backoff_of_a_single_holder_doubles_up_to_the_cap():
    core = core_at(backoff_first=0.5, backoff_max=30.0, timeout=3.0)
    (fetch,) = core.on_peer_heads(X, {H: at(H, 9)}, 100.0)
    now = 100.0
    waits = []
    for _ in range(9):
        now += 3.0
        assert core.on_failure(fetch, now) == []
        failed_at = now
        while True:
            now += 0.125
            retried = core.on_tick(now)
            if retried:
                break
            assert now - failed_at < 60, "the only holder is never retried"
        (fetch,) = retried
        assert fetch == Fetch(H, 1, 9, X)
        waits.append(now - failed_at)
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_with_a_single_holder_the_hub_waits_idle_until_the_holder_may_be_asked():
    core = core_at()
    (fetch,) = core.on_peer_heads(X, {H: at(H, 9)}, 0.0)
    core.on_failure(fetch, 1.0)
    (fetch,) = core.on_tick(1.5)
    assert core.on_failure(fetch, 2.0) == []  # second failure: X waits 1 s
    assert core.on_tick(2.5) == []
    assert core.state(H) is FetchState.IDLE  # the hub's own pause is over ...
    assert core.on_peer_heads(X, {H: at(H, 9)}, 2.75) == []  # ... but X is still backed off
    assert core.on_tick(3.0) == [fetch]


def test_an_answer_resets_the_holders_backoff():
    core = core_at()
    (fetch,) = core.on_peer_heads(X, {H: at(H, 20)}, 0.0)
    core.on_failure(fetch, 1.0)
    (fetch,) = core.on_tick(1.5)
    core.on_failure(fetch, 2.0)
    (fetch,) = core.on_tick(3.0)
    (fetch,) = answer(core, fetch, 10, 3.1)
    assert core.on_failure(fetch, 4.0) == []
    assert core.on_tick(4.5) == [Fetch(H, 11, 10, X)]  # 0.5 s again, not 4 s


def test_a_lost_report_is_expired_after_twice_the_timeout():
    core = core_at(timeout=3.0)
    (fetch,) = core.on_peer_heads(X, {H: at(H, 9)}, 10.0)
    assert core.on_tick(16.0) == []
    assert core.state(H) is FetchState.FETCHING
    assert core.on_tick(16.25) == []
    assert core.state(H) is FetchState.BACKOFF
    assert core.in_flight() == 0
    # The report arrives after all: stale, ignored (no transition, no reset of the backoff).
    assert core.on_reply(fetch, 16.3) == []
    assert core.on_failure(fetch, 16.3) == []
    assert core.state(H) is FetchState.BACKOFF
    assert core.on_tick(16.75) == [fetch]


def test_reports_for_requests_the_core_does_not_wait_for_are_ignored():
    core = core_at()
    never_sent = Fetch(H, 1, 9, Y)
    assert core.on_reply(never_sent, 1.0) == []
    assert core.on_failure(never_sent, 1.0) == []
    (fetch,) = core.on_peer_heads(X, {H: at(H, 9)}, 1.0)
    assert core.on_failure(never_sent, 1.1) == []
    assert core.on_reply(Fetch(H, 1, 8, X), 1.1) == []  # same hub and peer, other request
    assert core.state(H) is FetchState.FETCHING
    assert answer(core, fetch, 9, 1.2) == []
    assert core.on_reply(fetch, 1.3) == []  # reported twice
    assert core.on_failure(fetch, 1.3) == []  # reported again as failed
    assert core.state(H) is FetchState.IDLE
    assert core.on_tick(100.0) == []


# -- forks --------------------------------------------------------------------------------------


def test_an_equal_seq_with_another_id_fetches_that_one_record():
    core = core_at({H: at(H, 5)})
    assert core.on_peer_heads(X, {H: at(H, 5, branch=1)}, 1.0) == [Fetch(H, 5, 1, X)]


def test_the_fork_check_asks_the_peer_that_showed_the_other_id():
    # The author announces this node's copy; only X holds the twin that proves the fork.
    core = core_at({H: at(H, 5)})
    assert core.on_peer_heads(H, {H: at(H, 5)}, 1.0) == []
    assert core.on_peer_heads(X, {H: at(H, 5, branch=1)}, 1.0) == [Fetch(H, 5, 1, X)]


def test_an_equal_seq_with_the_same_id_is_no_reason_to_fetch():
    core = core_at({H: at(H, 5)})
    assert core.on_peer_heads(X, {H: at(H, 5)}, 1.0) == []


def test_a_fork_check_waits_for_the_fetch_in_flight_then_comes_first():
    core = core_at({H: at(H, 5)})
    (fetch,) = core.on_peer_heads(X, {H: at(H, 8)}, 1.0)
    assert core.on_peer_heads(Y, {H: at(H, 5, branch=1)}, 1.1) == []
    # X's reply could not be stored (a fork of 6 would be PREV_MISMATCH): check first.
    (check,) = core.on_reply(fetch, 1.2)
    assert check == Fetch(H, 5, 1, Y)
    assert core.on_reply(check, 1.3) == [Fetch(H, 6, 3, X)]


def test_a_prev_mismatch_in_a_reply_fetches_the_record_before_it():
    # Seqs 6 and 7 linked; 8 named another 7 as prev: X holds a different 7.
    core = core_at({H: at(H, 5)})
    (fetch,) = core.on_peer_heads(X, {H: at(H, 10)}, 1.0)
    assert answer(core, fetch, 7, 1.1, mismatch_seq=8) == [Fetch(H, 7, 1, X)]


def test_the_mismatch_check_asks_the_peer_whose_reply_did_not_link():
    core = core_at({H: at(H, 5)})
    (fetch,) = core.on_peer_heads(X, {H: at(H, 10)}, 1.0)
    core.on_peer_heads(H, {H: at(H, 10)}, 1.05)  # the author shows up meanwhile
    assert answer(core, fetch, 7, 1.1, mismatch_seq=8) == [Fetch(H, 7, 1, X)]


def test_a_mismatch_at_seq_1_makes_no_check():
    core = core_at()
    (fetch,) = core.on_peer_heads(X, {H: at(H, 3)}, 1.0)
    assert core.on_reply(fetch, 1.1, mismatch_seq=1) == [Fetch(H, 1, 3, X)]


# -- queries ------------------------------------------------------------------------------------


def test_lag_counts_what_a_peer_announced_beyond_this_node():
    core = core_at({H: at(H, 4), H2: at(H2, 5)}, max_in_flight=1)
    core.on_peer_heads(X, {H: at(H, 10), H2: at(H2, 3), H3: at(H3, 2), OWN: at(OWN, 3)}, 1.0)
    assert core.lag(X) == 6 + 0 + 2 + 0
    assert core.lag(Y) == 0  # never heard from
    core.on_local_heads({H: at(H, 10)}, 1.1)
    assert core.lag(X) == 2


def test_behind_names_the_highest_seq_announced_per_hub():
    core = core_at({H: at(H, 4), H2: at(H2, 5)}, max_in_flight=1)
    core.on_peer_heads(X, {H: at(H, 10), H2: at(H2, 5)}, 1.0)
    core.on_peer_heads(Y, {H: at(H, 12), H3: at(H3, 1)}, 1.0)
    assert core.behind() == {H: 12, H3: 1}
    core.forget_peer(Y)
    assert core.behind() == {H: 10}


# -- the state machine --------------------------------------------------------------------------


class RecordingCore(SyncCore):
    """A core that records every (from, event, to) it makes."""

    def __init__(self, own: bytes, limits: SyncLimits | None = None) -> None:
        super().__init__(own, limits)
        self.moves: list[tuple[FetchState, SyncEvent, FetchState]] = []

    def _move(self, state: _HubSync, event: SyncEvent) -> None:
        before = state.state
        super()._move(state, event)
        self.moves.append((before, event, state.state))


def test_every_transition_the_core_makes_is_in_the_table():
    core = RecordingCore(OWN)
    core.on_local_heads({H: at(H, 1)}, 0.0)
    (fetch,) = core.on_peer_heads(X, {H: at(H, 30)}, 0.0)
    core.on_failure(fetch, 1.0)  # failure
    (fetch,) = core.on_tick(1.5)  # retry, behind
    core.on_tick(10.0)  # expiry
    (fetch,) = core.on_tick(11.0)
    answer(core, fetch, 30, 11.5)  # reply
    assert core.moves, "the scenario made no transitions"
    assert {(a, e) for a, e, _ in core.moves} == set(TRANSITIONS)
    for before, event, after in core.moves:
        assert TRANSITIONS[before, event] is after


def test_an_illegal_transition_raises_naming_the_state_and_the_event():
    core = SyncCore(OWN)
    state = _HubSync()
    with pytest.raises(IllegalTransition) as caught:
        core._move(state, SyncEvent.REPLY)
    assert (caught.value.state, caught.value.event) == (FetchState.IDLE, SyncEvent.REPLY)
    assert "'idle'" in str(caught.value) and "'reply'" in str(caught.value)
    assert state.state is FetchState.IDLE  # unchanged


@pytest.mark.parametrize(
    ("state", "event"),
    [(s, e) for s in FetchState for e in SyncEvent if (s, e) not in TRANSITIONS],
)
def test_every_pair_outside_the_table_is_illegal(state: FetchState, event: SyncEvent):
    with pytest.raises(IllegalTransition):
        SyncCore(OWN)._move(_HubSync(state=state), event)


# -- properties ---------------------------------------------------------------------------------

HUBS = [b"a" * 32, b"b" * 32, b"c" * 32, b"d" * 32]
PEERS = [HUBS[0], HUBS[1], X, Y]
"""Two peers are authors of hubs the others hold."""

hub_i = st.integers(0, len(HUBS) - 1)
peer_i = st.integers(0, len(PEERS) - 1)
seqs = st.integers(1, 30)
announced = st.dictionaries(hub_i, st.tuples(seqs, st.integers(0, 1)), max_size=len(HUBS))
ops = st.one_of(
    st.tuples(st.just("local"), hub_i, seqs),
    st.tuples(st.just("peer"), peer_i, announced),
    st.tuples(st.just("claim"), hub_i, seqs, peer_i),
    st.tuples(st.just("reply"), st.integers(0, 7), st.integers(0, 600), st.booleans()),
    st.tuples(st.just("fail"), st.integers(0, 7)),
    st.tuples(st.just("tick"), st.sampled_from([0.0, 0.1, 0.5, 2.0, 7.0])),
    st.tuples(st.just("forget"), peer_i),
)


@dataclass
class Model:
    """What the test expects to be outstanding: fetches issued, not yet reported or expired."""

    core: SyncCore
    now: float = 0.0
    outstanding: dict[bytes, tuple[Fetch, float]] = field(default_factory=dict)
    issued: list[Fetch] = field(default_factory=list)

    def take(self, fetches: list[Fetch]) -> None:
        core = self.core
        assert len({f.hub for f in fetches}) == len(fetches)
        for f in fetches:
            assert f.hub not in self.outstanding, f"second fetch of a hub in flight: {f}"
            view = core.peers.get(f.peer)
            assert view is not None and f.hub in view.heads, f"{f.peer!r} never announced it"
            assert view.heads[f.hub][0] >= f.start, f"{f.peer!r} does not hold {f.start}"
            assert 1 <= f.limit <= core.limits.batch
            self.outstanding[f.hub] = (f, self.now)
            self.issued.append(f)
        assert core.in_flight() == len(self.outstanding) <= core.limits.max_in_flight
        for hub in self.outstanding:
            assert core.state(hub) is FetchState.FETCHING

    def settle(self, fetch: Fetch) -> None:
        """``fetch`` is about to be reported: no longer outstanding (if it was)."""
        if self.outstanding.get(fetch.hub, (None,))[0] == fetch:
            del self.outstanding[fetch.hub]

    def pick(self, k: int) -> Fetch | None:
        """An outstanding fetch, or (for larger k) a stale or invented one."""
        live = [f for f, _ in self.outstanding.values()]
        if k < len(live):
            return live[k]
        if self.issued and k % 2:
            return self.issued[k % len(self.issued)]
        return None


def run_op(model: Model, op: tuple[Any, ...]) -> None:
    core, kind = model.core, op[0]
    if kind == "local":
        hub, seq = HUBS[op[1]], op[2]
        seq = max(seq, core.local.get(hub, (0, b""))[0])
        model.take(core.on_local_heads({hub: at(hub, seq)}, model.now))
    elif kind == "peer":
        heads = {HUBS[h]: at(HUBS[h], s, b) for h, (s, b) in op[2].items()}
        model.take(core.on_peer_heads(PEERS[op[1]], heads, model.now))
    elif kind == "claim":
        model.take(core.on_claim(HUBS[op[1]], op[2], PEERS[op[3]], model.now))
    elif kind in ("reply", "fail"):
        fetch = model.pick(op[1])
        if fetch is None:
            fetch = Fetch(HUBS[op[1] % len(HUBS)], 1, 3, PEERS[op[1] % len(PEERS)])
        if kind == "fail":
            model.settle(fetch)
            model.take(core.on_failure(fetch, model.now))
            return
        got, mismatch = op[2] % (fetch.limit + 1), op[3]
        if got:  # ingested first, as the adapter does
            local = core.local.get(fetch.hub, (0, b""))[0]
            seq = max(local, fetch.start + got - 1)
            model.take(core.on_local_heads({fetch.hub: at(fetch.hub, seq)}, model.now))
        mismatch_seq = fetch.start + got if mismatch else None
        model.settle(fetch)
        model.take(core.on_reply(fetch, model.now, mismatch_seq=mismatch_seq))
    elif kind == "tick":
        model.now += op[1]
        limit = core.limits.timeout * 2
        for hub, (_, sent) in list(model.outstanding.items()):
            if model.now - sent > limit:
                del model.outstanding[hub]
        model.take(core.on_tick(model.now))
    elif kind == "forget":
        core.forget_peer(PEERS[op[1]])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(ops, max_size=60),
    st.integers(1, 4),
    st.integers(1, 20),
)
def test_random_inputs_never_break_the_core(script, max_in_flight: int, batch: int):
    """Never raises, never exceeds max_in_flight, one fetch per hub, only announced holders."""
    model = Model(SyncCore(OWN, SyncLimits(batch=batch, max_in_flight=max_in_flight)))
    for op in script:
        run_op(model, op)


@settings(max_examples=200, deadline=None)
@given(
    frontiers=st.lists(
        st.dictionaries(hub_i, st.integers(1, 3_000), max_size=len(HUBS)),
        min_size=1,
        max_size=len(PEERS),
    ),
    local=st.dictionaries(hub_i, st.integers(1, 3_000), max_size=len(HUBS)),
    max_in_flight=st.integers(1, 4),
    batch=st.integers(1, 700),
    order=st.randoms(use_true_random=False),
)
def test_an_honest_network_always_converges_to_the_highest_heads(
    frontiers, local, max_in_flight, batch, order
):
    """Peers answer every fetch fully (in any order): the node ends at the max announced
    heads, having fetched each missing record exactly once."""
    core = SyncCore(OWN, SyncLimits(batch=batch, max_in_flight=max_in_flight))
    holders = {PEERS[i]: {HUBS[h]: s for h, s in f.items()} for i, f in enumerate(frontiers)}
    mine = {HUBS[h]: s for h, s in local.items()}
    queue = core.on_local_heads({h: at(h, s) for h, s in mine.items()}, 0.0)
    for peer, heads in holders.items():
        queue += core.on_peer_heads(peer, {h: at(h, s) for h, s in heads.items()}, 0.0)
    expected = dict(mine)
    for heads in holders.values():
        for hub, seq in heads.items():
            expected[hub] = max(expected.get(hub, 0), seq)
    missing = sum(seq - mine.get(hub, 0) for hub, seq in expected.items())
    fetched = 0
    steps = 0
    while queue:
        steps += 1
        assert steps <= missing + len(HUBS) * 2, "more fetches than records missing"
        fetch = queue.pop(order.randrange(len(queue)))
        held = holders[fetch.peer][fetch.hub]
        assert fetch.start == core.local.get(fetch.hub, (0, b""))[0] + 1
        last = min(held, fetch.start + fetch.limit - 1)
        assert last >= fetch.start, f"asked {fetch.peer!r} for records it does not hold"
        fetched += last - fetch.start + 1
        queue += core.on_local_heads({fetch.hub: at(fetch.hub, last)}, 0.0)
        queue += core.on_reply(fetch, 0.0)
        assert core.in_flight() == len(queue)
    assert {h: s for h, (s, _) in core.local.items()} == expected
    assert core.behind() == {}
    assert fetched == missing


def test_an_answered_fetch_is_not_taken_for_lost_while_it_is_ingested() -> None:
    # Under load a reply can wait behind other ingest work for longer than the lost-report
    # guard; once answered, the guard counts from the answer, so nothing is fetched twice.
    hub, peer = b"H" * 32, b"P" * 32
    core = SyncCore(b"O" * 32, SyncLimits(timeout=3.0))
    (fetch,) = core.on_peer_heads(peer, {hub: (10, b"i" * 32)}, 0.0)
    core.on_answered(fetch, 5.0)
    assert core.on_tick(8.0) == []  # 8 s after sending, but only 3 s after the answer
    assert core.state(hub) is FetchState.FETCHING
    core.on_tick(11.5)  # 6.5 s after the answer: the guard fires after all
    assert core.state(hub) is FetchState.BACKOFF
