"""Checking that what the log stored is still what it stored (docs/storage.md, "Reading verifies").

Two depths, for two costs:

- **Every read that leaves the node** (sync replies, the live push, ``hubnode log
  export``) hashes each record again and compares the hash with the ``id`` stored beside
  it (:func:`read_check`). The id is the SHA-256 of the record's bytes, computed when they
  were verified and stored, so any change to the bytes — or to the id — since then shows,
  for about a microsecond a record. A record that fails is not sent: it is noted once in
  :class:`Damage` (logged, and shown by ``hubnode status``).
- **``hubnode log check``** (:func:`check_log`) repeats everything ingest checked
  (canonical encoding, network, key, signature, seq/prev shape: ``verify_record``), then
  the chain links, that the ``hub``/``seq``/``kind``/``ts`` columns agree with the
  envelope, the fork proofs, and SQLite's own ``PRAGMA integrity_check`` of its pages and
  indexes.

:func:`storage_error` turns SQLite's exceptions into one :class:`StorageError` line that
says what to do, so a damaged database file never ends in a traceback.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Concatenate, Final, ParamSpec, Protocol, TypeVar

import aiosqlite
import msgspec

from hubnode.errors import InvalidEvent, Reason, StorageError
from hubnode.events.envelope import Envelope, event_id
from hubnode.events.ids import hub_display, short_id
from hubnode.events.verify import verify_record
from hubnode.store.health import LOG_HELP, damaged_log, is_damage
from hubnode.store.verifying import VerifyPool

log = logging.getLogger("hubnode.store")

ID_MISMATCH: Final = "id_mismatch"
"""The record's bytes no longer hash to the id stored beside them (either was changed)."""
COLUMN_MISMATCH: Final = "column_mismatch"
"""The record verifies, but a column stored beside it disagrees with its envelope."""
CHAIN_GAP: Final = "chain_gap"
"""A hub's stored chain skips a seq."""

HELP: Final = LOG_HELP
PAGE: Final = 2000
"""Records per read in :func:`check_log` (one round trip, one batch for the verify pool)."""
MAX_NOTED: Final = 1000
"""Damaged records a log keeps (and logs) from reads: a dying disk must not fill memory."""
_SHOWN_PROBLEMS: Final = 3
"""SQLite integrity messages quoted in one line; the rest are counted."""


class BadRecord(msgspec.Struct, frozen=True):
    """A stored record that fails a check: which one, and why."""

    hub: bytes
    seq: int
    reason: str
    """A :class:`~hubnode.errors.Reason` value, or one of this module's reasons."""
    detail: str
    proof: bool = False
    """A twin in a fork proof (``fork_proofs``), not the event stored at that seq."""

    def shown(self) -> str:
        return f"{hub_display(self.hub)} seq {self.seq}: {self.reason}: {self.detail}"

    def as_json(self) -> dict[str, Any]:
        return {
            "hub": hub_display(self.hub),
            "seq": self.seq,
            "reason": self.reason,
            "detail": self.detail,
        }


class DamagedRecord(StorageError):
    """A record read from the log is not what was stored: it is not served or exported."""

    def __init__(self, path: Path, bad: BadRecord) -> None:
        super().__init__(
            f"event log {path}: {hub_display(bad.hub)} seq {bad.seq} is damaged ({bad.reason}: "
            f"{bad.detail}); stopped there, nothing written. Run `hubnode log check --data "
            f"{path.parent}`, then repair it ({HELP})"
        )
        self.bad = bad


def read_check(hub: bytes, seq: int, raw: bytes, stored_id: bytes) -> BadRecord | None:
    """The check on every read that leaves the node: do the bytes still hash to their id?"""
    if event_id(raw) == stored_id:
        return None
    return BadRecord(
        hub,
        seq,
        ID_MISMATCH,
        f"its bytes no longer hash to the id stored beside them ({short_id(stored_id)})",
    )


class Damage:
    """The damaged records reads have found in one log, each logged once, loudly."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._found: dict[tuple[bytes, int], BadRecord] = {}
        self.overflowed = False
        """More than :data:`MAX_NOTED` were found; the rest are not kept."""

    def note(self, bad: BadRecord) -> None:
        key = (bad.hub, bad.seq)
        if self._found.get(key) == bad:
            return
        if len(self._found) >= MAX_NOTED:
            if not self.overflowed:
                self.overflowed = True
                log.error(
                    "more than %d damaged records in %s: listing no more; run `hubnode log "
                    "check --data %s` (%s)",
                    MAX_NOTED,
                    self.path,
                    self.path.parent,
                    HELP,
                )
            return
        self._found[key] = bad
        log.error(
            "DAMAGED RECORD in %s: %s. Not served to peers (sync replies stop before it). "
            "Stop the node, run `hubnode log check --data %s` and repair it (%s)",
            self.path,
            bad.shown(),
            self.path.parent,
            HELP,
        )

    def sound(self, hub: bytes, seq: int) -> None:
        """A read found ``hub``'s ``seq`` sound again (repaired): forget it."""
        self._found.pop((hub, seq), None)

    def at(self, hub: bytes, seq: int) -> BadRecord | None:
        return self._found.get((hub, seq))

    def __bool__(self) -> bool:
        return bool(self._found)

    def __iter__(self) -> Iterator[BadRecord]:
        return iter(sorted(self._found.values(), key=lambda b: (b.hub, b.seq)))


