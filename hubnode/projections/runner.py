"""The projection runner: feeds events to projections, owns checkpoints and rebuilds.

Views live in their own database, ``views.sqlite3`` beside the log, so projection work
never holds the log's write lock. For each projection the runner keeps *builds*: a build
is one set of tables filled from the start of the log by one version of the projection.
Events are applied in local ``pos`` order, a batch per transaction (``Projection.apply_batch``
once per batch, then the build's checkpoint, in that same transaction): a crash never
double-applies. Each step reads a batch of the log once for every projection and decodes
each record once (projections at the same checkpoint share the read). A version
bump (or ``hubnode projections rebuild``) starts a new build in fresh tables while the
serving build stays readable; when the new one has caught up with the log it is swapped in
and the old tables are dropped (blue/green). A projection that raises is stopped at that
event, with the event and the error recorded; the others go on.

Beside each checkpoint the runner keeps the id of the event at that ``pos``, and before
catching up it checks that the log still holds that event there. A log that does not (a
backup put back under newer views, a log lost and fetched again, another hub's copy) has
given its events other positions, so a checkpoint means nothing in it: the projections
that read it are rebuilt from the start, as a rebuild would (one warning says why).

The runner is synchronous (plain ``sqlite3``); the node drives it from a worker thread.
Several processes may run it at once: each batch reads the checkpoint inside its write
transaction, so no event is applied twice.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import sqlite3
import time
import traceback
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

import msgspec

from hubnode.errors import HubnodeError, InvalidEvent, StorageError
from hubnode.events.ids import hub_display
from hubnode.events.kinds import KINDS, KindRegistry
from hubnode.events.verify import Event, decode_event, restore
from hubnode.projections.base import (
    IGNORED_COLUMNS,
    IGNORED_TABLE,
    Projection,
    ProjectionTx,
    create,
    physical,
)
from hubnode.projections.parallel import SCRATCH_CACHE_KIB, rebuild_in_parallel
from hubnode.store.health import (
    BUDGET,
    FileCheck,
    damaged_views,
    diagnose,
    is_damage,
    require_sound,
)
from hubnode.store.log import AT_POS, same_event

log = logging.getLogger(__name__)

BATCH: Final = 10_000
"""Log records per batch (and transaction) when catching up. Large batches make rebuilds
cheaper (a projection deriving per batch, like tenders, derives a group once for all of a
batch's events) at the cost of holding the views' write lock longer: in a rebuild, a few
hundred ms per projection and batch (up to 2 s seen on a busy 2-core machine; other
writers wait, readers do not). Live updates come a few records at a time whatever this is."""

_STATE: Final = """
CREATE TABLE IF NOT EXISTS projection_builds (
    name       TEXT    NOT NULL,
    build      INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    checkpoint INTEGER NOT NULL DEFAULT 0,   -- last log pos applied (or skipped)
    checkpoint_id BLOB,                      -- id of the event at that pos: the log read
    status     TEXT    NOT NULL CHECK (status IN ('building', 'serving', 'stopped', 'retired')),
    error_at   TEXT,
    error      TEXT,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (name, build)
);
"""

_encoder: Final = msgspec.msgpack.Encoder()


class ProjectionError(HubnodeError):
    """A projection is unknown, stopped, or could not be built."""


@dataclass(frozen=True)
class BuildStatus:
    name: str
    build: int
    version: int
    checkpoint: int
    status: str
    error_at: str | None
    error: str | None
    behind: int
    """Events in the log after the checkpoint."""


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _storage_errors(
    method: Callable[Concatenate[ProjectionRunner, _P], _T],
) -> Callable[Concatenate[ProjectionRunner, _P], _T]:
    """Map SQLite's storage failures (damage, a full or read-only disk, I/O errors) to
    :class:`StorageError` naming the file and what to do: the runner is where hubnode meets
    the views database, so callers see one error tree. Constraint errors (bugs) pass."""

    @wraps(method)
    def mapped(self: ProjectionRunner, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            if not (isinstance(e, sqlite3.OperationalError) or is_damage(e)):
                raise
            raise self.storage_error(e) from e

    return mapped


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


_Row = tuple[int, str, bytes, bytes]
"""A log record as the runner reads it: pos, kind, raw, id."""


class _Window:
    """The log records of one ``step``, read once for every projection (projections at the
    same checkpoint, the usual case, share them), and decoded once: an event of a kind
    several projections read is kept for the next one; the others are not held at all.
    Only records of kinds some projection reads are read.
    """

    def __init__(
        self,
        log: sqlite3.Connection,
        registry: KindRegistry,
        size: int,
        kinds: frozenset[str],
        shared: frozenset[str],
        end: int,
    ) -> None:
        self._log = log
        self._registry = registry
        self._size = size
        self._select = (
            "SELECT pos, kind, raw, id FROM events "
            f"WHERE pos > ? AND kind IN ({', '.join('?' * len(kinds))}) ORDER BY pos LIMIT ?"
        )
        self._kinds = tuple(sorted(kinds))
        self._shared = shared
        self._end = end
        self._reads: list[tuple[int, int, list[_Row]]] = []
        """(checkpoint read after, pos read up to, the records of those kinds in between)."""
        self._events: dict[int, Event] = {}
        self._ids: dict[int, bytes | None] = {}

    def after(self, checkpoint: int) -> tuple[list[_Row], int]:
        """Up to a batch of (pos, kind, raw, id) after ``checkpoint``, in pos order, and the
        pos up to which they are every record of the runner's kinds (at least the log's
        end when the step began, once the batch reaches it)."""
        for start, covered, rows in self._reads:
            if start <= checkpoint < covered:
                return rows[bisect.bisect_right(rows, checkpoint, key=_pos) :], covered
        rows = self._log.execute(self._select, (checkpoint, *self._kinds, self._size)).fetchall()
        if len(rows) == self._size:
            covered = rows[-1][0]
        else:  # the query saw the whole log, at least up to where it ended before
            covered = max(self._end, rows[-1][0] if rows else 0)
        self._reads.append((checkpoint, covered, rows))
        return rows, covered

    def id_at(self, pos: int) -> bytes | None:
        """The id of the event at ``pos``, None if there is none: a checkpoint's anchor."""
        if pos not in self._ids:
            row = self._log.execute("SELECT id FROM events WHERE pos = ?", (pos,)).fetchone()
            self._ids[pos] = None if row is None else bytes(row[0])
        return self._ids[pos]

    def event(self, row: _Row) -> Event:
        """The decoded event of a row (stored records were verified when ingested)."""
        pos, kind, raw, stored_id = row
        event = self._events.get(pos)
        if event is None:
            event = decode_event(restore(raw, stored_id), self._registry, pos)
            if kind in self._shared:
                self._events[pos] = event
        return event


