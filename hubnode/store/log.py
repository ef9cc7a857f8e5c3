"""The local append-only log of signed events: SQLite in WAL mode via aiosqlite (DESIGN §4).

- ``append`` signs and stores this hub's own events. Concurrent callers are group
  committed: one writer task takes every waiting event into one transaction, and each
  caller returns once the transaction holding its event is durable.
- ``ingest`` stores records from elsewhere, in order per hub, idempotently, holding
  records that arrive ahead of a gap in a bounded buffer and keeping fork proofs. Calls
  may overlap: each verifies at once (``verifying.py``), and they store one at a time in
  the order they began.

Several processes may use one data folder: every write is a ``BEGIN IMMEDIATE``
transaction that reads the chain heads it builds on inside the transaction.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
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
    decode_event,
    reread,
)
from hubnode.store.chain import Head as Head  # re-exported: where callers find them
from hubnode.store.chain import IngestOutcome as IngestOutcome
from hubnode.store.chain import Status as Status
from hubnode.store.chain import WriteTx, now_ms
from hubnode.store.health import BUDGET, FileCheck, damaged_log, require_sound
from hubnode.store.intake import DailyIntake
from hubnode.store.intake import received as _received
from hubnode.store.integrity import (
    Damage,
    DamagedRecord,
    LogReport,
    check_log,
    head_problem,
    read_check,
    storage_error,
)
from hubnode.store.integrity import sqlite_errors as _sqlite_errors
from hubnode.store.pending import PendingBuffer, PendingLimits
from hubnode.store.schema import PRAGMAS, SCHEMA_VERSION, TABLES
from hubnode.store.verifying import Checked, Claim, InFlight, Result, Turn, Turns, VerifyPool

log = logging.getLogger("hubnode.log")

MAX_BATCH: Final = 2048
"""Most events one append transaction takes; more waiting callers go in the next one."""

_PEER_OWN_HEAD: Final = "peer_own_head"
"""meta key: the highest seq of this hub that a peer announced holding."""

_BUSY_WAIT: Final = 60.0
"""Seconds to wait for another process's lock, as the connection's busy timeout does."""

_TUNING: Final = (
    # Event ids are random (SHA-256), so each batch of 1,000 inserts touches up to 1,000
    # pages of the id index. A 32 MiB page cache keeps that index in memory past ~100k
    # events, and checkpointing every 10,000 WAL pages (40 MiB), not 1,000, copies a page
    # that many batches dirtied once, not once per batch. Durability is unchanged: each
    # commit still fsyncs the WAL. Measured on 200k ingested events, per event: insert
    # 7.4 → 4.3-4.9 µs, commit (with its checkpoints) 8-10 → 6.3-6.5 µs.
    "PRAGMA cache_size = -32768",
    "PRAGMA wal_autocheckpoint = 10000",
)
"""Per-connection settings for speed; none changes what is stored or when it is durable."""


AT_POS: Final = "SELECT id, raw FROM events WHERE pos = ?"
"""The stored (id, raw) at one ``pos``: what a reader's anchor is checked against."""


def same_event(stored: tuple[bytes, bytes] | None, anchor: bytes) -> bool:
    """Whether ``stored`` (the id and record at a ``pos``, as :data:`AT_POS` reads them)
    is the event whose id ``anchor`` is: by the id stored beside it, or by its bytes if
    that id is damaged (``hubnode log repair`` rewrites such an id, in place).

    Readers that remember how far they have read the log by ``pos`` (the views, the
    keyring) keep the id of the event at their checkpoint and check it before reading on:
    a log put back from a backup, lost and fetched again, or another hub's copy, has
    other events there (or ends before it), and its events have other positions.
    """
    return stored is not None and (bytes(stored[0]) == anchor or event_id(stored[1]) == anchor)


class Appended(NamedTuple):
    """One of this hub's events, durable in the log."""

    pos: int
    seq: int
    id: bytes
    raw: bytes


