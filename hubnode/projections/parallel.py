"""Fresh builds of several projections at once, one worker process per core.

A fresh build (after a version bump, ``hubnode projections rebuild``, or on a hub restored
from exported logs) reads the whole log. Projections are independent of each other, but
they share one views database, which one process writes at a time, and their work is
Python, which holds the GIL: one process uses one core. So when at least two fresh builds
are far behind, :meth:`ProjectionRunner.catch_up` shares them out between worker processes,
each a fresh interpreter running this module.

Each worker runs the ordinary runner over the log into a *scratch* database of its own:
no journal on disk, no fsync, a large page cache. A worker's scratch file is never read
unless the worker finished, so a crash (of the worker or of the whole hub) loses only
that work: the build in the views database still has checkpoint 0 and is built again.
When a worker finishes, the runner copies each of its builds' tables into the views
database and sets the build's checkpoint and its anchor (the id of the event there: the
worker read the same log) — and, if the projection raised, its stopped status and
error — in that same transaction, provided the build is still fresh there: a
build another process has meanwhile advanced is left to it. The ``catch_up`` that follows
applies what was appended meanwhile and swaps each build in, as for any build.

Only classes a worker can import by name are shared out (built-ins and plugins; not a
class defined inside a function or in ``__main__``), and only with the default kind
registry; the rest are built in the calling process as before.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib
import logging
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from hubnode.events.kinds import KINDS
from hubnode.projections.base import IGNORED_TABLE, Projection, physical

if TYPE_CHECKING:
    from hubnode.projections.runner import ProjectionRunner

log = logging.getLogger(__name__)

PARALLEL_MIN: Final = 100_000
"""Log records a fresh build must be behind before it is built in a worker process. Below
that a one-process rebuild takes a second or two, and starting processes (about 0.2 s
each) and copying their tables in may cost more than they save: at 50,000 mixed events,
beside a test run on the same 2 cores, two runs of ``bench/projections.py --quick`` gave
41,469 and 17,489 /s in parallel, 31,981 and 31,963 /s in one process (2026-11-26)."""

KEEP_UP_S: Final = 0.2
"""While workers build, the other projections catch up with the log this often."""

SCRATCH_PREFIX: Final = ".rebuild-"
_SCRATCH_DIR: Final = re.compile(r"^\.rebuild-(\d+)-")

SCRATCH_CACHE_KIB: Final = 65_536
"""Page cache of a worker's scratch database: up to 64 MiB, used only as it fills."""

SCRATCH_BATCH: Final = 100_000
"""Log records per batch in a worker. No one reads a scratch database, so a long write
transaction holds no one up, and a projection deriving per batch (tenders) derives a group
once for more events. A worker's peak memory is about 240 MB with this (500,000 mixed
events, bench/projections.py); 10,000 (the runner's default) costs 18 % more time."""


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def class_ref(cls: type[Projection]) -> str | None:
    """``module:qualname`` a worker can import ``cls`` by, or None if it cannot."""
    module, qualname = cls.__module__, cls.__qualname__
    if module == "__main__" or "<locals>" in qualname:
        return None
    try:
        found = _load(f"{module}:{qualname}")
    except (ImportError, AttributeError):
        return None
    return f"{module}:{qualname}" if found is cls else None


def _load(ref: str) -> type[Projection]:
    module, qualname = ref.split(":")
    found: object = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    assert isinstance(found, type) and issubclass(found, Projection), ref
    return found


def share(costs: dict[str, float], workers: int) -> list[list[str]]:
    """Share projections out between ``workers`` by estimated cost, largest first, each to
    the least loaded worker (names sorted within a worker, workers without work left out)."""
    loads: list[tuple[float, list[str]]] = [(0.0, []) for _ in range(workers)]
    for name in sorted(costs, key=lambda n: (-costs[n], n)):
        i = min(range(workers), key=lambda k: loads[k][0])
        load, names = loads[i]
        loads[i] = (load + costs[name], [*names, name])
    return [sorted(names) for _, names in loads if names]


def _build(log_path: Path, scratch: Path, refs: Sequence[str]) -> None:
    """In a worker: build ``refs`` from the start of the log into ``scratch``."""
    from hubnode.projections.runner import ProjectionRunner

    classes = [_load(r) for r in refs]
    runner = ProjectionRunner(log_path, scratch, classes, scratch=True, batch=SCRATCH_BATCH)
    try:
        runner.catch_up(parallel=False)
    finally:
        runner.close()


def _orphaned() -> None:
    """Exit when the runner that started this worker goes away (its end of stdin closes)."""
    while os.read(0, 4096):  # unbuffered: no lock for the interpreter's shutdown to wait on
        pass
    os._exit(3)


def main(argv: Sequence[str]) -> int:
    """A worker: ``main([LOG, SCRATCH, "module:Class", ...])``."""
    log_path, scratch, *refs = argv
    threading.Thread(target=_orphaned, daemon=True).start()
    _build(Path(log_path), Path(scratch), refs)
    return 0


_WORKER: Final = (
    "import sys; from hubnode.projections.parallel import main; sys.exit(main(sys.argv[1:]))"
)


