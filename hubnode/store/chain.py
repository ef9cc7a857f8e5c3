"""One write transaction on the log, and where each verified record goes (DESIGN §4).

:class:`WriteTx` caches what it reads inside the transaction (each hub's head, fork state,
the next ``pos``) and collects new rows for one ``executemany``. Its :meth:`WriteTx.place`
is the store stage of ingest: the next record of a hub is stored (and any pending records
it unblocks), one ahead of a gap waits in the bounded pending buffer, a second valid
record at a ``(hub, seq)`` is a fork, and nothing past a fork is taken.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from enum import StrEnum
from typing import NamedTuple

import aiosqlite
import msgspec

from hubnode.errors import InvalidEvent, Reason
from hubnode.events.envelope import Envelope, event_id
from hubnode.events.ids import hub_display
from hubnode.events.kinds import KindRegistry
from hubnode.events.verify import Verified, check_link
from hubnode.store import intake
from hubnode.store.pending import PendingBuffer
from hubnode.store.verifying import Checked


class Head(NamedTuple):
    seq: int
    id: bytes


class Status(StrEnum):
    ACCEPTED = "accepted"  # stored (and any records it unblocked, see ``released``)
    DUPLICATE = "duplicate"  # held already, stored or pending: nothing changed
    PENDING = "pending"  # valid, waiting for an earlier seq of its hub
    DROPPED = "dropped"  # valid but ahead of a gap and the pending buffer is full
    REJECTED = "rejected"  # failed verification; ``reason`` says which check
    FORK = "fork"  # a second valid event for a (hub, seq): proof kept, hub marked forked


class IngestOutcome(msgspec.Struct, frozen=True):
    status: Status
    hub: bytes | None = None
    seq: int | None = None
    id: bytes | None = None
    reason: Reason | None = None
    detail: str = ""
    released: int = 0
    """Pending records of the same hub stored because this one filled their gap."""
    ts: int | None = None
    """The record's signed ``ts`` (its author's clock, ms), once its signature verified."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class WriteTx:
    """State read inside one write transaction, cached for its duration.

    New rows are collected and inserted in one ``executemany`` at :meth:`flush`, so a
    batch costs a few round trips to SQLite's thread, not one per record.
    """

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self.heads: dict[bytes, Head | None] = {}
        self.forked: dict[bytes, int | None] = {}
        self.rows: list[tuple[int, bytes, int, bytes, str, int, bytes]] = []
        self.added: dict[tuple[bytes, int], bytes] = {}
        self.received: dict[bytes, list[int]] = {}
        """Per hub, the [records, bytes] this transaction stores from elsewhere."""
        self.pos = 0

    async def load(self, hubs: Iterable[bytes]) -> None:
        """Read the head, fork state and next ``pos`` for ``hubs`` in three queries."""
        wanted = [h for h in set(hubs) if h not in self.heads]
        for h in wanted:
            self.heads[h] = None
            self.forked[h] = None
        for i in range(0, len(wanted), 500):
            part = wanted[i : i + 500]
            marks = ",".join("?" * len(part))
            # One index seek per hub (MAX over the (hub, seq) index). A GROUP BY hub over
            # the IN list would read every stored event of those hubs: O(chain length).
            # execute_fetchall: one round trip to SQLite's thread, where a cursor takes three.
            rows = await self.db.execute_fetchall(
                f"WITH w(hub) AS (VALUES {','.join(['(?)'] * len(part))}) "
                "SELECT e.hub, e.seq, e.id FROM w JOIN events e ON e.hub = w.hub "
                "AND e.seq = (SELECT MAX(seq) FROM events WHERE hub = w.hub)",
                part,
            )
            for hub, seq, id_ in rows:
                self.heads[bytes(hub)] = Head(seq, bytes(id_))
            rows = await self.db.execute_fetchall(
                f"SELECT hub, forked_seq FROM hubs WHERE hub IN ({marks})", part
            )
            for hub, forked in rows:
                self.forked[bytes(hub)] = forked
        if not self.pos:
            rows = await self.db.execute_fetchall("SELECT COALESCE(MAX(pos), 0) FROM events")
            self.pos = int(next(iter(rows))[0]) + 1

    async def meta_int(self, key: str) -> int:
        rows = list(await self.db.execute_fetchall("SELECT value FROM meta WHERE key = ?", (key,)))
        return int(rows[0][0]) if rows else 0

    async def stored_raw(self, hub: bytes, seq: int) -> bytes | None:
        if (hub, seq) in self.added:
            return self.added[hub, seq]
        rows = list(
            await self.db.execute_fetchall(
                "SELECT raw FROM events WHERE hub = ? AND seq = ?", (hub, seq)
            )
        )
        return bytes(rows[0][0]) if rows else None

    def insert(self, env: Envelope, id_: bytes, raw: bytes) -> int:
        """Queue a row at the next ``pos`` and move the hub's head; returns the pos."""
        pos = self.pos
        self.rows.append((pos, env.hub, env.seq, id_, env.kind, env.ts, raw))
        self.added[env.hub, env.seq] = raw
        self.heads[env.hub] = Head(env.seq, id_)
        self.pos += 1
        return pos

    async def flush(self) -> None:
        if self.rows:
            await self.db.executemany(
                "INSERT INTO events (pos, hub, seq, id, kind, ts, raw) VALUES (?,?,?,?,?,?,?)",
                self.rows,
            )
            self.rows = []
        if self.received:
            await intake.add(self.db, intake.day_of(now_ms()), self.received)
            self.received = {}

    # -- the store stage of ingest ------------------------------------------------------

    async def place(
        self,
        rec: Verified,
        pending: PendingBuffer,
        registry: KindRegistry,
        popped: list[Verified],
    ) -> IngestOutcome:
        """Store ``rec`` if it is its hub's next event, or hold it, or keep a fork proof.

        Records taken out of ``pending`` are added to ``popped``: the caller puts them
        back if the transaction fails. The hubs must have been :meth:`load`-ed.
        """
        env = rec.envelope
        hub, seq = env.hub, env.seq

        def outcome(
            status: Status, reason: Reason | None = None, detail: str = "", released: int = 0
        ) -> IngestOutcome:
            return IngestOutcome(status, hub, seq, rec.id, reason, detail, released, env.ts)

        head = self.heads[hub]
        head_seq = head.seq if head else 0
        if seq <= head_seq:
            stored = await self.stored_raw(hub, seq)
            assert stored is not None  # chains are stored gap-free from seq 1
            if stored == rec.raw:
                return outcome(Status.DUPLICATE)
            await self.keep_fork(hub, seq, stored, rec.raw, pending)
            return outcome(Status.FORK, detail=f"{hub_display(hub)} signed two events at seq {seq}")
        # Past the head of a forked hub nothing is taken, the fork seq included: neither
        # twin is "the" event there, and which arrived first must not decide what a hub holds.
        forked = self.forked[hub]
        if forked is not None and seq >= forked:
            return outcome(
                Status.REJECTED,
                Reason.HUB_FORKED,
                f"{hub_display(hub)} forked at seq {forked}; nothing from there on is accepted",
            )
        if seq > head_seq + 1:
            waiting = pending.get(hub, seq)
            if waiting is not None and waiting.raw != rec.raw:
                await self.keep_fork(hub, seq, waiting.raw, rec.raw, pending)
                return outcome(
                    Status.FORK, detail=f"{hub_display(hub)} signed two events at seq {seq}"
                )
            added = pending.add(rec)
            if added == "full":
                return outcome(Status.DROPPED, detail="pending buffer full; fetch it again later")
            return outcome(Status.PENDING if added == "added" else Status.DUPLICATE)
        try:
            self.store_next(rec, head, registry)
        except InvalidEvent as e:
            return outcome(Status.REJECTED, e.reason, e.detail)
        released = 0
        while True:
            current = self.heads[hub]
            assert current is not None
            nxt = pending.pop(hub, current.seq + 1)
            if nxt is None:
                break
            popped.append(nxt)
            try:
                self.store_next(nxt, current, registry)
            except InvalidEvent:
                # Validly signed but does not fit the chain or its body is bad: drop it;
                # a peer holding the right record will serve it again.
                break
            released += 1
        return outcome(Status.ACCEPTED, released=released)

    def store_next(self, rec: Verified, head: Head | None, registry: KindRegistry) -> None:
        """Check the link to ``head`` and the body, then queue the row."""
        env = rec.envelope
        check_link(env, head)
        if not isinstance(rec, Checked):
            registry.check_body(env.kind, env.body)
        elif rec.body_error is not None:  # decoded on the verify pool; reported in this order
            raise rec.body_error
        self.insert(env, rec.id, rec.raw)
        counted = self.received.setdefault(env.hub, [0, 0])
        counted[0] += 1
        counted[1] += len(rec.raw)

    async def keep_fork(
        self, hub: bytes, seq: int, raw_a: bytes, raw_b: bytes, pending: PendingBuffer
    ) -> None:
        """Keep the proof, mark the hub forked from ``seq``, drop its pending records."""
        # One row per pair whichever twin came first: order the pair by id.
        if event_id(raw_b) < event_id(raw_a):
            raw_a, raw_b = raw_b, raw_a
        await self.db.execute(
            "INSERT OR IGNORE INTO fork_proofs VALUES (?,?,?,?,?,?,?)",
            (hub, seq, event_id(raw_a), raw_a, event_id(raw_b), raw_b, now_ms()),
        )
        forked = self.forked.get(hub)
        if forked is None or seq < forked:
            await self.db.execute(
                "INSERT INTO hubs (hub, forked_seq) VALUES (?, ?) "
                "ON CONFLICT (hub) DO UPDATE SET forked_seq = excluded.forked_seq",
                (hub, seq),
            )
            self.forked[hub] = seq
        pending.drop_hub(hub)
