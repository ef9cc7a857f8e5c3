"""The local append-only log of signed events: SQLite in WAL mode via aiosqlite (DESIGN §4).

- ``append`` signs and stores this hub's own events. Concurrent callers are group
  committed: one writer task takes every waiting event into one transaction, and each
  caller returns once the transaction holding its event is durable.
- ``ingest`` stores records from elsewhere, in order per hub, idempotently, holding
  records that arrive ahead of a gap in a bounded buffer and keeping fork proofs.

Several processes may use one data folder: every write is a ``BEGIN IMMEDIATE``
transaction that reads the chain heads it builds on inside the transaction.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, NamedTuple, Self

import aiosqlite
import msgspec

from hubnode.crypto import SigningKey
from hubnode.errors import (
    BehindPeers,
    ConfigError,
    ForkDetected,
    InvalidEvent,
    Reason,
    StorageError,
)
from hubnode.events.envelope import FORMAT_VERSION, MAX_RECORD_SIZE, Envelope, event_id, seal
from hubnode.events.ids import hub_display
from hubnode.events.kinds import KINDS, Body, KindRegistry
from hubnode.events.verify import (
    Event,
    TrustCheck,
    Verified,
    check_link,
    decode_event,
    reread,
    verify_record,
)
from hubnode.store.pending import PendingBuffer, PendingLimits
from hubnode.store.schema import PRAGMAS, SCHEMA_VERSION, TABLES

MAX_BATCH: Final = 2048
"""Most events one append transaction takes; more waiting callers go in the next one."""

_PARALLEL_FROM: Final = 64
"""Verify batches at least this large on a thread pool (cryptography releases the GIL)."""

_PEER_OWN_HEAD: Final = "peer_own_head"
"""meta key: the highest seq of this hub that a peer announced holding."""

_BUSY_WAIT: Final = 60.0
"""Seconds to wait for another process's lock, as the connection's busy timeout does."""


class Head(NamedTuple):
    seq: int
    id: bytes


class Appended(NamedTuple):
    """One of this hub's events, durable in the log."""

    pos: int
    seq: int
    id: bytes
    raw: bytes


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


class ForkProof(msgspec.Struct, frozen=True):
    hub: bytes
    seq: int
    raw_a: bytes
    raw_b: bytes
    detected_ms: int

    @property
    def ids(self) -> tuple[bytes, bytes]:
        return event_id(self.raw_a), event_id(self.raw_b)


def _verify_chunk(
    raws: Sequence[bytes], net: str, trusted: TrustCheck | None, max_size: int
) -> list[Verified | InvalidEvent]:
    out: list[Verified | InvalidEvent] = []
    for raw in raws:
        try:
            out.append(verify_record(raw, net=net, trusted=trusted, max_size=max_size))
        except InvalidEvent as e:
            out.append(e)
    return out


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _execute_waiting_out_busy(db: aiosqlite.Connection, sql: str) -> None:
    """Execute ``sql``, retrying while another connection holds a lock it needs.

    ``PRAGMA journal_mode=WAL`` on a new file upgrades a read lock to a write lock, and
    SQLite answers that with SQLITE_BUSY at once instead of calling the busy handler, so
    two processes creating one log together would fail with "database is locked".
    """
    deadline = time.monotonic() + _BUSY_WAIT
    while True:
        try:
            await db.execute(sql)
            return
        except sqlite3.OperationalError as e:
            busy = e.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY  # any extended BUSY code
            if not busy or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.005)


class _Tx:
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
            async with self.db.execute(
                f"WITH w(hub) AS (VALUES {','.join(['(?)'] * len(part))}) "
                "SELECT e.hub, e.seq, e.id FROM w JOIN events e ON e.hub = w.hub "
                "AND e.seq = (SELECT MAX(seq) FROM events WHERE hub = w.hub)",
                part,
            ) as cur:
                async for hub, seq, id_ in cur:
                    self.heads[bytes(hub)] = Head(seq, bytes(id_))
            async with self.db.execute(
                f"SELECT hub, forked_seq FROM hubs WHERE hub IN ({marks})", part
            ) as cur:
                async for hub, forked in cur:
                    self.forked[bytes(hub)] = forked
        if not self.pos:
            async with self.db.execute("SELECT COALESCE(MAX(pos), 0) FROM events") as cur:
                row = await cur.fetchone()
            assert row is not None
            self.pos = int(row[0]) + 1

    async def meta_int(self, key: str) -> int:
        async with self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def stored_raw(self, hub: bytes, seq: int) -> bytes | None:
        if (hub, seq) in self.added:
            return self.added[hub, seq]
        async with self.db.execute(
            "SELECT raw FROM events WHERE hub = ? AND seq = ?", (hub, seq)
        ) as cur:
            row = await cur.fetchone()
        return bytes(row[0]) if row else None

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


