"""The NATS adapter: a thin loop around :class:`SyncCore` and the event log (DESIGN §6).

It subscribes to the network's subjects, feeds what arrives to the log (through the full
verification path) and to the sync core, performs the core's fetches as NATS requests,
publishes this hub's new events and its heads, answers range requests, and passes fork
proofs on. Every queue is bounded: NATS subscriptions have pending limits, at most
``LIVE_IN_FLIGHT`` live messages are being ingested at once, fetches are capped by the
core, and each message is bounded by the server's ``max_payload``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from hubnode.config import nats_servers, shown_url
from hubnode.errors import Reason
from hubnode.events.envelope import event_id
from hubnode.events.ids import hub_display, short_hub
from hubnode.protocol import messages as m
from hubnode.protocol.sync import LAG_CAP, Fetch, SyncCore
from hubnode.store.log import EventLog, IngestOutcome, Status
from hubnode.trust import TrustSet, fold_admissions

log = logging.getLogger("hubnode.gossip")

SUB_PENDING_MSGS: Final = 20_000
SUB_PENDING_BYTES: Final = 64 * 1024 * 1024
"""Per-subscription bounds; past them NATS drops messages (a slow consumer), and the
heads/sync loop recovers whatever was lost."""
PUBLISH_POLL: Final = 0.01
"""Seconds between checks for own events appended by another process: the most such an
event waits to be published. A check is one ``PRAGMA data_version`` query (~3 µs CPU)."""
PUBLISH_RETRY: Final = 0.2
"""Seconds between attempts to publish own events while NATS is unreachable."""
TICK: Final = 0.25
LIVE_IN_FLIGHT: Final = 2
"""Live ``ev`` messages being ingested at once: one stored while the next is verified.
More would only queue at the verify pool; the rest wait in the subscription's bounded
pending queue."""


@dataclass
class Counters:
    accepted: int = 0
    duplicates: int = 0
    pending: int = 0
    dropped_full: int = 0
    dropped_unknown: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    forks: int = 0
    garbage: int = 0
    published: int = 0
    served: int = 0
    fetched: int = 0
    fetch_failures: int = 0
    slow_consumer: int = 0

    def count(self, outcomes: list[IngestOutcome]) -> None:
        for o in outcomes:
            if o.status is Status.ACCEPTED:
                self.accepted += 1 + o.released
            elif o.status is Status.DUPLICATE:
                self.duplicates += 1
            elif o.status is Status.PENDING:
                self.pending += 1
            elif o.status is Status.DROPPED:
                self.dropped_full += 1
            elif o.status is Status.FORK:
                self.forks += 1
            elif o.reason is Reason.UNKNOWN_HUB:
                self.dropped_unknown += 1
            else:
                self.rejected[o.reason.value if o.reason else "?"] += 1

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(vars(self))
        out["rejected"] = dict(self.rejected)
        return out


@dataclass
class PeerSeen:
    """What this node has had from one hub this run, on the gossip clock.

    Heads messages are unsigned (any NATS client can send one naming any hub), so only a
    record signed by the hub is evidence that it ran: ``last_record`` is when the newest
    such record new to this node was signed, by the signed clock in it but never later
    than it arrived (live or fetched from anyone: a record passed on while its author is
    offline shows when the author signed it, not that it is up), ``last_heard`` when a
    heads message in its name last arrived, and ``heads`` what that one announced.
    """

    last_record: float | None = None
    last_heard: float | None = None
    heads: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)


class Gossip:
    """Runs one hub's side of the network protocol over a NATS connection."""

    def __init__(
        self,
        log_: EventLog,
        trust: TrustSet,
        *,
        heads_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert log_.hub is not None, "gossip needs the hub's own log"
        self.log = log_
        self.own: bytes = log_.hub
        self.net = log_.net
        self.trust = trust
        self.core = SyncCore(self.own)
        self.counters = Counters()
        self.peers: dict[bytes, PeerSeen] = {}
        self.heads: dict[bytes, tuple[int, bytes]] = {}
        self.connected = False
        self.connected_changed = time.time()
        """Wall-clock time ``connected`` last changed (or the gossip was made)."""
        self.nats_url: str | None = None
        self.heads_interval = heads_interval
        self._clock = clock
        self._nc: Client | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._published_seq = 0
        self._announced_forks: set[tuple[bytes, int, bytes, bytes]] = set()
        self._admissions_pos = 0
        self._warned: set[tuple[bytes, str]] = set()
        self._error_logged = False
        self._own_claimed = 0
        self._live = asyncio.Semaphore(LIVE_IN_FLIGHT)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, url: str) -> None:
        """Load state, connect (retrying until the server answers) and subscribe."""
        self.nats_url = shown_url(url)
        self.heads = {h: (v.seq, v.id) for h, v in (await self.log.heads()).items()}
        own = self.heads.get(self.own)
        self._published_seq = own[0] if own else 0
        await self.refresh_trust()
        self.core.on_local_heads(self.heads, self._clock())
        nc = await self._connect(url)
        handlers = {
            "ev": self._on_events,
            "heads": self._on_heads,
            "forks": self._on_fork,
            "sync.>": self._on_sync,
        }
        for name, handler in handlers.items():
            await nc.subscribe(
                m.subject(self.net, name),
                cb=self._guard(handler),
                pending_msgs_limit=SUB_PENDING_MSGS,
                pending_bytes_limit=SUB_PENDING_BYTES,
            )
        await nc.flush()
        self._set_connected(True)
        await self.publish_heads()
        self._spawn(self._publish_loop())
        self._spawn(self._heads_loop())
        self._spawn(self._tick_loop())

    async def stop(self) -> None:
        """Stop the loops and leave NATS: flush what is queued if connected (bounded by
        ``drain_timeout``), else close at once (a start still connecting, or reconnecting)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Before draining: closing fires the disconnected callback, which must not log
        # "reconnecting" for a clean stop.
        self.connected = False
        nc = self._nc
        if nc is None or nc.is_closed:
            return
        if nc.is_connected:
            with contextlib.suppress(Exception):
                await nc.drain()
        if not nc.is_closed:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _connect(self, url: str) -> Client:
        """Connect to ``url`` (one server, or several separated by commas), retrying until
        one answers. Cancelling it (a stop before the first connection) leaves ``_nc``
        for :meth:`stop` to close."""
        delay = 0.2
        while True:
            # Made here, not by nats.connect(): a stop must be able to close a client that
            # is still trying to connect (nats-py retries inside connect() for ever).
            self._nc = nc = Client()
            try:
                await nc.connect(
                    servers=nats_servers(url),
                    name=f"hubnode {hub_display(self.own)}",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    # Seconds between attempts; annotated int, but nats-py sleeps a float fine.
                    reconnect_time_wait=0.5,  # type: ignore[arg-type]
                    connect_timeout=2,
                    # Nothing this node publishes is news to it (its own events, heads,
                    # proofs, requests); another process with the same key still gets through.
                    no_echo=True,
                    # A clean stop flushes what is queued, but never waits long for it:
                    # heads and sync recover anything a peer missed.
                    drain_timeout=2,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                )
                return nc
            except (OSError, nats.errors.Error, TimeoutError) as e:
                log.warning(
                    "cannot reach NATS at %s (%s); retrying in %.1fs", shown_url(url), e, delay
                )
                with contextlib.suppress(Exception):
                    await nc.close()
                await asyncio.sleep(delay)  # back off before reconnecting: a real wait
                delay = min(delay * 2, 5.0)

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected_changed = time.time()
        self.connected = connected

    async def _on_error(self, e: Exception) -> None:
        if isinstance(e, nats.errors.SlowConsumerError):
            self.counters.slow_consumer += 1
            if self.counters.slow_consumer == 1:
                log.warning("slow consumer: messages dropped; sync will fetch what was lost")
        elif self._error_logged is not True:
            # One line per outage: the client retries every half second.
            self._error_logged = True
            log.warning("NATS error: %s", e)

    async def _on_disconnected(self) -> None:
        if self.connected:
            log.warning("disconnected from NATS; reconnecting")
        self._set_connected(False)

    async def _on_reconnected(self) -> None:
        self._set_connected(True)
        self._error_logged = False
        log.info("reconnected to NATS")
        self._spawn(self.publish_heads())

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _guard(self, handler: Callable[[Msg], Awaitable[None]]) -> Callable[[Msg], Awaitable[None]]:
        """Bad input must never kill a subscription: count it and go on."""

        async def guarded(msg: Msg) -> None:
            try:
                await handler(msg)
            except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
                self.counters.garbage += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("error handling a message on %s", msg.subject)

        return guarded

    # -- publishing ---------------------------------------------------------------------

    async def publish_heads(self) -> None:
        if self._nc is None or not self.connected:
            return
        message = m.HeadsMessage(self.own, dict(self.heads))
        payload = m.encoder.encode(message)
        if len(payload) <= self._nc.max_payload:
            with contextlib.suppress(nats.errors.Error):
                await self._nc.publish(m.subject(self.net, "heads"), payload)

    async def _heads_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heads_interval)  # the announcement period itself
            await self.publish_heads()

    async def _publish_loop(self) -> None:
        """Publish this hub's new events, whichever process appended them.

        One stored by this process wakes the loop at once. A commit by another process
        (``hubnode log append``, say) changes SQLite's ``data_version``, checked every
        ``PUBLISH_POLL`` s: one cheap query, where reading the head would be several.
        """
        while True:
            version = await self.log.data_version()  # first: any later commit changes it
            failed = False
            try:
                await self._publish_new()
            except nats.errors.Error as e:  # the connection dropped mid-publish
                log.debug("publishing own events failed: %r; retrying", e)
                failed = True
            if failed or not self.connected or self._nc is None or not self._nc.is_connected:
                # Unpublished events would wake the wait below at once: do not spin.
                await asyncio.sleep(PUBLISH_RETRY)  # the retry period while NATS is away
                continue
            own = asyncio.ensure_future(self.log.wait_for(self.own, self._published_seq + 1))
            try:
                while not own.done() and await self.log.data_version() == version:
                    await asyncio.wait([own], timeout=PUBLISH_POLL)
            finally:
                own.cancel()

    async def _publish_new(self) -> None:
        nc = self._nc
        if nc is None or not self.connected:
            return
        while True:
            records = await self.log.records(
                self.own, self._published_seq + 1, limit=1000, max_bytes=4 * nc.max_payload
            )
            if not records:
                if self.log.damage.at(self.own, self._published_seq + 1) is None:
                    return
                # The read stopped at a damaged record (logged): push what follows it;
                # peers fetch that seq from any holder with a sound copy.
                self._published_seq += 1
                continue
            for payload in m.pack_records(records, nc.max_payload):
                await nc.publish(m.subject(self.net, "ev"), payload)
            self._published_seq += len(records)
            self.counters.published += len(records)
            last = records[-1]
            self.heads[self.own] = (self._published_seq, event_id(last))
            self.core.on_local_heads({self.own: self.heads[self.own]}, self._clock())
            # Own events may admit hubs (appended by `hubnode log append`, say): trust them.
            await self.refresh_trust()

    async def _publish_fork(self, hub: bytes, seq: int) -> None:
        """Publish the proof of ``hub``'s fork at ``seq`` once."""
        if self._nc is None:
            return
        for proof in await self.log.forks():
            if proof.hub != hub or proof.seq != seq:
                continue
            key = (proof.hub, proof.seq, *proof.ids)
            if key in self._announced_forks:
                continue
            self._announced_forks.add(key)
            log.warning(
                "FORK: %s signed two different events at seq %d (%s / %s)",
                hub_display(hub),
                seq,
                proof.ids[0].hex()[:12],
                proof.ids[1].hex()[:12],
            )
            await self._send_proof(proof.raw_a, proof.raw_b)

    async def _send_proof(self, raw_a: bytes, raw_b: bytes) -> None:
        if self._nc is None:
            return
        payload = m.encoder.encode(m.ForkMessage(raw_a, raw_b))
        if len(payload) <= self._nc.max_payload:
            with contextlib.suppress(nats.errors.Error):
                await self._nc.publish(m.subject(self.net, "forks"), payload)

    async def _reannounce_forks(self) -> None:
        """Send every proof held to the network again, for a peer that just appeared.

        A node that was offline (or new) when a fork was found would otherwise sync one
        twin and never hear of the other. Forks are rare, so this costs little.
        """
        for proof in await self.log.forks():
            await self._send_proof(proof.raw_a, proof.raw_b)

    # -- receiving ----------------------------------------------------------------------

    async def ingest(self, records: list[bytes], *, source: bytes | None) -> list[IngestOutcome]:
        """Ingest records from the network and react: heads, trust, forks, gaps, logs."""
        # Calls overlap (see ``_on_events``); the log stores them in the order they began,
        # and verifies a record carried by two of them (a fetch racing live messages) once.
        outcomes = await self.log.ingest(records, trusted=self.trust.contains)
        self.counters.count(outcomes)
        now = self._clock()
        changed: set[bytes] = set()
        own_ahead = 0
        for o in outcomes:
            if o.hub is None:
                continue
            if o.status in (Status.ACCEPTED, Status.PENDING) and o.hub != self.own:
                # Verified and new to this node: signed evidence the hub ran — when it
                # signed it, by its own signed clock (a record passed on later by another
                # hub, or fetched while its author is offline, proves nothing newer), and
                # never later than it arrived. A replayed duplicate proves nothing at all.
                self._seen_record(o.hub, o.ts, now)
            if o.status is Status.ACCEPTED:
                changed.add(o.hub)
            elif o.status is Status.PENDING and o.seq is not None:
                if o.hub == self.own:
                    own_ahead = max(own_ahead, o.seq)
                self._spawn_fetches(self.core.on_claim(o.hub, o.seq, source or o.hub, now))
            elif o.status is Status.FORK and o.seq is not None:
                await self._publish_fork(o.hub, o.seq)
            elif o.status is Status.REJECTED and o.reason is not None:
                self._warn_once(o.hub, o.reason, o.detail)
        if changed:
            for hub in changed:
                head = await self.log.head(hub)
                if head is not None:
                    self.heads[hub] = (head.seq, head.id)
            self._spawn_fetches(self.core.on_local_heads({h: self.heads[h] for h in changed}, now))
            await self.refresh_trust()
        if own_ahead > self.heads.get(self.own, (0, b""))[0]:
            # Signed proof that this hub's own chain goes further than its log (restored
            # from a backup): refuse appends, in every process, until the gap is fetched.
            await self.log.note_peer_head(own_ahead)
        return outcomes

    def _seen_record(self, hub: bytes, signed_ms: int | None, now: float) -> None:
        """Note a record ``hub`` signed at ``signed_ms`` (wall clock), arriving ``now``."""
        at = now if signed_ms is None else min(now, now - (time.time() - signed_ms / 1000))
        seen = self.peers.setdefault(hub, PeerSeen())
        if seen.last_record is None or at > seen.last_record:
            seen.last_record = at

    def _warn_once(self, hub: bytes, reason: Reason, detail: str) -> None:
        key = (hub, reason.value)
        if key in self._warned or len(self._warned) > 10_000:
            return
        self._warned.add(key)
        if reason is Reason.UNKNOWN_HUB:
            log.info("dropping events of untrusted %s", hub_display(hub))
        else:
            log.warning("rejected a record of %s: %s: %s", short_hub(hub), reason.value, detail)

    async def refresh_trust(self) -> None:
        """Fold new ``hub.admitted`` events into the trust set."""
        grew, self._admissions_pos = await fold_admissions(
            self.trust, self.log, self._admissions_pos
        )
        if grew:
            log.info("trust set grew to %d hubs through admissions", len(self.trust))

    async def _on_events(self, msg: Msg) -> None:
        """Start ingesting a live message and return, so that the subscription hands over
        the next one: its records are verified while these are stored."""
        records = m.records_decoder.decode(msg.data)
        if records:
            await self._live.acquire()  # bounded: at most LIVE_IN_FLIGHT at once
            # A task's first step runs in the order tasks were created, so live messages
            # take their turn to store in the order they arrived.
            self._spawn(self._ingest_live(records))

    async def _ingest_live(self, records: list[bytes]) -> None:
        try:
            await self.ingest(records, source=None)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("error ingesting a live message")
        finally:
            self._live.release()

    async def _on_heads(self, msg: Msg) -> None:
        message = m.heads_decoder.decode(msg.data)
        sender = message.sender
        if sender == self.own:
            return
        if sender not in self.trust:
            self._warn_once(sender, Reason.UNKNOWN_HUB, "heads from an untrusted hub")
            return
        now = self._clock()
        seen = self.peers.setdefault(sender, PeerSeen())
        if seen.last_heard is None:
            log.info("peer seen: %s", hub_display(sender))
            self._spawn(self._reannounce_forks())
        # Unsigned: this moves "last heard from", never "last seen running" (PeerSeen).
        seen.last_heard = now
        seen.heads = {h: (s, i) for h, (s, i) in message.heads.items()}
        claimed = message.heads.get(self.own)
        own_seq = self.heads.get(self.own, (0, b""))[0]
        if claimed is not None and claimed[0] > max(own_seq, self._own_claimed):
            # Heads are unsigned: anyone on the bus can claim anything. The core fetches
            # the claimed events; only records signed by this hub's key, once fetched,
            # stop appends (ingest). A bare claim must not: it would stop them for good.
            self._own_claimed = claimed[0]
            # Once per sender: a spoofer raising its claim one by one must not flood the log.
            level = logging.DEBUG if (sender, "own-ahead") in self._warned else logging.WARNING
            self._warned.add((sender, "own-ahead"))
            log.log(
                level,
                "%s announces this hub's own events up to seq %d, beyond this log: "
                "fetching them (restored from a backup?)",
                short_hub(sender),
                claimed[0],
            )
        trusted = {h: (s, i) for h, (s, i) in message.heads.items() if h in self.trust}
        self._spawn_fetches(self.core.on_peer_heads(sender, trusted, now))
        if self.core.implausible(sender) and (sender, "implausible") not in self._warned:
            self._warned.add((sender, "implausible"))
            log.warning(
                "heads in the name of %s claim more than %d events of one hub beyond this "
                "node: implausible (heads are not signed; another client may be sending them)",
                short_hub(sender),
                LAG_CAP,
            )

    async def _on_fork(self, msg: Msg) -> None:
        proof = m.fork_decoder.decode(msg.data)
        if proof.raw_a == proof.raw_b:
            self.counters.garbage += 1
            return
        # The log verifies both records fully; a fork outcome means the proof holds.
        # The log verifies both records fully; if they prove a fork, ingest() stores the
        # proof, marks the hub and republishes it once. Anything else changes nothing.
        await self.ingest([proof.raw_a, proof.raw_b], source=None)

    async def _on_sync(self, msg: Msg) -> None:
        request = m.request_decoder.decode(msg.data)
        if request.peer is not None and request.peer != self.own:
            return
        nc = self._nc
        if nc is None or not msg.reply:
            return
        budget = min(request.max_bytes, nc.max_payload) - m.RECORDS_OVERHEAD
        records = await self.log.records(
            request.hub, request.start, limit=request.limit, max_bytes=budget
        )
        while records and sum(len(r) + m.PER_RECORD_OVERHEAD for r in records) > budget:
            records.pop()  # records() returns at least one record; it must still fit
        if not records and request.peer is None:
            return  # let a holder answer an open request
        self.counters.served += len(records)
        await msg.respond(m.encoder.encode(records))

    # -- fetching -----------------------------------------------------------------------

    def _spawn_fetches(self, fetches: list[Fetch]) -> None:
        for fetch in fetches:
            self._spawn(self._fetch(fetch))

    async def _fetch(self, fetch: Fetch) -> None:
        nc = self._nc
        if nc is None:
            self._spawn_fetches(self.core.on_failure(fetch, self._clock()))
            return
        request = m.SyncRequest(fetch.hub, fetch.start, fetch.limit, nc.max_payload, fetch.peer)
        try:
            reply = await nc.request(
                m.sync_subject(self.net, fetch.hub),
                m.encoder.encode(request),
                timeout=self.core.limits.timeout,
            )
            self.core.on_answered(fetch, self._clock())
            records = m.records_decoder.decode(reply.data)
        except (nats.errors.Error, TimeoutError, msgspec.DecodeError) as e:
            self.counters.fetch_failures += 1
            log.debug("fetch %s from %s failed: %r", short_hub(fetch.hub), short_hub(fetch.peer), e)
            self._spawn_fetches(self.core.on_failure(fetch, self._clock()))
            return
        before = self.heads.get(fetch.hub, (0, b""))[0]
        outcomes = await self.ingest(records, source=fetch.peer)
        self.counters.fetched += len(records)
        after = self.heads.get(fetch.hub, (0, b""))[0]
        if after > before:
            log.info(
                "gap filled: %s seq %d..%d from %s",
                short_hub(fetch.hub),
                before + 1,
                after,
                short_hub(fetch.peer),
            )
        mismatch = next(
            (o.seq for o in outcomes if o.reason is Reason.PREV_MISMATCH and o.hub == fetch.hub),
            None,
        )
        if not records:
            # The holder has nothing from ``start``: its head said otherwise (false or stale).
            self._spawn_fetches(self.core.on_empty(fetch, self._clock()))
            return
        if after == before and mismatch is None and fetch.limit > 1:
            # Nothing usable: treat as a failure so another holder is tried.
            self._spawn_fetches(self.core.on_failure(fetch, self._clock()))
            return
        self._spawn_fetches(self.core.on_reply(fetch, self._clock(), mismatch_seq=mismatch))

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK)  # the core's clock tick
            self._spawn_fetches(self.core.on_tick(self._clock()))

    # -- status -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What ``run/status.json`` shows of the network (docs/operating.md, "Monitoring").

        Per peer: ``last_record`` and ``last_heard`` (wall-clock seconds, or None; see
        :class:`PeerSeen`), the ``heads`` it last announced, and ``lag``: how many records
        those heads say this node lacks, with ``lag_claim_absurd`` when they also claimed a
        hub more than ``LAG_CAP`` records beyond this node (not counted in ``lag``).
        """
        now = self._clock()
        wall = time.time()

        def moment(at: float | None) -> float | None:
            return None if at is None else wall - (now - at)

        peers: dict[str, Any] = {}
        for p, seen in self.peers.items():
            peers[hub_display(p)] = {
                "last_record": moment(seen.last_record),
                "last_heard": moment(seen.last_heard),
                "heads": {hub_display(h): s for h, (s, _) in seen.heads.items()},
                "lag": self.core.lag(p),
                "lag_claim_absurd": bool(self.core.implausible(p)),
            }
        return {
            "nats": {"url": self.nats_url, "connected": self.connected},
            "heads": {
                hub_display(h): {"seq": s, "id": i.hex()} for h, (s, i) in self.heads.items()
            },
            "peers": peers,
            "counters": self.counters.as_dict(),
            "pending": len(self.log.pending),
        }
