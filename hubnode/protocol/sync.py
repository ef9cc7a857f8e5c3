"""The sync core: decides what to fetch from whom. Sans-io (STYLE §1).

It takes plain inputs — this node's heads, peers' heads, results of fetches, the clock —
and returns :class:`Fetch` actions. The NATS adapter (``hubnode.protocol.transport``)
performs them and reports back. No ``await``, no sockets, no clock of its own.

Per hub the core runs one small state machine; :data:`TRANSITIONS` is its whole table:

    idle ──behind──▶ fetching ──reply──▶ idle
                         │
                         └──failure──▶ backoff ──retry──▶ idle

A hub is *behind* when some trusted peer announced a higher seq than this node holds.
Fetches ask for ``local + 1`` onwards from one chosen holder, so catch-up costs
O(missing records). A failed holder is backed off (exponentially, per hub and holder)
and another holder is tried next.

Heads are unsigned: any client on the bus can announce any seq in a trusted hub's name.
So an announced head is only ever a reason to ask: whatever it claims, one request asks
for at most ``SyncLimits.batch`` records, and when the claimant answers that it holds
nothing from there (:meth:`SyncCore.on_empty`) its claim for that hub is dropped until it
announces again; a claim repeated regardless costs one request per holder backoff. Only
verified records are stored (by the log), so a false head changes nothing but the
:meth:`~SyncCore.lag` it makes this node report, and a claim past :data:`LAG_CAP` is
flagged (:meth:`~SyncCore.implausible`) rather than counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

LAG_CAP: Final = 1_000_000
"""The most records one hub's announced head may put beyond what this node holds of that
hub and still be believed.