class ForkProof(msgspec.Struct, frozen=True):
    hub: bytes
    seq: int
    raw_a: bytes
    raw_b: bytes
    detected_ms: int

    @property
    def ids(self) -> tuple[bytes, bytes]:
        return event_id(self.raw_a), event_id(self.raw_b)


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
        self._verifier = VerifyPool(net, registry, max_record_size, workers)
        self._turns = Turns()
        self._inflight = InFlight()
        self._write_lock = asyncio.Lock()
        self._queue: list[tuple[list[tuple[str, bytes]], asyncio.Future[list[Appended]]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self._probe: sqlite3.Connection | None = None
        self._probed: tuple[int | None, int] = (None, 0)
        """The probe's ``data_version`` and the log connection's, when last asked."""
        self._undecodable: set[int] = set()
        """Positions of stored records whose bodies no longer decode, said once each."""
        self.damage = Damage(path)
        """Damaged records that reads of this log found (each logged once)."""
        self.write_failure: str | None = None
        """Why the last write transaction failed (disk full, read-only, I/O error), until
        one succeeds: what the node reports as "failing" in its status."""

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
            raise storage_error(path, e, "open") from e
        try:
            for pragma in (*PRAGMAS, *_TUNING):
                await _execute_waiting_out_busy(db, pragma)
            await db.executescript(TABLES)
            await cls._check_meta(db, path, net, key)
        except sqlite3.Error as e:
            await db.close()
            raise storage_error(path, e, "open") from e
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
    def check_file(path: Path, budget: float = BUDGET) -> FileCheck:
        """Check the log file at ``path`` for damage, bounded in time (``health.py``; the
        start-up check: :meth:`check` is the whole one).

        Raises :class:`DamagedDatabase` saying what to do, :class:`StorageError` if it
        cannot be read at all. A missing log passes: the node creates it and fetches
        everything from peers.
        """
        return require_sound(path, "event log", damaged_log, budget)

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
        self._verifier.shutdown()
        if self._probe is not None:
            self._probe.close()
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

    @_sqlite_errors
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
            # reject (the body limit included), or this hub's chain would stall at every peer.
            self.registry.check_body(kind, data)
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
                tx = WriteTx(self._db)
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
                if head is not None:
                    await self._check_own_head(tx, head)
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
                ts = now_ms()
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
            except BaseException as e:
                self._note_failure(e)
                await self._rollback()
                raise
        await self._notify()
        return results

    @_sqlite_errors
    async def _check_own_head(self, tx: WriteTx, head: Head) -> None:
        """Refuse to link a new event to a head whose stored id is damaged: every event
        signed after it would link to that id. One record read and hashed per append
        transaction; damaged bytes beside a sound id are noted (the link stays right)."""
        assert self.hub is not None
        raw = await tx.stored_raw(self.hub, head.seq) or b""
        found = head_problem(self.hub, head.seq, raw, head.id, self.net)
        if found is not None:
            bad, id_damaged = found
            if id_damaged:
                raise DamagedRecord(self.path, bad)
            self.damage.note(bad)

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
        """Stateless verification of many records (body decode included), on every core
        for large batches. A body that does not decode is reported on the record (its
        ``body_error``), not raised: the chain link is checked first when it is stored."""
        return list(await self._verifier.check_many(raws, trusted))

    @_sqlite_errors
    async def ingest(
        self, records: Iterable[bytes], *, trusted: TrustCheck | None = None
    ) -> list[IngestOutcome]:
        """Verify and store records from peers or files; one outcome per record, in order.

        ``trusted`` decides which hubs are accepted (None: any hub). Nothing that fails
        verification is stored; a record ahead of a gap waits in the pending buffer.

        Calls may run concurrently, and should: a call verifies its records as soon as it
        starts, while earlier calls store theirs. Calls store one at a time in the order
        they started, each seeing what the earlier ones stored, so the outcomes are those
        of the same calls made one after another. A record that an earlier call in flight
        holds too is verified once, by that call.
        """
        raws = list(records)
        ids = [event_id(raw) for raw in raws]
        # Both taken before the first await, so that order is the order calls started.
        turn = self._turns.take()
        claim = self._inflight.claim(ids, trusted)
        try:
            return await self._ingest(raws, ids, trusted, turn, claim)
        finally:
            claim.release()  # after the commit: a later call now finds these ids stored
            turn.done()

    async def _ingest(
        self,
        raws: list[bytes],
        ids: list[bytes],
        trusted: TrustCheck | None,
        turn: Turn,
        claim: Claim,
    ) -> list[IngestOutcome]:
        outcomes: list[IngestOutcome | None] = [None] * len(raws)
        results: dict[int, Result] = {}
        # Records already stored byte for byte (live gossip and a fetch often bring the
        # same ones) are duplicates: skip their signature check and per-record lookup.
        stored = await self._stored_ids([ids[i] for i in claim.first])
        fresh: list[int] = []
        for i in claim.first:
            if ids[i] in stored:
                outcomes[i] = IngestOutcome(Status.DUPLICATE, *stored[ids[i]], id=ids[i])
            else:
                fresh.append(i)
        checked = await self._verifier.check_many([raws[i] for i in fresh], trusted)
        for i, result in zip(fresh, checked, strict=True):
            results[i] = claim.results[ids[i]] = result
        claim.settled()

        await turn.wait()
        redo = await self._take_borrowed(ids, claim, outcomes, results)
        if trusted is not None:
            # The trust set may have grown since these were checked (an earlier call
            # stored an admission): judge them by the trust in force now.
            redo += [
                i
                for i, r in results.items()
                if isinstance(r, InvalidEvent)
                and r.reason is Reason.UNKNOWN_HUB
                and r.hub is not None
                and trusted(r.hub)
            ]
        if redo:
            again = await self._verifier.check_many([raws[i] for i in redo], trusted)
            results.update(zip(redo, again, strict=True))

        todo: list[tuple[int, Checked]] = []
        for i in sorted(results):
            result = results[i]
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
            await self._store(todo, outcomes)
        return [o for o in outcomes if o is not None]

    async def _take_borrowed(
        self,
        ids: list[bytes],
        claim: Claim,
        outcomes: list[IngestOutcome | None],
        results: dict[int, Result],
    ) -> list[int]:
        """Outcomes of the records another call (or this one) verified; what is left to verify.

        Called on this call's turn: the calls that verified them have stored what they
        could, so a record now stored is a duplicate, as it would have been had the calls
        run one after another.
        """
        if not claim.borrowed:
            return []
        stored = await self._stored_ids([ids[i] for i, _ in claim.borrowed])
        redo: list[int] = []
        for i, lender in claim.borrowed:
            await lender.verified()  # done already: the lender's turn came before ours
            result = lender.results.get(ids[i])
            if ids[i] in stored:
                outcomes[i] = IngestOutcome(Status.DUPLICATE, *stored[ids[i]], id=ids[i])
            elif result is None:
                redo.append(i)  # that call never verified it
            else:
                results[i] = result
        return redo

    async def _store(
        self, todo: list[tuple[int, Checked]], outcomes: list[IngestOutcome | None]
    ) -> None:
        """The store stage: chain checks, gaps, forks and the insert, in one transaction."""
        async with self._write_lock:
            popped: list[Verified] = []
            await self._begin()
            try:
                tx = WriteTx(self._db)
                await tx.load(rec.envelope.hub for _, rec in todo)
                for i, rec in todo:
                    outcomes[i] = await tx.place(rec, self.pending, self.registry, popped)
                await tx.flush()
                await self._commit()
            except BaseException as e:
                self._note_failure(e)
                await self._rollback()
                self.pending.put_back(popped)
                raise
        if any(o is not None and o.status is Status.ACCEPTED for o in outcomes):
            await self._notify()

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
        self.write_failure = None

    def _note_failure(self, e: BaseException) -> None:
        """Remember why a write failed when the storage is to blame (not the events)."""
        cause = e.__cause__ if isinstance(e, StorageError) else e
        if isinstance(cause, sqlite3.Error):
            self.write_failure = f"cannot write to {self.path.name}: {cause}"

    async def _rollback(self) -> None:
        if self._db.in_transaction:
            await self._db.execute("ROLLBACK")

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- reading --------------------------------------------------------------------------

    @_sqlite_errors
    async def heads(self) -> dict[bytes, Head]:
        """The last stored (seq, id) of every hub in the log."""
        async with self._db.execute(
            "SELECT e.hub, e.seq, e.id FROM events e JOIN "
            "(SELECT hub, MAX(seq) AS seq FROM events GROUP BY hub) m "
            "ON e.hub = m.hub AND e.seq = m.seq ORDER BY e.hub"
        ) as cur:
            return {bytes(hub): Head(seq, bytes(id_)) async for hub, seq, id_ in cur}

    @_sqlite_errors
    async def head(self, hub: bytes) -> Head | None:
        rows = list(
            await self._db.execute_fetchall(  # one round trip to SQLite's thread, not three
                "SELECT seq, id FROM events WHERE hub = ? ORDER BY seq DESC LIMIT 1", (hub,)
            )
        )
        return Head(rows[0][0], bytes(rows[0][1])) if rows else None

    @_sqlite_errors
    async def last_pos(self) -> int:
        """The ``pos`` of the last stored event, 0 if none.

        Writers take ``pos`` in commit order, so every event at or below it is visible
        to any read that starts afterwards: a reader may resume from it.
        """
        rows = await self._db.execute_fetchall("SELECT COALESCE(MAX(pos), 0) FROM events")
        return int(next(iter(rows))[0])

    @_sqlite_errors
    async def stored_at(self, pos: int) -> tuple[bytes, bytes] | None:
        """The id and record stored at ``pos``, None if none (see :func:`same_event`)."""
        rows = list(await self._db.execute_fetchall(AT_POS, (pos,)))
        return (bytes(rows[0][0]), bytes(rows[0][1])) if rows else None

    @_sqlite_errors
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

    @_sqlite_errors
    async def received(self, *, since: str) -> list[DailyIntake]:
        """Records stored from elsewhere per hub and UTC day, from day ``since`` on."""
        return await _received(self._db, since)

    @_sqlite_errors
    async def over_budget(
        self, budget: int, *, since: str, other_than: bytes | None = None
    ) -> list[DailyIntake]:
        """The (hub, day) rows from day ``since`` on whose records took over ``budget``
        bytes, leaving out hub ``other_than`` (this hub: its own records coming back
        after a restore are no one else's traffic)."""
        found = await _received(self._db, since, more_than=budget)
        return [row for row in found if row.hub != other_than]

    @_sqlite_errors
    async def forked_hubs(self) -> dict[bytes, int]:
        async with self._db.execute(
            "SELECT hub, forked_seq FROM hubs WHERE forked_seq IS NOT NULL"
        ) as cur:
            return {bytes(hub): seq async for hub, seq in cur}

    @_sqlite_errors
    async def forks(self) -> list[ForkProof]:
        async with self._db.execute(
            "SELECT hub, seq, raw_a, raw_b, detected_ms FROM fork_proofs ORDER BY hub, seq"
        ) as cur:
            return [ForkProof(bytes(h), s, bytes(a), bytes(b), t) async for h, s, a, b, t in cur]

    @_sqlite_errors
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
            # SQLite reads either every event after ``after_pos`` (the pos range) or every
            # event of ``hub`` (its index, then a sort by pos); left to itself it always
            # takes the index, so a reader resuming near the end of a long chain paid for
            # the whole chain at each call. Take the smaller (``+hub``: not the index).
            where.append("+hub = ?" if await self._fewer_after(after_pos, hub) else "hub = ?")
            args.append(hub)  # type: ignore[arg-type]
        if isinstance(kind, str):
            where.append("kind = ?")
            args.append(kind)  # type: ignore[arg-type]
        elif kind is not None:
            where.append(f"kind IN ({', '.join('?' * len(kind))})")
            args.extend(kind)  # type: ignore[arg-type]
        sql = f"SELECT pos, raw FROM events WHERE {' AND '.join(where)} ORDER BY pos LIMIT ?"
        found: list[Event] = []
        while True:
            async with self._db.execute(sql, (*args, limit)) as cur:
                rows = list(await cur.fetchall())
            for pos, raw in rows:
                event = self._decode_stored(bytes(raw), pos)
                if event is not None:
                    found.append(event)
            # A page of records that no longer decode is no end of the log: read on.
            if found or len(rows) < limit:
                return found
            args[0] = rows[-1][0]

    async def _fewer_after(self, after_pos: int, hub: bytes) -> bool:
        """Whether fewer events follow ``after_pos`` than ``hub`` has (two index seeks)."""
        rows = await self._db.execute_fetchall(
            "SELECT (SELECT COALESCE(MAX(pos), 0) FROM events) - ?, "
            "(SELECT COALESCE(MAX(seq), 0) FROM events WHERE hub = ?)",
            (after_pos, hub),
        )
        after, of_hub = next(iter(rows))
        return bool(after <= of_hub)

    def _decode_stored(self, raw: bytes, pos: int) -> Event | None:
        """The stored record, decoded; None, said once, if its body no longer decodes.

        A log keeps what it stored under an older hubnode's rules, and a rule may since
        have tightened (docs/protocol.md, "Tightening a rule"): such a record is left out of
        what readers see (an admission in it is not counted, say) rather than stopping
        every reader of the log. Projections stop at it instead, naming it
        (:class:`~hubnode.projections.runner.ProjectionRunner`).
        """
        verified = reread(raw)
        try:
            return decode_event(verified, self.registry, pos)
        except InvalidEvent as e:
            if pos not in self._undecodable:
                self._undecodable.add(pos)
                env = verified.envelope
                log.warning(
                    "stored record %s seq %d (%s, pos %d) no longer decodes and is left out: %s",
                    hub_display(env.hub),
                    env.seq,
                    env.kind,
                    pos,
                    e,
                )
            return None

    @_sqlite_errors
    async def records(
        self, hub: bytes, from_seq: int = 1, *, limit: int = 1000, max_bytes: int = 1 << 20
    ) -> list[bytes]:
        """Raw records of ``hub`` from ``from_seq`` on, at most ``limit`` / ``max_bytes``.

        Always returns at least one record if there is one, even above ``max_bytes``.
        Each is checked against its stored id as it is read; the records stop before the
        first that fails, which is noted in :attr:`damage` (and logged once).
        """
        out: list[bytes] = []
        total = 0
        async with self._db.execute(
            "SELECT seq, id, raw FROM events WHERE hub = ? AND seq >= ? ORDER BY seq LIMIT ?",
            (hub, from_seq, limit),
        ) as cur:
            healing = bool(self.damage)  # a sound read forgets what an earlier one found
            async for seq, id_, raw in cur:
                if out and total + len(raw) > max_bytes:
                    break
                # Reading verifies (docs/storage.md): a damaged record is noted, never
                # served, and neither is what follows it, which would not link.
                bad = read_check(hub, seq, raw, id_)
                if bad is not None:
                    self.damage.note(bad)
                    break
                if healing:
                    self.damage.sound(hub, seq)
                out.append(bytes(raw))
                total += len(raw)
        return out

    async def export_records(
        self, hub: bytes | None = None, *, checked: bool = True
    ) -> AsyncIterator[bytes]:
        """Every stored record, hubs in id order, each hub's events in seq order.

        Fork evidence travels too: the other twin of a proof follows the stored event at
        its seq, and a proof just past the hub's head (both twins held back) follows the
        head. Proofs further ahead cannot be placed in a chain; ``forks()`` lists them.
        Streams in pages; memory stays flat.

        Each record is checked against its stored id as it is read, and the first that
        fails raises :class:`DamagedRecord`: an export that skipped it would hold a broken
        chain. ``checked=False`` yields the bytes as stored, for a reader that verifies
        every record itself and reports what fails (the auditor).
        """
        try:
            async for raw in self._export(hub, checked):
                yield raw
        except sqlite3.DatabaseError as e:
            raise storage_error(self.path, e) from e

    async def _export(self, hub: bytes | None, checked: bool) -> AsyncIterator[bytes]:
        hubs = [hub] if hub is not None else sorted((await self.heads()).keys())
        proofs = await self._db.execute_fetchall(
            "SELECT hub, seq, id_a, raw_a, id_b, raw_b FROM fork_proofs ORDER BY hub, seq"
        )
        for h in hubs:
            extra: dict[int, list[bytes]] = {}
            for p_hub, p_seq, *twins in proofs:
                if p_hub == h:
                    # Either twin may be the stored one (both can arrive ahead of a gap).
                    held = extra.setdefault(p_seq, [])
                    for id_, raw in ((twins[0], twins[1]), (twins[2], twins[3])):
                        bad = read_check(h, p_seq, raw, id_) if checked else None
                        if bad is not None:
                            detail = f"a twin of its fork proof: {bad.detail}"
                            raise DamagedRecord(
                                self.path, msgspec.structs.replace(bad, detail=detail)
                            )
                        if raw not in held:
                            held.append(raw)
            seq = 0
            while True:
                async with self._db.execute(
                    "SELECT seq, id, raw FROM events WHERE hub = ? AND seq > ? "
                    "ORDER BY seq LIMIT 2000",
                    (h, seq),
                ) as cur:
                    rows = await cur.fetchall()
                if not rows:
                    break
                for seq, id_, raw in rows:
                    bad = read_check(h, seq, raw, id_) if checked else None
                    if bad is not None:
                        raise DamagedRecord(self.path, bad)
                    yield bytes(raw)
                    for other in extra.get(seq, ()):
                        if other != raw:
                            yield other
            for twin in extra.get(seq + 1, ()):
                yield twin

    @_sqlite_errors
    async def check(self, on_progress: Callable[[int], None] = lambda n: None) -> LogReport:
        """Check the whole log: every record and fork proof as ingest would (signatures
        included, on every core), the chains, and SQLite's own integrity check.

        ``on_progress`` gets the records checked. Damage is reported, not raised.
        """
        return await check_log(self._db, self._verifier, on_progress)

    @_sqlite_errors
    async def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: a different value means another connection
        (another process) committed to the log since this connection last asked.

        Cheap enough to poll every few milliseconds. A second connection, asked right on
        the calling thread (~3 µs: it reads the WAL index in shared memory and never waits
        for a writer), tells whether anyone committed at all; only then is the log's own
        connection asked, a round trip to aiosqlite's thread (~22 µs of CPU).
        """
        if self._probe is None:
            # timeout=0: SQLite answers BUSY at once (only while another connection
            # recovers the WAL after a crash) instead of blocking the event loop.
            self._probe = sqlite3.connect(self.path, isolation_level=None, timeout=0)
        try:
            # fetchall: the statement runs to its end, so no read transaction stays open.
            probe: int | None = self._probe.execute("PRAGMA data_version").fetchall()[0][0]
        except sqlite3.OperationalError:
            probe = None  # busy: ask the log's connection, which waits on its thread
        if probe is None or probe != self._probed[0]:
            # Probe first: a commit landing in between shows at the next call's probe.
            rows = await self._db.execute_fetchall("PRAGMA data_version")
            self._probed = (probe, int(next(iter(rows))[0]))
        return self._probed[1]

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