def head_problem(
    hub: bytes, seq: int, raw: bytes, stored_id: bytes, net: str
) -> tuple[BadRecord, bool] | None:
    """What is wrong with a hub's stored head, and whether it is the stored id (its bytes
    still verify) rather than the bytes: a signature check only when the hash differs."""
    bad = read_check(hub, seq, raw, stored_id)
    if bad is None:
        return None
    try:
        verify_record(raw, net=net, max_size=len(raw))
    except InvalidEvent:
        return bad, False
    detail = "its bytes verify, but the id stored beside them does not match them"
    return msgspec.structs.replace(bad, detail=detail), True


def storage_error(path: Path, e: sqlite3.Error, doing: str = "") -> StorageError:
    """SQLite's exception as one line naming the file (and what could not be done:
    ``doing`` is a verb, "open") and, for a damaged file, what to do."""
    if is_damage(e):
        return damaged_log(path, str(e))
    where = f"cannot {doing} event log {path}" if doing else f"event log {path}"
    return StorageError(f"{where}: {e}")


class _HasPath(Protocol):
    path: Path


_Self = TypeVar("_Self", bound=_HasPath)
_P = ParamSpec("_P")
_T = TypeVar("_T")


def sqlite_errors(
    method: Callable[Concatenate[_Self, _P], Awaitable[_T]],
) -> Callable[Concatenate[_Self, _P], Awaitable[_T]]:
    """Map SQLite's exceptions in a method of an object with a ``path`` to one
    :class:`StorageError` line naming that file (a damaged database says "database disk
    image is malformed" from whichever query meets the damage)."""

    @functools.wraps(method)
    async def mapped(self: _Self, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await method(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            raise storage_error(self.path, e) from e

    return mapped


# -- the full check ---------------------------------------------------------------------------


@dataclass
class LogReport:
    """What :func:`check_log` found."""

    records: int = 0
    hubs: int = 0
    proofs: int = 0
    sqlite: list[str] = field(default_factory=list)
    """SQLite's integrity findings about pages and indexes; empty when sound."""
    bad: list[BadRecord] = field(default_factory=list)
    unreadable: str | None = None
    """Where reading a table's own rows failed: rows past it are lost to this file."""

    @property
    def ok(self) -> bool:
        return not self.sqlite and not self.bad and self.unreadable is None

    def sqlite_line(self) -> str:
        """SQLite's findings in one line."""
        found = [*self.sqlite, *([self.unreadable] if self.unreadable else [])]
        shown = "; ".join(found[:_SHOWN_PROBLEMS])
        more = len(found) - _SHOWN_PROBLEMS
        return shown + (f" (and {more} more)" if more > 0 else "")


@dataclass
class _Link:
    """What the next record of a hub must link to: the last one's seq and both its ids."""

    seq: int
    computed: bytes
    stored: bytes


async def sqlite_findings(db: aiosqlite.Connection) -> list[str]:
    """``PRAGMA integrity_check``'s complaints (pages, indexes against their tables).

    On some damage (a smashed index page) the check itself stops with "database disk
    image is malformed"; ``quick_check``, which skips the index contents, then says where.
    """
    try:
        rows = await db.execute_fetchall("PRAGMA integrity_check")
    except sqlite3.DatabaseError as e:
        try:
            rows = await db.execute_fetchall("PRAGMA quick_check")
        except sqlite3.DatabaseError:
            return [str(e)]
        found = [line for (text,) in rows for line in str(text).splitlines()]
        return [str(e), *(f for f in found if f != "ok" and not f.startswith("***"))]
    found = [line for (text,) in rows for line in str(text).splitlines()]
    return [f for f in found if f != "ok" and not f.startswith("***")]


async def check_log(
    db: aiosqlite.Connection,
    verifier: VerifyPool,
    on_progress: Callable[[int], None] = lambda n: None,
) -> LogReport:
    """Check every stored record and fork proof, and SQLite's pages; ``on_progress`` gets
    the records checked."""
    report = LogReport(sqlite=await sqlite_findings(db))
    links: dict[bytes, _Link] = {}
    pos = 0
    while True:
        try:
            # By the table itself (pos is its rowid), never an index: an index may be
            # what is damaged, and each hub's events are stored in seq order.
            rows = await db.execute_fetchall(
                "SELECT pos, hub, seq, id, kind, ts, raw FROM events NOT INDEXED "
                "WHERE pos > ? ORDER BY pos LIMIT ?",
                (pos, PAGE),
            )
        except sqlite3.DatabaseError as e:
            report.unreadable = f"reading events after pos {pos}: {e}"
            break
        page = list(rows)
        if not page:
            break
        results = await verifier.check_many([bytes(r[6]) for r in page], None)
        for (_, hub, seq, stored_id, kind, ts, raw), result in zip(page, results, strict=True):
            hub, raw, stored_id = bytes(hub), bytes(raw), bytes(stored_id)
            if isinstance(result, InvalidEvent) and result.reason is Reason.TOO_LARGE:
                result = _without_size_limit(raw, verifier.net)
            computed = event_id(raw)
            bad = _record_problem(hub, seq, stored_id, kind, ts, computed, result)
            if bad is None:
                bad = _link_problem(hub, seq, links.get(hub), result)
            if bad is not None:
                report.bad.append(bad)
            links[hub] = _Link(seq, computed, stored_id)
        pos = page[-1][0]
        report.records += len(page)
        on_progress(len(page))
    report.hubs = len(links)
    await _check_proofs(db, verifier.net, report)
    return report


def _without_size_limit(raw: bytes, net: str) -> Any:
    """A record over today's size limit was within the limit it was stored under."""
    try:
        return verify_record(raw, net=net, max_size=len(raw))
    except InvalidEvent as e:
        return e


def _record_problem(
    hub: bytes,
    seq: int,
    stored_id: bytes,
    kind: str,
    ts: int,
    computed: bytes,
    result: Any,
) -> BadRecord | None:
    if isinstance(result, InvalidEvent):
        return BadRecord(hub, seq, result.reason.value, result.detail)
    if computed != stored_id:
        return BadRecord(
            hub,
            seq,
            ID_MISMATCH,
            f"its bytes verify, but the id stored beside them is {short_id(stored_id)}, not "
            f"their SHA-256 {short_id(computed)}: the id column is damaged",
        )
    env: Envelope = result.envelope
    wrong = [
        f"{name} {column!r} (the event says {value!r})"
        for name, column, value in (
            ("hub", hub_display(hub), hub_display(env.hub)),
            ("seq", seq, env.seq),
            ("kind", kind, env.kind),
            ("ts", ts, env.ts),
        )
        if column != value
    ]
    if wrong:
        return BadRecord(hub, seq, COLUMN_MISMATCH, "stored beside it: " + ", ".join(wrong))
    return None


def _link_problem(hub: bytes, seq: int, last: _Link | None, result: Any) -> BadRecord | None:
    expected = last.seq + 1 if last is not None else 1
    if seq != expected:
        return BadRecord(hub, seq, CHAIN_GAP, f"stored after seq {expected - 1}")
    if last is None:
        return None
    prev = result.envelope.prev
    # Either id of the record before will do: if that one is damaged, it is reported
    # itself, and its neighbour must not be blamed for it.
    if prev not in (last.computed, last.stored):
        return BadRecord(
            hub,
            seq,
            Reason.PREV_MISMATCH.value,
            f"links to {short_id(prev or b'')} but seq {last.seq} is {short_id(last.computed)}",
        )
    return None


async def _check_proofs(db: aiosqlite.Connection, net: str, report: LogReport) -> None:
    try:
        rows = await db.execute_fetchall(
            "SELECT hub, seq, id_a, raw_a, id_b, raw_b FROM fork_proofs NOT INDEXED"
        )
    except sqlite3.DatabaseError as e:
        report.unreadable = f"reading fork proofs: {e}"
        return
    for hub, seq, id_a, raw_a, id_b, raw_b in rows:
        report.proofs += 1
        hub = bytes(hub)
        for twin, stored_id, raw in (("a", id_a, raw_a), ("b", id_b, raw_b)):
            problem = twin_problem(bytes(raw), bytes(stored_id), hub, seq, net)
            if problem:
                detail = f"fork proof twin {twin}: {problem[1]}"
                report.bad.append(BadRecord(hub, seq, problem[0], detail, proof=True))


def twin_problem(
    raw: bytes, stored_id: bytes, hub: bytes, seq: int, net: str
) -> tuple[str, str] | None:
    """What is wrong with one twin of the fork proof of ``hub`` at ``seq``: (reason, detail)."""
    try:
        env = verify_record(raw, net=net, max_size=len(raw)).envelope
    except InvalidEvent as e:
        return e.reason.value, e.detail
    if event_id(raw) != stored_id:
        return ID_MISMATCH, "its bytes verify, but the id stored beside them differs"
    if (env.hub, env.seq) != (hub, seq):
        return COLUMN_MISMATCH, f"it is {hub_display(env.hub)} seq {env.seq}"
    return None