class EventLog:
    """One hub's log. Open with :meth:`open`; use as an async context manager."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        path: Path,
        net: str,
        key: SigningKey | None,
        registry: KindRegistry,
        max_record_size: int,
        pending: PendingLimits | None,
        workers: int,
    ) -> None:
        self._db = db
        self.path = path
        self.net = net
        self._key = key
        self.hub: bytes | None = key.public if key else None
        self.registry = registry
        self.max_record_size = max_record_size
        self.pending = PendingBuffer(pending)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hubnode-verify")
        self._workers = workers
        self._write_lock = asyncio.Lock()
        self._queue: list[tuple[list[tuple[str, bytes]], asyncio.Future[list[Appended]]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    # -- opening and closing ------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        path: Path | str,
        *,
        net: str,
        key: SigningKey | None = None,
        registry: KindRegistry = KINDS,
        max_record_size: int = MAX_RECORD_SIZE,
        pending: PendingLimits | None = None,
        workers: int | None = None,
        create: bool = True,
    ) -> Self:
        """Open (or create) the log at ``path`` for network ``net``.

        ``key`` is this hub's signing key; without it the log can ingest and read but not
        append. The database remembers its network and owner and refuses others.
        """
        path = Path(path)
        if not create and not path.exists():
            raise ConfigError(f"no event log at {path}; create the hub with `hubnode init`")
        try:
            db = await aiosqlite.connect(path, isolation_level=None, timeout=60.0)
        except sqlite3.Error as e:
            raise StorageError(f"cannot open event log {path}: {e}") from e
        try:
            for pragma in PRAGMAS:
                await _execute_waiting_out_busy(db, pragma)
            await db.executescript(TABLES)
            await cls._check_meta(db, path, net, key)
        except sqlite3.Error as e:
            await db.close()
            raise StorageError(f"cannot open event log {path}: {e}") from e
        except BaseException:
            await db.close()
            raise
        return cls(
            db,
            path,
            net,
            key,
            registry,
            max_record_size,
            pending,
            workers or max(2, os.cpu_count() or 2),
        )

    @staticmethod
    async def _check_meta(
        db: aiosqlite.Connection, path: Path, net: str, key: SigningKey | None
    ) -> None:
        await db.execute("BEGIN IMMEDIATE")
        try:
            async with db.execute("SELECT key, value FROM meta") as cur:
                meta: dict[str, Any] = {k: v async for k, v in cur}
            wanted: dict[str, Any] = {"schema": SCHEMA_VERSION, "net": net}
            if key is not None:
                wanted["hub"] = key.public
            for name, value in wanted.items():
                if name not in meta:
                    await db.execute("INSERT INTO meta VALUES (?, ?)", (name, value))
                elif meta[name] != value:
                    shown = hub_display(meta[name]) if name == "hub" else meta[name]
                    raise ConfigError(
                        f"event log {path} belongs to {name} {shown!r}, not {value!r}"
                        if name != "hub"
                        else f"event log {path} belongs to {shown}, not to this key's hub"
                    )
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        self._pool.shutdown(wait=True)
        await self._db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- appending this hub's events ----------------------------------------------------

    async def append(self, kind: str, body: Body) -> Appended:
        """Sign and store one event of this hub; returns once it is durable."""
        return (await self.append_many([(kind, body)]))[0]

    async def append_many(self, items: Sequence[tuple[str, Body]]) -> list[Appended]:
        """Sign and store several events in one transaction, in the order given."""
        if self._key is None:
            raise ConfigError(f"event log {self.path} was opened without this hub's key")
        if not items:
            return []
        encoded: list[tuple[str, bytes]] = []
        for kind, body in items:
            data = self.registry.encode_body(kind, body)
            # Constraints are only checked on decode: refuse here anything peers would
            # reject, or this hub's chain would stall at every peer.
            self.registry.decode_body(kind, data)
            encoded.append((kind, data))
        future: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        self._queue.append((encoded, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_appends())
        return await future

    async def _write_appends(self) -> None:
        while self._queue:
            batch: list[tuple[list[tuple[str, bytes]], asyncio.Future[list[Appended]]]] = []
            size = 0
            while self._queue and (not batch or size + len(self._queue[0][0]) <= MAX_BATCH):
                request = self._queue.pop(0)
                batch.append(request)
                size += len(request[0])
            try:
                results = await self._commit_appends([items for items, _ in batch])
            except BaseException as e:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                if not isinstance(e, Exception):
                    raise
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)

    async def _commit_appends(
        self, requests: list[list[tuple[str, bytes]]]
    ) -> list[list[Appended]]:
        assert self._key is not None and self.hub is not None
        key, hub = self._key, self.hub
        async with self._write_lock:
            await self._begin()
            try:
                tx = _Tx(self._db)
                await tx.load([hub])
                forked = tx.forked[hub]
                if forked is not None:
                    raise ForkDetected(
                        hub,
                        forked,
                        f"this hub ({hub_display(hub)}) forked at seq {forked}: its key signed two "
                        "different events there. Stop and investigate a cloned key or restored "
                        "backup before appending again.",
                    )
                head = tx.heads[hub]
                seq, prev = (head.seq, head.id) if head else (0, None)
                announced = await tx.meta_int(_PEER_OWN_HEAD)
                if announced > seq:
                    raise BehindPeers(
                        seq,
                        announced,
                        f"this hub's log holds its own events up to seq {seq}, but peers hold "
                        f"seq {announced}: the data folder looks restored from an old backup. "
                        "Appending now would sign a second event at a seq peers already have "
                        "(a fork). Run `hubnode run` and let it catch up first.",
                    )
                results: list[list[Appended]] = []
                ts = _now_ms()
                for items in requests:
                    out: list[Appended] = []
                    for kind, body in items:
                        seq += 1
                        env = Envelope(
                            FORMAT_VERSION, self.net, hub, hub, seq, prev, ts, kind, body
                        )
                        raw = seal(env, key)
                        prev = event_id(raw)
                        out.append(Appended(tx.insert(env, prev, raw), seq, prev, raw))
                    results.append(out)
                await tx.flush()
                await self._commit()
            except BaseException:
                await self._rollback()
                raise
        await self._notify()
        return results

    async def note_peer_head(self, seq: int) -> None:
        """A peer announced holding this hub's own events up to ``seq``.

        Remembered in the database (so a CLI append in another process sees it too):
        ``append`` refuses with :class:`BehindPeers` until the log holds that seq.
        """
        if self.hub is None:
            return
        async with self._write_lock:
            await self._begin()
            try:
                await self._db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                    "SET value = MAX(value, excluded.value)",
                    (_PEER_OWN_HEAD, seq),
                )
                await self._commit()
            except BaseException:
                await self._rollback()
                raise

    # -- ingesting records from elsewhere -------------------------------------------------

    async def verify_many(
        self, raws: Sequence[bytes], trusted: TrustCheck | None = None
    ) -> list[Verified | InvalidEvent]:
        """Stateless verification of many records, on every core for large batches."""
        if len(raws) < _PARALLEL_FROM:
            return _verify_chunk(raws, self.net, trusted, self.max_record_size)
        loop = asyncio.get_running_loop()
        step = -(-len(raws) // self._workers)
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(
                    self._pool,
                    _verify_chunk,
                    raws[i : i + step],
                    self.net,
                    trusted,
                    self.max_record_size,
                )
                for i in range(0, len(raws), step)
            )
        )
        return [result for part in parts for result in part]

    async def ingest(
        self, records: Iterable[bytes], *, trusted: TrustCheck | None = None
    ) -> list[IngestOutcome]:
        """Verify and store records from peers or files; one outcome per record, in order.

        ``trusted`` decides which hubs are accepted (None: any hub). Nothing that fails
        verification is stored; a record ahead of a gap waits in the pending buffer.
        """
        raws = list(records)
        outcomes: list[IngestOutcome | None] = [None] * len(raws)
        # Records already stored byte for byte (live gossip and a fetch often bring the
        # same ones) are duplicates: skip their signature check and per-record lookup.
        ids = [event_id(raw) for raw in raws]
        stored = await self._stored_ids(ids)
        fresh = [i for i, id_ in enumerate(ids) if id_ not in stored]
        for i, id_ in enumerate(ids):
            if id_ in stored:
                hub, seq = stored[id_]
                outcomes[i] = IngestOutcome(Status.DUPLICATE, hub=hub, seq=seq, id=id_)
        checked = await self.verify_many([raws[i] for i in fresh], trusted)
        todo: list[tuple[int, Verified]] = []
        for i, result in zip(fresh, checked, strict=True):
            if isinstance(result, InvalidEvent):
                outcomes[i] = IngestOutcome(
                    Status.REJECTED,
                    hub=result.hub,
                    seq=result.seq,
                    reason=result.reason,
                    detail=result.detail,
                )
            else:
                todo.append((i, result))
        if todo:
            async with self._write_lock:
                popped: list[Verified] = []
                await self._begin()
                try:
                    tx = _Tx(self._db)
                    await tx.load(rec.envelope.hub for _, rec in todo)
                    for i, rec in todo:
                        outcomes[i] = await self._ingest_one(tx, rec, popped)
                    await tx.flush()
                    await self._commit()
                except BaseException:
                    await self._rollback()
                    self.pending.put_back(popped)
                    raise
            if any(o is not None and o.status is Status.ACCEPTED for o in outcomes):
                await self._notify()
        return [o for o in outcomes if o is not None]

    async def _stored_ids(self, ids: Sequence[bytes]) -> dict[bytes, tuple[bytes, int]]:
        """Of ``ids``, those already stored: id -> (hub, seq). One query per 500 ids."""
        found: dict[bytes, tuple[bytes, int]] = {}
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            rows = await self._db.execute_fetchall(
                f"SELECT id, hub, seq FROM events WHERE id IN ({','.join('?' * len(part))})",
                part,
            )
            found.update({bytes(id_): (bytes(hub), seq) for id_, hub, seq in rows})
        return found

    async def _ingest_one(self, tx: _Tx, rec: Verified, popped: list[Verified]) -> IngestOutcome:
        env = rec.envelope
        hub, seq = env.hub, env.seq

        def outcome(
            status: Status, reason: Reason | None = None, detail: str = "", released: int = 0
        ) -> IngestOutcome:
            return IngestOutcome(status, hub, seq, rec.id, reason, detail, released)

        head = tx.heads[hub]
        head_seq = head.seq if head else 0
        if seq <= head_seq:
            stored = await tx.stored_raw(hub, seq)
            assert stored is not None  # chains are stored gap-free from seq 1
            if stored == rec.raw:
                return outcome(Status.DUPLICATE)
            await self._keep_fork(tx, hub, seq, stored, rec.raw)
            return outcome(Status.FORK, detail=f"{hub_display(hub)} signed two events at seq {seq}")
        # Past the head of a forked hub nothing is taken, the fork seq included: neither
        # twin is "the" event there, and which arrived first must not decide what a hub holds.
        forked = tx.forked[hub]
        if forked is not None and seq >= forked:
            return outcome(
                Status.REJECTED,
                Reason.HUB_FORKED,
                f"{hub_display(hub)} forked at seq {forked}; nothing from there on is accepted",
            )
        if seq > head_seq + 1:
            waiting = self.pending.get(hub, seq)
            if waiting is not None and waiting.raw != rec.raw:
                await self._keep_fork(tx, hub, seq, waiting.raw, rec.raw)
                return outcome(
                    Status.FORK, detail=f"{hub_display(hub)} signed two events at seq {seq}"
                )
            added = self.pending.add(rec)
            if added == "full":
                return outcome(Status.DROPPED, detail="pending buffer full; fetch it again later")
            return outcome(Status.PENDING if added == "added" else Status.DUPLICATE)
        try:
            self._store_next(tx, rec, head)
        except InvalidEvent as e:
            return outcome(Status.REJECTED, e.reason, e.detail)
        released = 0
        while True:
            current = tx.heads[hub]
            assert current is not None
            nxt = self.pending.pop(hub, current.seq + 1)
            if nxt is None:
                break
            popped.append(nxt)
            try:
                self._store_next(tx, nxt, current)
            except InvalidEvent:
                # Validly signed but does not fit the chain or its body is bad: drop it;
                # a peer holding the right record will serve it again.
                break
            released += 1
        return outcome(Status.ACCEPTED, released=released)

    def _store_next(self, tx: _Tx, rec: Verified, head: Head | None) -> None:
        """Check the link to ``head`` and the body, then queue the row."""
        env = rec.envelope
        check_link(env, head)
        self.registry.decode_body(env.kind, env.body)
        tx.insert(env, rec.id, rec.raw)

    async def _keep_fork(self, tx: _Tx, hub: bytes, seq: int, raw_a: bytes, raw_b: bytes) -> None:
        # One row per pair whichever twin came first: order the pair by id.
        if event_id(raw_b) < event_id(raw_a):
            raw_a, raw_b = raw_b, raw_a
        await self._db.execute(
            "INSERT OR IGNORE INTO fork_proofs VALUES (?,?,?,?,?,?,?)",
            (hub, seq, event_id(raw_a), raw_a, event_id(raw_b), raw_b, _now_ms()),
        )
        forked = tx.forked.get(hub)
        if forked is None or seq < forked:
            await self._db.execute(
                "INSERT INTO hubs (hub, forked_seq) VALUES (?, ?) "
                "ON CONFLICT (hub) DO UPDATE SET forked_seq = excluded.forked_seq",
                (hub, seq),
            )
            tx.forked[hub] = seq
        self.pending.drop_hub(hub)

    # -- transactions ---------------------------------------------------------------------

    async def _begin(self) -> None:
        try:
            # Another coroutine's open cursor on this connection pins an old snapshot once
            # another process commits; SQLite then answers BUSY_SNAPSHOT at once, without
            # its busy handler. Retry until that cursor is done.
            await _execute_waiting_out_busy(self._db, "BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise StorageError(f"cannot lock event log {self.path} for writing: {e}") from e

    async def _commit(self) -> None:
        try:
            await self._db.execute("COMMIT")
        except sqlite3.Error as e:
            raise StorageError(f"cannot commit to event log {self.path}: {e}") from e

    async def _rollback(self) -> None:
        if self._db.in_transaction:
            await self._db.execute("ROLLBACK")

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- reading --------------------------------------------------------------------------

    async def heads(self) -> dict[bytes, Head]:
        """The last stored (seq, id) of every hub in the log."""
        async with self._db.execute(
            "SELECT e.hub, e.seq, e.id FROM events e JOIN "
            "(SELECT hub, MAX(seq) AS seq FROM events GROUP BY hub) m "
            "ON e.hub = m.hub AND e.seq = m.seq ORDER BY e.hub"
        ) as cur:
            return {bytes(hub): Head(seq, bytes(id_)) async for hub, seq, id_ in cur}

    async def head(self, hub: bytes) -> Head | None:
        async with self._db.execute(
            "SELECT seq, id FROM events WHERE hub = ? ORDER BY seq DESC LIMIT 1", (hub,)
        ) as cur:
            row = await cur.fetchone()
        return Head(row[0], bytes(row[1])) if row else None

    async def last_pos(self) -> int:
        """The ``pos`` of the last stored event, 0 if none.

        Writers take ``pos`` in commit order, so every event at or below it is visible
        to any read that starts afterwards: a reader may resume from it.
        """
        rows = await self._db.execute_fetchall("SELECT COALESCE(MAX(pos), 0) FROM events")
        return int(next(iter(rows))[0])

    async def count(self, hub: bytes | None = None) -> int:
        sql, args = (
            ("SELECT COUNT(*) FROM events", ())
            if hub is None
            else (
                "SELECT COUNT(*) FROM events WHERE hub = ?",
                (hub,),
            )
        )
        async with self._db.execute(sql, args) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def forked_hubs(self) -> dict[bytes, int]:
        async with self._db.execute(
            "SELECT hub, forked_seq FROM hubs WHERE forked_seq IS NOT NULL"
        ) as cur:
            return {bytes(hub): seq async for hub, seq in cur}

    async def forks(self) -> list[ForkProof]:
        async with self._db.execute(
            "SELECT hub, seq, raw_a, raw_b, detected_ms FROM fork_proofs ORDER BY hub, seq"
        ) as cur:
            return [ForkProof(bytes(h), s, bytes(a), bytes(b), t) async for h, s, a, b, t in cur]

    async def events(
        self,
        *,
        after_pos: int = 0,
        limit: int = 1000,
        hub: bytes | None = None,
        kind: str | Collection[str] | None = None,
    ) -> list[Event]:
        """Stored events in local ``pos`` order, bodies decoded (and upcast).

        ``kind`` is one kind or several (events of any of them)."""
        where, args = ["pos > ?"], [after_pos]
        if hub is not None:
            where.append("hub = ?")
            args.append(hub)  # type: ignore[arg-type]
        if isinstance(kind, str):
            where.append("kind = ?")
            args.append(kind)  # type: ignore[arg-type]
        elif kind is not None:
            where.append(f"kind IN ({', '.join('?' * len(kind))})")
            args.extend(kind)  # type: ignore[arg-type]
        sql = f"SELECT pos, raw FROM events WHERE {' AND '.join(where)} ORDER BY pos LIMIT ?"
        async with self._db.execute(sql, (*args, limit)) as cur:
            rows = await cur.fetchall()
        return [self._decode_stored(bytes(raw), pos) for pos, raw in rows]

    def _decode_stored(self, raw: bytes, pos: int) -> Event:
        return decode_event(reread(raw), self.registry, pos)

    async def records(
        self, hub: bytes, from_seq: int = 1, *, limit: int = 1000, max_bytes: int = 1 << 20
    ) -> list[bytes]:
        """Raw records of ``hub`` from ``from_seq`` on, at most ``limit`` / ``max_bytes``.

        Always returns at least one record if there is one, even above ``max_bytes``.
        """
        out: list[bytes] = []
        total = 0
        async with self._db.execute(
            "SELECT raw FROM events WHERE hub = ? AND seq >= ? ORDER BY seq LIMIT ?",
            (hub, from_seq, limit),
        ) as cur:
            async for (raw,) in cur:
                if out and total + len(raw) > max_bytes:
                    break
                out.append(bytes(raw))
                total += len(raw)
        return out

    async def export_records(self, hub: bytes | None = None) -> AsyncIterator[bytes]:
        """Every stored record, hubs in id order, each hub's events in seq order.

        Fork evidence travels too: the other twin of a proof follows the stored event at
        its seq, and a proof just past the hub's head (both twins held back) follows the
        head. Proofs further ahead cannot be placed in a chain; ``forks()`` lists them.
        Streams in pages; memory stays flat.
        """
        hubs = [hub] if hub is not None else sorted((await self.heads()).keys())
        proofs = await self.forks()
        for h in hubs:
            extra: dict[int, list[bytes]] = {}
            for proof in proofs:
                if proof.hub == h:
                    # Either twin may be the stored one (both can arrive ahead of a gap).
                    held = extra.setdefault(proof.seq, [])
                    held += [r for r in (proof.raw_a, proof.raw_b) if r not in held]
            seq = 0
            while True:
                async with self._db.execute(
                    "SELECT seq, raw FROM events WHERE hub = ? AND seq > ? ORDER BY seq LIMIT 2000",
                    (h, seq),
                ) as cur:
                    rows = await cur.fetchall()
                if not rows:
                    break
                for seq, raw in rows:
                    yield bytes(raw)
                    for other in extra.get(seq, ()):
                        if other != raw:
                            yield other
            for twin in extra.get(seq + 1, ()):
                yield twin

    async def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: a different value means another connection
        (another process) committed to the log since this connection last asked."""
        rows = await self._db.execute_fetchall("PRAGMA data_version")
        return int(next(iter(rows))[0])

    async def wait_changed(self) -> None:
        """Wait until this process next stores events (appended or ingested).

        Appends by other processes are not signalled: poll as well, under a timeout.
        """
        async with self._changed:
            await self._changed.wait()

    async def wait_for(self, hub: bytes, seq: int) -> None:
        """Wait until this process has stored ``hub``'s event ``seq``.

        Bound it with ``asyncio.timeout``: it waits as long as it takes.
        """

        async def reached() -> bool:
            head = await self.head(hub)
            return head is not None and head.seq >= seq

        async with self._changed:
            while not await reached():
                await self._changed.wait()
