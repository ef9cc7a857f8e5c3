"""Is a SQLite file (the log, the views) sound? A check bounded in time, for start-up.

``PRAGMA quick_check`` reads every page of the file and checks the structure of every
b-tree: page headers, cell pointers, page numbers, free lists. It finds a smashed page,
a truncated file or bytes that are not a database at all. It does not compare indexes with
their tables (``integrity_check`` does, at about 8x the cost).

It reads the whole file, so its cost grows with the log: on a log of 1,000,000 events
(608 MB) it took 0.45 s with the file in the page cache and 8.6 s right after the cache was
dropped (docs/operating.md). So it runs under a time budget: when the budget is spent the
connection is interrupted and the check reports that it is incomplete. The part that breaks
a start-up most often is checked whatever the budget: the header and the schema (page 1)
are read first, and SQLite refuses a file shorter than its header says.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hubnode.errors import DamagedDatabase, StorageError

BUDGET: Final = 2.0
"""Seconds a start-up check of one file may take; the node checks the log and the views
at once, so this is also what the checks add to a start, at most."""
DIAGNOSE_BUDGET: Final = 1.0
"""Seconds to look for the damaged file after SQLite reported damage somewhere."""
_SHOWN_LINES: Final = 3
_DAMAGE: Final = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


@dataclass(frozen=True)
class FileCheck:
    """What a check of one file found."""

    problem: str | None
    """What SQLite found wrong, in its words; None if nothing."""
    complete: bool
    """False if the budget ran out before ``quick_check`` had read the whole file."""
    seconds: float


def is_damage(e: sqlite3.Error) -> bool:
    """True if SQLite says the file is corrupt or not a database (not busy, full, …)."""
    return (getattr(e, "sqlite_errorcode", 0) & 0xFF) in _DAMAGE


def check_file(path: Path, budget: float = BUDGET) -> FileCheck:
    """Check ``path`` read-only, for at most about ``budget`` seconds.

    A missing file passes (there is nothing to damage). Errors that are not damage (the
    file cannot be opened, the disk fails) are raised as ``sqlite3.Error``.
    """
    began = time.monotonic()
    if not path.exists():
        return FileCheck(None, True, 0.0)
    db = sqlite3.connect(
        f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )
    # interrupt() from the timer thread stops quick_check between pages (SQLite checks
    # for it as it walks each b-tree); the progress handler is not called inside it.
    timer = threading.Timer(budget, db.interrupt)
    try:
        try:
            db.execute("SELECT COUNT(*) FROM sqlite_schema").fetchone()
            timer.start()
            rows = db.execute("PRAGMA quick_check").fetchmany(_SHOWN_LINES + 1)
        except sqlite3.Error as e:
            if is_damage(e):
                return FileCheck(str(e), True, time.monotonic() - began)
            if e.sqlite_errorcode & 0xFF == sqlite3.SQLITE_INTERRUPT:
                return FileCheck(None, False, time.monotonic() - began)
            raise
    finally:
        timer.cancel()
        db.close()
    found = [
        line
        for (text,) in rows
        for line in str(text).splitlines()
        if line and not line.startswith("***")  # "*** in database main ***"
    ]
    problem = None if found == ["ok"] else "; ".join(found[:_SHOWN_LINES]) or "malformed"
    return FileCheck(problem, True, time.monotonic() - began)


LOG_HELP: Final = 'docs/operating.md, "A stored record is damaged"'


def require_sound(
    path: Path, what: str, damaged: Callable[[Path, str], DamagedDatabase], budget: float
) -> FileCheck:
    """:func:`check_file` of the ``what`` (say, "event log") at ``path``, raising what
    ``damaged`` makes of a problem found, and StorageError if it cannot be read at all."""
    try:
        found = check_file(path, budget)
    except sqlite3.Error as e:
        raise StorageError(f"cannot read {what} {path}: {e}") from e
    if found.problem is not None:
        raise damaged(path, found.problem)
    return found


def damaged_log(path: Path, problem: str) -> DamagedDatabase:
    """The error saying the log is damaged, and what to do: its records are kept in place
    by ``hubnode log repair`` (restoring an older log under newer views would not be)."""
    return DamagedDatabase(
        str(path),
        f"event log {path} is damaged ({problem}). Stop the node, run `hubnode log check "
        f"--data {path.parent}`, then repair it with `hubnode log repair`, or restore it "
        f"where nothing can be read ({LOG_HELP})",
    )


def damaged_views(path: Path, problem: str) -> DamagedDatabase:
    """The error saying the views database is damaged, and what to do."""
    return DamagedDatabase(
        str(path),
        f"views database {path} is damaged ({problem}); it can be rebuilt from the log: stop "
        f"the node, delete views.sqlite3 and its -wal and -shm files in {path.parent}, "
        "and start it again",
    )


def diagnose(e: sqlite3.Error, views: Path, log: Path) -> StorageError:
    """``e``, met using the views over the log, as the error to show.

    SQLite does not say which database a corruption came from, so a short check of each
    file (views first: the usual and cheap case) decides which to name.
    """
    if not is_damage(e):
        return StorageError(f"views database {views}: {e}")
    for path, damaged in ((views, damaged_views), (log, damaged_log)):
        try:
            found = check_file(path, DIAGNOSE_BUDGET)
        except sqlite3.Error:
            continue
        if found.problem is not None:
            return damaged(path, found.problem)
    return damaged_views(views, str(e))