def _pos(row: _Row) -> int:
    return row[0]


class ProjectionRunner:
    """Keeps the projections of one hub up to date with its log."""

    def __init__(
        self,
        log_path: Path,
        views_path: Path,
        projections: Sequence[type[Projection]],
        *,
        registry: KindRegistry = KINDS,
        batch: int = BATCH,
        scratch: bool = False,
    ) -> None:
        """``scratch``: ``views_path`` is a throwaway database of a parallel rebuild's worker
        (:mod:`hubnode.projections.parallel`), written without a journal on disk or fsync;
        a crash may leave it corrupt, and it is then never read."""
        names = [p.name for p in projections]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ProjectionError(f"two projections are named {', '.join(sorted(dupes))}")
        for p in projections:
            p.check()
        self.projections = {p.name: p for p in projections}
        self.registry = registry
        self.batch = batch
        self.log_path = log_path
        self.views_path = views_path
        try:
            self._log = sqlite3.connect(
                f"file:{log_path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise self.storage_error(e) from e
        try:
            self._db = sqlite3.connect(
                views_path,
                isolation_level=None,
                timeout=60.0,
                check_same_thread=False,
                # Every projection's statements stay prepared (the default keeps 128).
                cached_statements=1024,
            )
        except sqlite3.Error as e:
            self._log.close()
            raise self.storage_error(e) from e
        self._instances = {name: cls() for name, cls in self.projections.items()}
        self._txs: dict[tuple[str, int], ProjectionTx] = {}
        readers = Counter(kind for cls in projections for kind in cls.kinds)
        self._shared_kinds = frozenset(kind for kind, n in readers.items() if n > 1)
        self._kinds = frozenset(readers)
        try:
            if scratch:
                self._db.execute("PRAGMA journal_mode=MEMORY")  # rollbacks still work
                self._db.execute("PRAGMA synchronous=OFF")
                self._db.execute(f"PRAGMA cache_size=-{SCRATCH_CACHE_KIB}")
            else:
                self._db.execute("PRAGMA journal_mode=WAL")
                # Views can always be rebuilt from the log; NORMAL keeps commits atomic (the
                # checkpoint and the data together) without an fsync per batch.
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_STATE)
            with self.write():
                columns = {r[1] for r in self._db.execute("PRAGMA table_info(projection_builds)")}
                if "checkpoint_id" not in columns:  # a views file from before anchors
                    self._db.execute("ALTER TABLE projection_builds ADD COLUMN checkpoint_id BLOB")
                for cls in projections:
                    self._ensure_build(cls)
                self._settle_anchors()
        except sqlite3.DatabaseError as e:
            error = self.storage_error(e)
            self.close()
            raise error from e

    def close(self) -> None:
        self._db.close()
        self._log.close()

    @staticmethod
    def check(views_path: Path, budget: float = BUDGET) -> FileCheck:
        """Check the views database for damage (bounded in time: ``store/health.py``).

        Raises :class:`DamagedDatabase` saying to delete it (views are rebuilt from the
        log), :class:`StorageError` if it cannot be read at all.
        """
        return require_sound(views_path, "views database", damaged_views, budget)

    def storage_error(self, e: sqlite3.Error) -> StorageError:
        """``e`` as the error to show: which file is damaged and what to do, or what failed."""
        return diagnose(e, self.views_path, self.log_path)

    @property
    def db(self) -> sqlite3.Connection:
        """The views database (for :mod:`hubnode.projections.parallel`)."""
        return self._db

    # -- builds -------------------------------------------------------------------------

    @contextmanager
    def write(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _builds(self, name: str) -> list[tuple[int, int, int, str]]:
        """(build, version, checkpoint, status) of ``name``, newest first."""
        return list(
            self._db.execute(
                "SELECT build, version, checkpoint, status FROM projection_builds "
                "WHERE name = ? ORDER BY build DESC",
                (name,),
            )
        )

    def _ensure_build(self, cls: type[Projection]) -> None:
        """Start a build for the code's version unless one exists (inside a transaction).

        A live build whose tables are missing (a views file from an older hubnode, or
        tampered with) is retired: views can always be rebuilt from the log.
        """
        existing = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        for build, _, _, status in self._builds(cls.name):
            wanted = physical(cls.name, build, IGNORED_TABLE)
            if status != "retired" and wanted not in existing:
                self._db.execute(
                    "UPDATE projection_builds SET status = 'retired', updated_ms = ? "
                    "WHERE name = ? AND build = ?",
                    (_now_ms(), cls.name, build),
                )
        builds = [b for b in self._builds(cls.name) if b[3] != "retired"]
        if any(version == cls.version for _, version, _, _ in builds):
            return
        latest = max((b[0] for b in self._builds(cls.name)), default=0)
        self._start_build(cls, latest + 1)

    def _start_build(self, cls: type[Projection], build: int) -> None:
        for table, columns in {**cls.tables, IGNORED_TABLE: IGNORED_COLUMNS}.items():
            self._db.execute(f"DROP TABLE IF EXISTS {physical(cls.name, build, table)}")
            self._db.execute(f"CREATE TABLE {physical(cls.name, build, table)} {create(columns)}")
        self._db.execute(
            "INSERT INTO projection_builds (name, build, version, checkpoint, status, updated_ms) "
            "VALUES (?, ?, ?, 0, 'building', ?)",
            (cls.name, build, cls.version, _now_ms()),
        )

    def _drop_build(self, name: str, build: int) -> None:
        # Another version's tables may have other names: drop whatever has the prefix.
        prefix = physical(name, build, "")
        for (table,) in self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ? ESCAPE '\\'",
            (prefix.replace("_", "\\_") + "%",),
        ).fetchall():
            self._db.execute(f"DROP TABLE IF EXISTS {table}")

    @_storage_errors
    def rebuild(self, name: str) -> int:
        """Start a fresh build of ``name``; the serving build serves until it catches up."""
        cls = self._class(name)
        with self.write():
            return self._restart(cls)

    def _restart(self, cls: type[Projection]) -> int:
        """:meth:`rebuild`, inside a transaction; the new build's number."""
        name = cls.name
        readers = self.serving_build(name)
        for build, _, _, status in self._builds(name):
            if status in ("building", "stopped") and build != readers:
                self._drop_build(name, build)
                self._db.execute(
                    "UPDATE projection_builds SET status = 'retired', updated_ms = ? "
                    "WHERE name = ? AND build = ?",
                    (_now_ms(), name, build),
                )
        latest = max((b[0] for b in self._builds(name)), default=0)
        self._start_build(cls, latest + 1)
        return latest + 1

    # -- the log under the views --------------------------------------------------------

    def _reading(self) -> dict[str, tuple[int, int, bytes | None]]:
        """Projection → (build, checkpoint, checkpoint_id) of the build that reads on: the
        newest live build of the code's version, unless it stopped (it reads nothing more,
        and ``projections rebuild`` starts it over)."""
        found: dict[str, tuple[int, int, bytes | None]] = {}
        seen: set[str] = set()
        for name, build, version, checkpoint, anchor, status in self._db.execute(
            "SELECT name, build, version, checkpoint, checkpoint_id, status "
            "FROM projection_builds WHERE status != 'retired' ORDER BY name, build DESC"
        ).fetchall():
            cls = self.projections.get(name)
            if cls is None or version != cls.version or name in seen:
                continue
            seen.add(name)
            if status != "stopped" and checkpoint > 0:  # at 0 it has read nothing
                found[name] = (build, checkpoint, anchor)
        return found

    def _misplaced(self) -> tuple[dict[str, str], dict[tuple[str, int], bytes]]:
        """The projections whose checkpoint's event is not in this log at that pos (name →
        what was found there), and the anchors to record for builds written before anchors
        were kept whose checkpoint's event is in the log (trusted: it may well be the log
        they read, and a checkpoint beyond the log's end is still caught)."""
        stored: dict[int, tuple[bytes, bytes] | None] = {}
        wrong: dict[str, str] = {}
        adopt: dict[tuple[str, int], bytes] = {}
        for name, (build, checkpoint, anchor) in self._reading().items():
            if checkpoint not in stored:
                row = self._log.execute(AT_POS, (checkpoint,)).fetchone()
                stored[checkpoint] = None if row is None else (bytes(row[0]), bytes(row[1]))
            there = stored[checkpoint]
            if anchor is None and there is not None:
                adopt[name, build] = there[0]
            elif anchor is None or not same_event(there, bytes(anchor)):
                read = "" if anchor is None else f", event {bytes(anchor).hex()[:12]}"
                now = (
                    f"the log ends at pos {self.log_end()}"
                    if there is None
                    else f"the log has event {there[0].hex()[:12]} there"
                )
                wrong[name] = f"they had read up to pos {checkpoint}{read}; {now}"
        return wrong, adopt

    def _settle_anchors(self) -> None:
        """Inside a write transaction: record the anchors of builds from before anchors,
        and start over every build whose checkpoint is in another log (one warning)."""
        wrong, adopt = self._misplaced()
        for (name, build), anchor in adopt.items():
            self._db.execute(
                "UPDATE projection_builds SET checkpoint_id = ? WHERE name = ? AND build = ?",
                (anchor, name, build),
            )
        if not wrong:
            return
        names = sorted(wrong)
        log.warning(
            "views %s: the log %s is not the one they were built from (%s): a backup put "
            "back, or the log fetched again from peers? Its events have other positions, so "
            "rebuilding %s from the start of the log",
            self.views_path,
            self.log_path,
            wrong[names[0]],
            ", ".join(names),
        )
        for name in names:
            self._restart(self.projections[name])

    def _check_log(self) -> None:
        """Before catching up: the log must still be the one the checkpoints point into."""
        if self._misplaced() != ({}, {}):
            # Again, holding the lock: another process may have started them over meanwhile.
            with self.write():
                self._settle_anchors()

    def _class(self, name: str) -> type[Projection]:
        try:
            return self.projections[name]
        except KeyError:
            known = ", ".join(sorted(self.projections)) or "none"
            raise ProjectionError(f"no projection named {name!r}; known: {known}") from None

    # -- applying -----------------------------------------------------------------------

    @_storage_errors
    def log_end(self) -> int:
        row = self._log.execute("SELECT COALESCE(MAX(pos), 0) FROM events").fetchone()
        return int(row[0])

    @_storage_errors
    def fresh_builds(self) -> dict[str, int]:
        """Projection → its build of the code's version, where that build has applied
        nothing yet (one query: the node asks on every catch-up of a large log)."""
        rows = self._db.execute(
            "SELECT name, build, version FROM projection_builds "
            "WHERE status = 'building' AND checkpoint = 0"
        ).fetchall()
        return {
            name: build
            for name, build, version in rows
            if name in self.projections and self.projections[name].version == version
        }

    @_storage_errors
    def kind_counts(self) -> dict[str, int]:
        """Events of each kind in the log."""
        rows = self._log.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind").fetchall()
        return {kind: int(n) for kind, n in rows}

    @_storage_errors
    def step(self, *, skip: Collection[str] = ()) -> int:
        """Apply one batch to every projection that is behind; returns the log records it
        moved their checkpoints past (summed over projections).

        Records of kinds a projection does not read count too: a batch of only other
        kinds still moves its checkpoint, and ``catch_up`` must not stop there. Projections
        named in ``skip`` (being built by a worker process) are left alone.
        """
        self._check_log()
        applied = 0
        end = self.log_end()
        window = _Window(self._log, self.registry, self.batch, self._kinds, self._shared_kinds, end)
        for name in self.projections:
            if name not in skip:
                applied += self._step_one(name, end, window)
        return applied

    @_storage_errors
    def catch_up(
        self, *, parallel: bool = True, progress: Callable[[int], object] | None = None
    ) -> int:
        """Apply until every projection has caught up with the log (or stopped).

        With ``parallel``, fresh builds far behind the log are first built in worker
        processes, one per core (:mod:`hubnode.projections.parallel`). ``progress`` is
        called with the records each part moved past (as ``step`` counts them).
        """
        self._check_log()  # first: a build started over is fresh, and may go to a worker
        total = rebuild_in_parallel(self) if parallel else 0
        if progress is not None and total:
            progress(total)
        while n := self.step():
            total += n
            if progress is not None:
                progress(n)
        return total

    def _step_one(self, name: str, end: int, window: _Window) -> int:
        cls = self.projections[name]
        with self.write():
            current = next(
                (b for b in self._builds(name) if b[1] == cls.version and b[3] != "retired"), None
            )
            if current is None:
                self._ensure_build(cls)
                return 0
            build, _, checkpoint, status = current
            if status == "stopped":
                return 0
            if checkpoint >= end:
                if status == "building":
                    self._swap_in(name, build)
                return 0
            rows, covered = window.after(checkpoint)
            if covered <= checkpoint:
                return 0
            wanted = [row for row in rows if row[1] in cls.kinds]
            failed = self._apply(name, build, wanted, window) if wanted else None
            last = covered if failed is None else failed
            self._db.execute(
                "UPDATE projection_builds SET checkpoint = ?, checkpoint_id = ?, updated_ms = ? "
                "WHERE name = ? AND build = ?",
                (last, window.id_at(last), _now_ms(), name, build),
            )
            return last - checkpoint  # log positions passed: pos counts records

    def _tx(self, name: str, build: int) -> ProjectionTx:
        """The build's ProjectionTx, kept across batches with its formatted statements."""
        tx = self._txs.get((name, build))
        if tx is None:
            tables = (*self.projections[name].tables, IGNORED_TABLE)
            names = {t: physical(name, build, t) for t in tables}
            tx = self._txs[name, build] = ProjectionTx(self._db, names)
        return tx

    def _apply(self, name: str, build: int, wanted: list[_Row], window: _Window) -> int | None:
        """Apply ``wanted`` as one batch; on an error keep what came before it, stop the
        build and return the checkpoint to keep (the pos before the failing event)."""
        projection = self._instances[name]
        tx = self._tx(name, build)
        events: list[Event] = []
        for row in wanted:
            try:
                events.append(window.event(row))
            except InvalidEvent as e:
                # Stored under an older hubnode's looser rules (docs/protocol.md, "Tightening
                # a rule"): apply what comes before it, then stop here, as for an error.
                failed = self._apply(name, build, wanted[: len(events)], window)
                if failed is not None:
                    return failed
                env = restore(row[2], row[3]).envelope
                where = f"{hub_display(env.hub)} seq {env.seq} ({env.kind}, pos {row[0]})"
                self._stop(name, build, where, f"the stored body no longer decodes: {e}")
                return row[0] - 1
        self._db.execute("SAVEPOINT batch")
        try:
            projection.apply_batch(events, tx)
        except Exception:
            self._db.execute("ROLLBACK TO batch")
        else:
            self._db.execute("RELEASE batch")
            return None
        # Find the failing event: apply one by one (as batches of one), keeping each success.
        for event in events:
            self._db.execute("SAVEPOINT one")
            try:
                projection.apply_batch([event], tx)
            except Exception as e:
                self._db.execute("ROLLBACK TO one")
                self._db.execute("RELEASE one")
                self._db.execute("RELEASE batch")
                where = f"{hub_display(event.hub)} seq {event.seq} ({event.kind}, pos {event.pos})"
                self._stop(name, build, where, "".join(traceback.format_exception_only(e)).strip())
                return event.pos - 1
            self._db.execute("RELEASE one")
        self._db.execute("RELEASE batch")
        return None  # the batch failed only as a whole (state-dependent): all applied now

    def _stop(self, name: str, build: int, where: str, error: str) -> None:
        """Stop the build at the event ``where`` names, with the ``error`` it met."""
        self._db.execute(
            "UPDATE projection_builds SET status = 'stopped', error_at = ?, error = ? "
            "WHERE name = ? AND build = ?",
            (where, error, name, build),
        )

    def _swap_in(self, name: str, build: int) -> None:
        for other, _, _, status in self._builds(name):
            if other != build and status != "retired":
                self._drop_build(name, other)
                self._db.execute(
                    "UPDATE projection_builds SET status = 'retired', updated_ms = ? "
                    "WHERE name = ? AND build = ?",
                    (_now_ms(), name, other),
                )
        self._db.execute(
            "UPDATE projection_builds SET status = 'serving', updated_ms = ? "
            "WHERE name = ? AND build = ?",
            (_now_ms(), name, build),
        )

    # -- reading ------------------------------------------------------------------------

    @_storage_errors
    def serving_build(self, name: str) -> int | None:
        """The build readers should use: the serving one, else the oldest live one (a build
        that stopped keeps serving what it has until its replacement is swapped in)."""
        builds = [b for b in self._builds(name) if b[3] != "retired"]
        for build, _, _, status in builds:
            if status == "serving":
                return build
        return builds[-1][0] if builds else None

    @_storage_errors
    def tables(self, name: str) -> dict[str, str]:
        """Logical → physical table names of the build readers should use.

        During a version bump that is still the old version's build, whose tables may
        differ from the code's: they are read from the database, not from the class.
        """
        cls = self._class(name)
        build = self.serving_build(name)
        if build is None:
            raise ProjectionError(f"projection {name!r} has no build yet")
        (version,) = self._db.execute(
            "SELECT version FROM projection_builds WHERE name = ? AND build = ?", (name, build)
        ).fetchone()
        if version == cls.version:
            return {t: physical(name, build, t) for t in (*cls.tables, IGNORED_TABLE)}
        prefix = physical(name, build, "")
        return {
            table[len(prefix) :]: table
            for (table,) in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ? ESCAPE '\\'",
                (prefix.replace("_", "\\_") + "%",),
            )
        }

    @_storage_errors
    def query(self, name: str, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query on ``name``'s serving tables (``{table}`` placeholders)."""
        tables = self.tables(name)
        try:
            sql = statement.format_map(tables)
        except KeyError as e:
            raise ProjectionError(
                f"projection {name!r} has no table {e.args[0]!r} in the build now serving "
                f"(tables: {', '.join(sorted(tables))}); a new version is still being built: "
                f"see `hubnode projections status`"
            ) from None
        return list(self._db.execute(sql, params))

    @_storage_errors
    def status(self) -> list[BuildStatus]:
        end = self.log_end()
        out = []
        for name, build, version, checkpoint, status, error_at, error in self._db.execute(
            "SELECT name, build, version, checkpoint, status, error_at, error "
            "FROM projection_builds WHERE status != 'retired' ORDER BY name, build"
        ):
            out.append(
                BuildStatus(
                    name,
                    build,
                    version,
                    checkpoint,
                    status,
                    error_at,
                    error,
                    max(0, end - checkpoint),
                )
            )
        return out

    @_storage_errors
    def hash(self, name: str) -> str:
        """SHA-256 of a canonical dump of ``name``'s serving tables (rows sorted)."""
        digest = hashlib.sha256()
        for table, phys in sorted(self.tables(name).items()):
            rows = sorted(
                _encoder.encode(list(r)) for r in self._db.execute(f"SELECT * FROM {phys}")
            )
            digest.update(_encoder.encode([table, len(rows)]))
            for row in rows:
                digest.update(row)
        return digest.hexdigest()
