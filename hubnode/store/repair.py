"""Repairing a damaged log from sound copies of its records (``hubnode log repair``).

The log is rebuilt, not patched: every table is copied row by row, by its own rowid and
never through an index (an index may be what is damaged), into a new database file, and
each damaged record is replaced on the way by a sound copy from a source — any holder's
``.hublog`` export, or a data folder such as a backup. A copy is taken only if it passes
every ingest check, is the same hub and seq, links to the event before it and hashes to
the id the chain expects there (the next event's ``prev``, else the id stored beside it).
The new file is checked in full before it takes the old one's place; the old one is kept
beside it.

Every event keeps its ``pos``. The views (``views.sqlite3``) and the keyring remember how
far they have read the log by ``pos``, so they stay right; moving the log aside and
fetching it again from peers would give events new positions, and both would skip some
events and apply others twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterable, Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from hubnode.errors import InvalidEvent, StorageError
from hubnode.events.envelope import decode_record, decode_stored, event_id
from hubnode.events.ids import hub_display
from hubnode.events.verify import verify_record
from hubnode.store.integrity import (
    CHAIN_GAP,
    HELP,
    BadRecord,
    LogReport,
    storage_error,
    twin_problem,
)
from hubnode.store.log import EventLog
from hubnode.store.schema import TABLES

Progress = Callable[[str, int | None], AbstractContextManager[Callable[[int], None]]]
"""``progress(description, total)``: a context giving ``advance(n)`` (as the CLI's)."""

PAGE: Final = 5000
_Key = tuple[bytes, int]


@contextlib.contextmanager
def _no_progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


@dataclass
class Repair:
    """What :func:`repair_log` found and did."""

    before: LogReport
    records: int = 0
    replaced: list[_Key] = field(default_factory=list)
    """Records whose bytes came from a source."""
    ids_fixed: list[_Key] = field(default_factory=list)
    """Records whose own bytes were sound: only what was stored beside them was rewritten."""
    twins_replaced: int = 0
    kept: Path | None = None
    """Where the damaged file now is (None: the log was sound, nothing changed)."""


async def repair_log(
    path: Path,
    net: str,
    sources: Sequence[Callable[[], AsyncIterable[bytes]]],
    *,
    progress: Progress = _no_progress,
) -> Repair:
    """Check the log at ``path``; if it is damaged, rebuild it with sound copies of the
    damaged records from ``sources`` and put the rebuilt file in its place.

    Raises :class:`StorageError` (changing nothing) when the rows of a table cannot be
    read, or when no source holds a sound copy of a damaged record. Nothing may write to
    the log meanwhile: the caller makes sure the node is stopped.
    """
    async with await EventLog.open(path, net=net, create=False) as log:
        with progress("checking", await log.last_pos() or None) as advance:
            before = await log.check(advance)
    done = Repair(before)
    if before.ok:
        return done
    if before.unreadable is not None:
        raise StorageError(
            f"event log {path}: {before.unreadable}: rows this file has lost cannot be rebuilt "
            f'from it; restore a backup (docs/operating.md, "Restoring a backup")'
        )
    events = {(b.hub, b.seq): b for b in before.bad if not b.proof}
    twins = {(b.hub, b.seq) for b in before.bad if b.proof}
    gaps = [b for b in events.values() if b.reason == CHAIN_GAP]
    if gaps:
        raise StorageError(
            f"event log {path}: {gaps[0].shown()}: records are missing, not damaged, and "
            'their places are lost; restore a backup (docs/operating.md, "Restoring a backup")'
        )
    copies = await _gather(path, events, twins, sources, progress)
    tmp = path.with_name(path.name + ".repairing")
    try:
        with progress("rebuilding", before.records or None) as advance:
            await asyncio.to_thread(_rebuild, path, tmp, net, events, twins, copies, done, advance)
        async with await EventLog.open(tmp, net=net, create=False) as rebuilt:
            with progress("checking the rebuilt log", done.records or None) as advance:
                after = await rebuilt.check(advance)
        if not after.ok:
            problem = after.bad[0].shown() if after.bad else after.sqlite_line()
            raise StorageError(f"event log {path}: the rebuilt copy still fails: {problem}")
        done.kept = _swap(path, tmp)
    finally:
        for leftover in _files(tmp):
            leftover.unlink(missing_ok=True)
    return done


@dataclass
class _Copies:
    by_seq: dict[_Key, list[bytes]] = field(default_factory=dict)
    by_id: dict[bytes, bytes] = field(default_factory=dict)


async def _gather(
    path: Path,
    events: dict[_Key, BadRecord],
    twins: set[_Key],
    sources: Sequence[Callable[[], AsyncIterable[bytes]]],
    progress: Progress,
) -> _Copies:
    """The sources' copies of the damaged records (memory: those only)."""
    copies = _Copies()
    wanted_ids = await asyncio.to_thread(_twin_ids, path, twins)
    with progress("reading sound copies", None) as advance:
        for source in sources:
            async for raw in source():
                advance(1)
                try:
                    env = decode_record(raw, max_size=len(raw))[1]
                except InvalidEvent:
                    continue  # a damaged copy is no copy
                key = (env.hub, env.seq)
                if key in events:
                    held = copies.by_seq.setdefault(key, [])
                    if raw not in held:
                        held.append(raw)
                if key in twins and event_id(raw) in wanted_ids:
                    copies.by_id[event_id(raw)] = raw
    return copies


def _twin_ids(path: Path, twins: set[_Key]) -> set[bytes]:
    if not twins:
        return set()
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT hub, seq, id_a, id_b FROM fork_proofs NOT INDEXED").fetchall()
    return {bytes(i) for h, s, a, b in rows if (bytes(h), s) in twins for i in (a, b)}


def _rebuild(
    path: Path,
    tmp: Path,
    net: str,
    events: dict[_Key, BadRecord],
    twins: set[_Key],
    copies: _Copies,
    done: Repair,
    advance: Callable[[int], None],
) -> None:
    """Copy every row of ``path`` into a new ``tmp``, the damaged records replaced."""
    for leftover in _files(tmp):
        leftover.unlink(missing_ok=True)
    src = sqlite3.connect(path, isolation_level=None, timeout=60.0)
    dst = sqlite3.connect(tmp, isolation_level=None)
    try:
        src.execute("BEGIN IMMEDIATE")  # one snapshot, and no writer while it is copied
        dst.executescript(TABLES)
        dst.execute("BEGIN")
        for table in ("meta", "hubs"):
            rows = src.execute(f"SELECT * FROM {table} NOT INDEXED").fetchall()
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                dst.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        for row in src.execute("SELECT * FROM fork_proofs NOT INDEXED").fetchall():
            dst.execute(
                "INSERT INTO fork_proofs VALUES (?,?,?,?,?,?,?)",
                _proof(row, twins, net, copies, done),
            )
        stored, links = _copy_events(src, dst, events, done, advance)
        missing = _place_damaged(dst, net, events, stored, links, copies, done)
        if missing:
            raise StorageError(
                f"event log {path}: no sound copy of {missing[0].shown()}"
                + (f" (nor of {len(missing) - 1} more)" if len(missing) > 1 else "")
                + f" in the sources given; add a holder's export with `--from`, e.g. "
                f"`hubnode log export --hub {hub_display(missing[0].hub)}` run at a peer ({HELP})"
            )
        dst.execute("COMMIT")
    except sqlite3.DatabaseError as e:
        raise storage_error(path, e, "rebuild") from e
    finally:
        dst.close()
        with contextlib.suppress(sqlite3.Error):
            src.execute("ROLLBACK")
        src.close()


def _proof(
    row: tuple[Any, ...], twins: set[_Key], net: str, copies: _Copies, done: Repair
) -> tuple[Any, ...]:
    """A ``fork_proofs`` row, its damaged twins replaced by sound copies."""
    hub, seq, id_a, raw_a, id_b, raw_b, detected = row
    if (bytes(hub), seq) not in twins:
        return row
    fixed: list[bytes] = []
    for stored_id, raw in ((bytes(id_a), bytes(raw_a)), (bytes(id_b), bytes(raw_b))):
        if twin_problem(raw, stored_id, bytes(hub), seq, net) is not None:
            copy = copies.by_id.get(stored_id)
            if copy is None or twin_problem(copy, stored_id, bytes(hub), seq, net) is not None:
                raise StorageError(
                    f"fork proof of {hub_display(bytes(hub))} at seq {seq}: no sound copy of "
                    f"twin {stored_id.hex()[:12]} in the sources given; add a holder's export "
                    f"with `--from` ({HELP})"
                )
            raw = copy
            done.twins_replaced += 1
        fixed.append(raw)
    return (hub, seq, id_a, fixed[0], id_b, fixed[1], detected)


@dataclass
class _Links:
    """For each damaged record: the id of the event before it and the ``prev`` of the one
    after it (None where that one is missing or damaged too)."""

    before: dict[_Key, bytes] = field(default_factory=dict)
    after: dict[_Key, bytes | None] = field(default_factory=dict)


_INSERT: Final = "INSERT INTO events (pos, hub, seq, id, kind, ts, raw) VALUES (?,?,?,?,?,?,?)"


def _copy_events(
    src: sqlite3.Connection,
    dst: sqlite3.Connection,
    events: dict[_Key, BadRecord],
    done: Repair,
    advance: Callable[[int], None],
) -> tuple[dict[_Key, tuple[int, bytes, bytes]], _Links]:
    """Copy the sound events in pos order; the damaged ones' (pos, id, raw) and links."""
    stored: dict[_Key, tuple[int, bytes, bytes]] = {}
    links = _Links()
    pos = 0
    while rows := src.execute(
        "SELECT pos, hub, seq, id, kind, ts, raw FROM events NOT INDEXED "
        "WHERE pos > ? ORDER BY pos LIMIT ?",
        (pos, PAGE),
    ).fetchall():
        sound = []
        for row in rows:
            pos, hub, seq, id_, _, _, raw = row
            key = (bytes(hub), seq)
            if key in events:
                stored[key] = (pos, bytes(id_), bytes(raw))
                continue
            sound.append(row)
            if events:
                if (key[0], seq + 1) in events:
                    links.before[key[0], seq + 1] = bytes(id_)
                if (key[0], seq - 1) in events:
                    links.after[key[0], seq - 1] = decode_stored(bytes(raw)).prev
        dst.executemany(_INSERT, sound)
        done.records += len(rows)
        advance(len(rows))
    return stored, links


def _place_damaged(
    dst: sqlite3.Connection,
    net: str,
    events: dict[_Key, BadRecord],
    stored: dict[_Key, tuple[int, bytes, bytes]],
    links: _Links,
    copies: _Copies,
    done: Repair,
) -> list[BadRecord]:
    """Insert a sound copy of each damaged record at its own pos; those without one."""
    missing: list[BadRecord] = []
    for key in sorted(events):  # each hub in seq order: a repaired event links the next
        hub, seq = key
        pos, stored_id, stored_raw = stored[key]
        expected = links.after.get(key)
        prev = links.before.get(key)
        chosen = None
        for raw in [*copies.by_seq.get(key, []), stored_raw]:
            try:
                env = verify_record(raw, net=net, max_size=len(raw)).envelope
            except InvalidEvent:
                continue
            if (env.hub, env.seq) != key or (seq > 1 and env.prev != prev):
                continue
            if event_id(raw) == (expected or stored_id) or (expected is None and raw is stored_raw):
                # Its own bytes with no sound event after it: they are signed and link
                # back, so the id stored beside them is what is damaged.
                chosen = raw
                break
        if chosen is None:
            missing.append(events[key])
            continue
        env = decode_stored(chosen)
        dst.execute(_INSERT, (pos, hub, seq, event_id(chosen), env.kind, env.ts, chosen))
        links.before[hub, seq + 1] = event_id(chosen)
        (done.ids_fixed if chosen is stored_raw else done.replaced).append(key)
    return missing


def _files(path: Path) -> list[Path]:
    """A database file and its WAL companions."""
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def _swap(path: Path, rebuilt: Path) -> Path:
    """Put ``rebuilt`` in ``path``'s place (same mode and, if allowed, owner); keep the old
    file (and its WAL companions) beside it. Returns where the old one is."""
    kept = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
    st = path.stat()
    os.chmod(rebuilt, stat.S_IMODE(st.st_mode))
    with contextlib.suppress(PermissionError):
        os.chown(rebuilt, st.st_uid, st.st_gid)
    for old, new in zip(_files(path), _files(kept), strict=True):
        if old.exists():
            os.replace(old, new)
    os.replace(rebuilt, path)
    return kept