def _start(log_path: Path, scratch: Path, refs: Sequence[str]) -> subprocess.Popen[bytes]:
    """A worker process: a fresh interpreter (not a fork: the node runs ``catch_up`` on a
    thread; not ``multiprocessing``: that re-runs the caller's main script), importing what
    this one imports. Its stderr goes to a file beside its scratch database."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    with open(scratch.with_suffix(".err"), "wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(log_path), str(scratch), *refs],
            stdin=subprocess.PIPE,  # kept open until the worker is done: see _orphaned
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )


def _finish(worker: subprocess.Popen[bytes], scratch: Path) -> str | None:
    """Wait for ``worker``; None if it succeeded, else the last line it wrote."""
    if worker.wait() == 0:
        return None
    lines = scratch.with_suffix(".err").read_text(errors="replace").strip().splitlines()
    return f"exit code {worker.returncode}: {lines[-1] if lines else 'no message'}"


def _remove_stale(views: Path) -> None:
    """Scratch folders left by processes that no longer run (a crash mid-rebuild)."""
    for path in views.parent.glob(SCRATCH_PREFIX + "*"):
        found = _SCRATCH_DIR.match(path.name)
        if found is None or not path.is_dir():
            continue
        try:
            os.kill(int(found[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:  # alive, another user's
            pass


def rebuild_in_parallel(runner: ProjectionRunner) -> int:
    """Build the runner's fresh, far-behind builds in worker processes and copy them in.

    Returns the log records the copied builds read (as ``step`` counts them: once per
    projection); 0 if there was nothing worth sharing out.
    """
    end = runner.log_end()
    cpus = cores()
    if end < PARALLEL_MIN or cpus < 2 or runner.registry is not KINDS:
        return 0
    fresh = {
        name: ref
        for name in runner.fresh_builds()
        if (ref := class_ref(runner.projections[name])) is not None
    }
    if len(fresh) < 2:
        return 0
    counts = runner.kind_counts()
    costs = {
        name: runner.projections[name].cost_per_event
        * sum(counts.get(kind, 0) for kind in runner.projections[name].kinds)
        for name in fresh
    }
    groups = share(costs, min(cpus, len(fresh)))
    _remove_stale(runner.views_path)
    scratch_dir = Path(
        tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=runner.views_path.parent)
    )
    read = 0
    workers: dict[subprocess.Popen[bytes], tuple[Path, list[str]]] = {}
    started = time.monotonic()
    # Not a `with`: on an error or Ctrl-C the workers are killed first, then the threads
    # waiting for them are joined.
    waiting = concurrent.futures.ThreadPoolExecutor(len(groups))
    try:
        for i, group in enumerate(groups):
            scratch = scratch_dir / f"{i}.sqlite3"
            worker = _start(runner.log_path, scratch, [fresh[name] for name in group])
            workers[worker] = (scratch, group)
        pending = {waiting.submit(_finish, w, workers[w][0]): w for w in workers}
        away = set(fresh)
        while pending:
            done, _ = concurrent.futures.wait(
                pending, timeout=KEEP_UP_S, return_when=concurrent.futures.FIRST_COMPLETED
            )
            for finished in done:
                scratch, group = workers[pending.pop(finished)]
                away -= set(group)
                read += _take(runner, finished.result(), scratch, group, started)
            # Meanwhile the other builds (live ones, and any this process builds itself)
            # keep up with the log here.
            while pending and runner.step(skip=away):
                pass
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            if worker.stdin is not None:
                worker.stdin.close()
        waiting.shutdown()
        shutil.rmtree(scratch_dir, ignore_errors=True)
    return read


def _take(
    runner: ProjectionRunner, failure: str | None, scratch: Path, group: list[str], started: float
) -> int:
    """Copy in what a finished worker built; 0 if it failed (the builds stay fresh here, and
    the ``catch_up`` that follows builds them in this process)."""
    if failure is not None:
        log.warning("parallel rebuild of %s failed: %s", ", ".join(group), failure)
        return 0
    copying = time.monotonic()
    try:
        read = copy_in(runner, scratch, group)
    except sqlite3.Error as e:  # e.g. the disk is full: the builds stay fresh, as above
        log.warning("copying the parallel rebuild of %s in failed: %s", ", ".join(group), e)
        return 0
    log.info(
        "rebuilt %s in a worker process in %.1f s, copied in %.1f s",
        ", ".join(group),
        copying - started,
        time.monotonic() - copying,
    )
    return read


def copy_in(runner: ProjectionRunner, scratch: Path, names: Sequence[str]) -> int:
    """Copy the builds of ``names`` from ``scratch`` into the runner's views, each with its
    checkpoint and status, in one transaction; returns the log records they had read."""
    db = runner.db
    db.execute("ATTACH DATABASE ? AS scratch", (str(scratch),))
    try:
        with runner.write():
            read = 0
            for name in names:
                read += _copy_build(runner, name)
    finally:
        with contextlib.suppress(sqlite3.Error):
            db.execute("DETACH DATABASE scratch")
    return read


def _copy_build(runner: ProjectionRunner, name: str) -> int:
    cls = runner.projections[name]
    db = runner.db
    build = runner.fresh_builds().get(name)
    source = db.execute(
        "SELECT build, checkpoint, checkpoint_id, status, error_at, error "
        "FROM scratch.projection_builds "
        "WHERE name = ? AND version = ? AND status != 'retired' ORDER BY build DESC",
        (name, cls.version),
    ).fetchone()
    if build is None or source is None:
        return 0  # advanced here meanwhile by another process: its work stands
    scratch_build, checkpoint, anchor, status, error_at, error = source
    for table in (*cls.tables, IGNORED_TABLE):
        db.execute(
            f"INSERT INTO main.{physical(name, build, table)} "
            f"SELECT * FROM scratch.{physical(name, scratch_build, table)}"
        )
    status = "stopped" if status == "stopped" else "building"  # swapped in once caught up
    db.execute(
        "UPDATE projection_builds SET checkpoint = ?, checkpoint_id = ?, status = ?, "
        "error_at = ?, error = ? WHERE name = ? AND build = ?",
        (checkpoint, anchor, status, error_at, error, name, build),
    )
    return int(checkpoint)