A hub appends thousands of events a year, so no real chain runs a million ahead of a copy
of it: such a claim is most likely a false heads message (heads are unsigned). It is
still fetched from (one batch at a time) but not counted in :meth:`SyncCore.lag`; it is
flagged instead (:meth:`SyncCore.implausible`). The cap is per hub, not on the total, so a
node new to a large network, lacking millions of records over hundreds of hubs, shows
its real lag.
"""


def bounded_lag(lag: object, implausible: object = False) -> tuple[int | None, bool]:
    """A lag fit to show from what a status file holds, whoever wrote it: ``(records,
    implausible)``; anything but a non-negative integer is ``(None, False)``, and a lag no
    network could have (past :data:`LAG_CAP` per hub for 10,000 hubs) is flagged."""
    if isinstance(lag, bool) or not isinstance(lag, int) or lag < 0:
        return None, False
    absurd = lag > LAG_CAP * 10_000
    return (0 if absurd else lag), absurd or implausible is True


def events_lacking(lag: int, implausible: bool = False) -> str:
    """What this hub lacks of a peer's announced events, for people: "1 event",
    "999,999 events", and a note when the peer also made an implausible claim."""
    said = f"{lag:,} event{'' if lag == 1 else 's'}"
    if implausible:
        said += f" (and a claim of more than {LAG_CAP:,} more, not believed)"
    return said


class FetchState(StrEnum):
    IDLE = "idle"
    FETCHING = "fetching"
    BACKOFF = "backoff"


class SyncEvent(StrEnum):
    BEHIND = "behind"
    REPLY = "reply"
    FAILURE = "failure"
    RETRY = "retry"


TRANSITIONS: Final[dict[tuple[FetchState, SyncEvent], FetchState]] = {
    (FetchState.IDLE, SyncEvent.BEHIND): FetchState.FETCHING,
    (FetchState.FETCHING, SyncEvent.REPLY): FetchState.IDLE,
    (FetchState.FETCHING, SyncEvent.FAILURE): FetchState.BACKOFF,
    (FetchState.BACKOFF, SyncEvent.RETRY): FetchState.IDLE,
}


class IllegalTransition(Exception):
    """A sync state machine was driven out of :data:`TRANSITIONS` (a bug, not bad input)."""

    def __init__(self, state: FetchState, event: SyncEvent) -> None:
        super().__init__(f"sync: no transition from {state.value!r} on {event.value!r}")
        self.state = state
        self.event = event


@dataclass(frozen=True)
class Fetch:
    """Ask ``peer`` for records of ``hub`` from ``start`` (at most ``limit``)."""

    hub: bytes
    start: int
    limit: int
    peer: bytes


@dataclass(frozen=True)
class SyncLimits:
    batch: int = 500
    """Most records asked for in one request."""
    max_in_flight: int = 8
    """Most requests outstanding at once, over all hubs."""
    timeout: float = 3.0
    """Seconds after which an unanswered request counts as failed."""
    backoff_first: float = 0.5
    backoff_max: float = 30.0


@dataclass
class _HubSync:
    state: FetchState = FetchState.IDLE
    request: Fetch | None = None
    sent_at: float = 0.0
    retry_at: float = 0.0
    check_seq: int | None = None
    """A seq whose record should be fetched to settle a suspected fork."""
    check_peer: bytes | None = None
    """The peer that showed the other record at ``check_seq``: the one that can prove it."""


@dataclass
class PeerView:
    heads: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)
    """Per hub, the (seq, id) this peer announced (or showed, :meth:`SyncCore.on_claim`)."""


class SyncCore:
    """What this node should fetch, given what it and its peers hold."""

    def __init__(self, own: bytes, limits: SyncLimits | None = None) -> None:
        self.own = own
        self.limits = limits or SyncLimits()
        self.local: dict[bytes, tuple[int, bytes]] = {}
        self.peers: dict[bytes, PeerView] = {}
        self._hubs: dict[bytes, _HubSync] = {}
        self._failures: dict[tuple[bytes, bytes], int] = {}
        self._peer_retry: dict[tuple[bytes, bytes], float] = {}

    # -- inputs -------------------------------------------------------------------------

    def on_local_heads(self, heads: dict[bytes, tuple[int, bytes]], now: float) -> list[Fetch]:
        """This node's log changed (or was read at start)."""
        self.local.update(heads)
        return self._plan(now)

    def on_peer_heads(
        self, peer: bytes, heads: dict[bytes, tuple[int, bytes]], now: float
    ) -> list[Fetch]:
        """A trusted peer announced its frontier (already filtered to trusted hubs)."""
        view = self.peers.setdefault(peer, PeerView())
        view.heads = dict(heads)
        for hub, (seq, id_) in heads.items():
            local = self.local.get(hub)
            if local is not None and local[0] == seq and local[1] != id_:
                # Same seq, different event: fetch the peer's copy to prove the fork.
                state = self._hub(hub)
                state.check_seq, state.check_peer = seq, peer
        return self._plan(now)

    def on_claim(self, hub: bytes, seq: int, peer: bytes, now: float) -> list[Fetch]:
        """``peer`` showed it holds ``hub`` up to ``seq`` (e.g. a live record ahead of a gap)."""
        view = self.peers.setdefault(peer, PeerView())
        if seq > view.heads.get(hub, (0, b""))[0]:
            view.heads[hub] = (seq, b"")
        return self._plan(now)

    def on_reply(self, fetch: Fetch, now: float, *, mismatch_seq: int | None = None) -> list[Fetch]:
        """``fetch`` was answered and ingested (local heads already updated).

        ``mismatch_seq``: a returned record at that seq did not link to our chain, so the
        hub signed a different record at ``mismatch_seq - 1``: fetch it to prove the fork.
        A report for a request the core no longer waits for is ignored.
        """
        state = self._hubs.get(fetch.hub)
        if state is None or state.request != fetch:
            return self._plan(now)
        self._move(state, SyncEvent.REPLY)
        self._failures.pop((fetch.hub, fetch.peer), None)
        self._peer_retry.pop((fetch.hub, fetch.peer), None)
        if mismatch_seq is not None and mismatch_seq > 1:
            state.check_seq, state.check_peer = mismatch_seq - 1, fetch.peer
        return self._plan(now)

    def on_answered(self, fetch: Fetch, now: float) -> None:
        """The reply to ``fetch`` arrived and is being ingested: not lost.

        The lost-report guard in :meth:`on_tick` then counts from now, so a reply queued
        behind other ingest work under load is not taken for a lost one and fetched again.
        """
        state = self._hubs.get(fetch.hub)
        if state is not None and state.request == fetch:
            state.sent_at = now

    def on_failure(self, fetch: Fetch, now: float) -> list[Fetch]:
        """``fetch`` timed out, found no responder, or came back unusable."""
        state = self._hubs.get(fetch.hub)
        if state is None or state.request != fetch:
            return self._plan(now)
        self._fail(state, fetch, now)
        return self._plan(now)

    def on_empty(self, fetch: Fetch, now: float) -> list[Fetch]:
        """``fetch.peer`` answered ``fetch`` with no records: it holds none from ``start``.

        Its head for the hub said otherwise, so that claim was false (heads are unsigned:
        anyone can announce one in a trusted hub's name) or is out of date. It is dropped,
        so the peer is not asked again and does not count in :meth:`lag`, until it
        announces again; the failure backs the peer off, so a claim that keeps coming
        costs one request per backoff. A report for a request no longer waited for is
        ignored.
        """
        state = self._hubs.get(fetch.hub)
        if state is None or state.request != fetch:
            return self._plan(now)
        view = self.peers.get(fetch.peer)
        if view is not None and view.heads.get(fetch.hub, (0, b""))[0] >= fetch.start:
            del view.heads[fetch.hub]
        self._fail(state, fetch, now)
        return self._plan(now)

    def on_tick(self, now: float) -> list[Fetch]:
        """Time passed: expire unanswered requests, end backoffs."""
        for state in list(self._hubs.values()):
            if (
                state.state is FetchState.FETCHING
                and state.request is not None
                and now - state.sent_at > self.limits.timeout * 2
            ):
                # The adapter reports its own timeouts; this guards against a lost report.
                self._fail(state, state.request, now)
        return self._plan(now)

    def _fail(self, state: _HubSync, fetch: Fetch, now: float) -> None:
        self._move(state, SyncEvent.FAILURE)
        key = (fetch.hub, fetch.peer)
        n = self._failures.get(key, 0) + 1
        self._failures[key] = n
        delay = min(self.limits.backoff_max, self.limits.backoff_first * 2 ** (n - 1))
        self._peer_retry[key] = now + delay
        # The hub itself may retry soon with another holder; this holder waits longer.
        state.retry_at = now + min(delay, self.limits.backoff_first)

    def forget_peer(self, peer: bytes) -> None:
        self.peers.pop(peer, None)

    # -- queries ------------------------------------------------------------------------

    def state(self, hub: bytes) -> FetchState:
        return self._hubs[hub].state if hub in self._hubs else FetchState.IDLE

    def in_flight(self) -> int:
        return sum(s.state is FetchState.FETCHING for s in self._hubs.values())

    def lag(self, peer: bytes) -> int:
        """How far this node lags behind ``peer``: the records of every hub ``peer``
        announced that this node does not hold yet (what this node lacks, not the peer),
        leaving out the claims past :data:`LAG_CAP` (:meth:`implausible`)."""
        return sum(gap for gap in self._gaps(peer).values() if gap <= LAG_CAP)

    def implausible(self, peer: bytes) -> list[bytes]:
        """The hubs whose head ``peer`` announced more than :data:`LAG_CAP` records beyond
        what this node holds: not believed (heads are unsigned), not counted in :meth:`lag`."""
        return sorted(hub for hub, gap in self._gaps(peer).items() if gap > LAG_CAP)

    def _gaps(self, peer: bytes) -> dict[bytes, int]:
        view = self.peers.get(peer)
        if view is None:
            return {}
        gaps = {hub: seq - self.local.get(hub, (0, b""))[0] for hub, (seq, _) in view.heads.items()}
        return {hub: gap for hub, gap in gaps.items() if gap > 0}

    def behind(self) -> dict[bytes, int]:
        """Per hub, the highest seq any peer announced above what this node holds."""
        out: dict[bytes, int] = {}
        for view in self.peers.values():
            for hub, (seq, _) in view.heads.items():
                if seq > self.local.get(hub, (0, b""))[0]:
                    out[hub] = max(out.get(hub, 0), seq)
        return out

    # -- the decision -------------------------------------------------------------------

    def _hub(self, hub: bytes) -> _HubSync:
        return self._hubs.setdefault(hub, _HubSync())

    def _move(self, state: _HubSync, event: SyncEvent) -> None:
        try:
            state.state = TRANSITIONS[state.state, event]
        except KeyError:
            raise IllegalTransition(state.state, event) from None
        if state.state is not FetchState.FETCHING:
            state.request = None

    def _plan(self, now: float) -> list[Fetch]:
        for state in self._hubs.values():
            if state.state is FetchState.BACKOFF and now >= state.retry_at:
                self._move(state, SyncEvent.RETRY)
        budget = self.limits.max_in_flight - self.in_flight()
        actions: list[Fetch] = []
        wanted = self.behind()
        checks = {h: s.check_seq for h, s in self._hubs.items() if s.check_seq is not None}
        for hub in sorted(set(wanted) | set(checks)):
            if budget <= 0:
                break
            state = self._hub(hub)
            if state.state is not FetchState.IDLE:
                continue
            local_seq = self.local.get(hub, (0, b""))[0]
            check = state.check_seq
            if check is not None:
                start, limit, need = check, 1, check
            else:
                start = local_seq + 1
                limit = min(self.limits.batch, wanted[hub] - local_seq)
                need = start
            prefer = state.check_peer if check is not None else None
            peer = self._choose_peer(hub, need, now, prefer)
            if peer is None:
                continue
            fetch = Fetch(hub, start, limit, peer)
            self._move(state, SyncEvent.BEHIND)
            state.request = fetch
            state.sent_at = now
            state.check_seq = state.check_peer = None
            actions.append(fetch)
            budget -= 1
        return actions

    def _choose_peer(
        self, hub: bytes, need: int, now: float, prefer: bytes | None = None
    ) -> bytes | None:
        """The holder of ``hub``'s seq ``need`` to ask: ``prefer`` if it may be asked, else
        among the holders that failed least, the author first, else the furthest."""
        candidates = [
            (peer, view.heads[hub][0])
            for peer, view in self.peers.items()
            if hub in view.heads
            and view.heads[hub][0] >= need
            and self._peer_retry.get((hub, peer), 0.0) <= now
        ]
        if not candidates:
            return None
        if any(peer == prefer for peer, _ in candidates):
            return prefer
        # A holder that just failed is free again when the hub retries: try another first.
        fewest = min(self._failures.get((hub, peer), 0) for peer, _ in candidates)
        candidates = [c for c in candidates if self._failures.get((hub, c[0]), 0) == fewest]
        for peer, _ in candidates:
            if peer == hub:
                return peer
        return max(candidates, key=lambda c: (c[1], c[0]))[0]
