"""Fresh builds shared out between worker processes (hubnode.projections.parallel).

The input is the projections bench's mixed history (every kind the built-in projections
read, several hubs interleaved as gossip delivers them), small: the workers are real
processes, and the threshold is lowered so that a few thousand events are shared out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import json
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import pytest
from typer.testing import CliRunner

from hubnode.cli import app
from hubnode.config import HubFolder
from hubnode.events.verify import Event
from hubnode.projections import BUILTIN, Projection, ProjectionRunner, ProjectionTx, parallel
from hubnode.store.log import EventLog
from hubnode.testing import ChainWriter

BENCH = Path(__file__).resolve().parent.parent / "bench"
HUBS, PER_HUB = 4, 400


@functools.cache  # executed once, not once per caller
def _bench() -> ModuleType:
    sys.path.insert(0, str(BENCH))  # the bench imports its _common module
    try:
        spec = importlib.util.spec_from_file_location("bench_projections", BENCH / "projections.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def mixed_history() -> list[bytes]:
    """HUBS hubs' chains of PER_HUB mixed events, interleaved in runs of 1 to 20."""
    bench = _bench()
    chains = []
    for no in range(HUBS):
        writer = ChainWriter(bench.NET, bench.hub_key(no))
        hub = bench._Hub(no, HUBS, PER_HUB)
        chain = [writer.next("hub.registered", bench.registered_body(no))]
        chain += [writer.next(*hub.body(i)) for i in range(1, PER_HUB)]
        chains.append(chain)
    out: list[bytes] = []
    run = 0
    while any(chains):
        for chain in chains:
            run = run % 20 + 1
            out += chain[:run]
            del chain[:run]
    return out


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("parallel") / "log.sqlite3"

    async def ingest() -> None:
        async with await EventLog.open(path, net=_bench().NET) as log:
            await log.ingest(mixed_history(), trusted=None)

    asyncio.run(ingest())
    return path


@pytest.fixture
def shared_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Share fresh builds out whatever the log's size, on two cores even if there is one."""
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 0)
    monkeypatch.setattr(parallel, "cores", lambda: 2)


class Fragile(Projection):
    """Stops at the 50th service update (importable: workers build it too)."""

    name = "fragile"
    kinds: ClassVar[frozenset[str]] = frozenset({"service.updated"})
    tables: ClassVar[dict[str, str]] = {
        "seen": "hub BLOB NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (hub, seq)"
    }

    def apply(self, event: Event, tx: ProjectionTx) -> None:
        row = tx.one("SELECT COUNT(*) FROM {seen}")
        if row is not None and row[0] == 49:
            raise ValueError("the 50th update")
        tx.execute("INSERT INTO {seen} VALUES (?, ?)", (event.hub, event.seq))


@contextlib.contextmanager
def built(
    log_path: Path, views: Path, projections: list[type[Projection]], *, parallel: bool
) -> Iterator[ProjectionRunner]:
    """A runner on fresh views, caught up."""
    runner = ProjectionRunner(log_path, views, projections)
    try:
        runner.catch_up(parallel=parallel)
        yield runner
    finally:
        runner.close()


def summary(runner: ProjectionRunner) -> dict[str, tuple[object, ...]]:
    """Each projection's hash and status (checkpoint, status, where and why it stopped)."""
    return {
        s.name: (runner.hash(s.name), s.checkpoint, s.status, s.error_at, s.error, s.behind)
        for s in runner.status()
    }


def test_workers_build_what_this_process_would(
    log_path: Path, tmp_path: Path, shared_out: None, caplog: pytest.LogCaptureFixture
) -> None:
    projections = [*BUILTIN, Fragile]
    serial = tmp_path / "serial"
    serial.mkdir()
    with built(log_path, serial / "views.sqlite3", projections, parallel=False) as runner:
        expected = summary(runner)
    assert expected["fragile"][2] == "stopped"
    assert expected["fragile"][4] == "ValueError: the 50th update"
    assert all(v[2] == "serving" for name, v in expected.items() if name != "fragile")

    caplog.set_level(logging.INFO, logger="hubnode.projections.parallel")
    with built(log_path, tmp_path / "views.sqlite3", projections, parallel=True) as runner:
        assert summary(runner) == expected
    workers = [r.getMessage() for r in caplog.records if "in a worker process" in r.getMessage()]
    assert len(workers) == 2, workers
    assert sorted(n for m in workers for n in m.split(" in a ")[0][8:].split(", ")) == sorted(
        p.name for p in projections
    )
    assert not list(tmp_path.glob(parallel.SCRATCH_PREFIX + "*"))  # scratch removed


def test_a_failed_worker_leaves_its_builds_to_this_process(
    log_path: Path,
    tmp_path: Path,
    shared_out: None,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (tmp_path / "serial").mkdir()
    with built(log_path, tmp_path / "serial" / "v.sqlite3", [*BUILTIN], parallel=False) as runner:
        expected = summary(runner)
    monkeypatch.setattr(
        parallel, "_WORKER", "import sys; print('out of memory', file=sys.stderr); sys.exit(7)"
    )
    with built(log_path, tmp_path / "views.sqlite3", [*BUILTIN], parallel=True) as runner:
        assert summary(runner) == expected
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(failures) == 2
    assert all("failed: exit code 7: out of memory" in f for f in failures)


def test_a_copy_that_fails_leaves_its_builds_to_this_process(
    log_path: Path, tmp_path: Path, shared_out: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "serial").mkdir()
    with built(log_path, tmp_path / "serial" / "v.sqlite3", [*BUILTIN], parallel=False) as runner:
        expected = summary(runner)
    copy_in = parallel.copy_in

    def full_disk(runner: ProjectionRunner, scratch: Path, names: list[str]) -> int:
        if "directory" in names:
            raise sqlite3.OperationalError("database or disk is full")
        return copy_in(runner, scratch, names)

    monkeypatch.setattr(parallel, "copy_in", full_disk)
    with built(log_path, tmp_path / "views.sqlite3", [*BUILTIN], parallel=True) as runner:
        assert summary(runner) == expected


@pytest.mark.timeout(30)
def test_an_error_while_workers_run_kills_them_and_cleans_up(
    log_path: Path, tmp_path: Path, shared_out: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[subprocess.Popen[bytes]] = []
    start = parallel._start

    def slow(log: Path, scratch: Path, refs: list[str]) -> subprocess.Popen[bytes]:
        started.append(start(log, scratch, refs))
        return started[-1]

    monkeypatch.setattr(parallel, "_WORKER", "import time; time.sleep(120)")
    monkeypatch.setattr(parallel, "_start", slow)
    runner = ProjectionRunner(log_path, tmp_path / "views.sqlite3", [*BUILTIN])

    def interrupted(*, skip: object = ()) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "step", interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            runner.catch_up()
    finally:
        runner.close()
    assert len(started) == 2
    assert all(w.returncode is not None for w in started)  # killed, not waited for 120 s
    assert not list(tmp_path.glob(parallel.SCRATCH_PREFIX + "*"))


def test_a_build_advanced_here_meanwhile_is_left_to_this_process(
    log_path: Path, tmp_path: Path
) -> None:
    directory = next(p for p in BUILTIN if p.name == "directory")
    scratch = tmp_path / "scratch.sqlite3"
    parallel._build(log_path, scratch, [parallel.class_ref(directory) or ""])
    runner = ProjectionRunner(log_path, tmp_path / "views.sqlite3", [directory], batch=100)
    try:
        runner.step()  # another process got here first
        (before,) = runner.status()
        assert 0 < before.checkpoint < runner.log_end()
        assert parallel.copy_in(runner, scratch, ["directory"]) == 0
        assert runner.status() == [before]
        runner.catch_up(parallel=False)
        fresh = ProjectionRunner(log_path, tmp_path / "fresh.sqlite3", [directory])
        fresh.catch_up(parallel=False)
        assert runner.hash("directory") == fresh.hash("directory")  # no row copied in twice
        fresh.close()
    finally:
        runner.close()


def test_small_logs_and_single_builds_are_not_shared_out(
    log_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("a worker was started")

    monkeypatch.setattr(parallel, "_start", refuse)
    monkeypatch.setattr(parallel, "cores", lambda: 2)
    with built(log_path, tmp_path / "a.sqlite3", [*BUILTIN], parallel=True) as runner:
        assert runner.log_end() < parallel.PARALLEL_MIN  # too small to be worth a process
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 0)
    with built(log_path, tmp_path / "b.sqlite3", [BUILTIN[1]], parallel=True) as runner:
        assert runner.status()[0].status == "serving"  # one build: nothing to share
    monkeypatch.setattr(parallel, "cores", lambda: 1)
    with built(log_path, tmp_path / "c.sqlite3", [*BUILTIN], parallel=True) as runner:
        assert {s.status for s in runner.status()} == {"serving"}


def test_a_command_on_a_hub_with_fresh_views_shares_the_rebuild_out(
    tmp_path: Path, shared_out: None, caplog: pytest.LogCaptureFixture
) -> None:
    """As on a hub restored from exported logs: the first command builds every view."""
    folder = HubFolder.init(tmp_path / "hub", name="Restored Hub", network=_bench().NET)

    async def restore() -> None:
        async with await folder.open_log(with_key=False) as log:
            await log.ingest(mixed_history(), trusted=None)

    asyncio.run(restore())
    caplog.set_level(logging.INFO, logger="hubnode.projections.parallel")
    result = CliRunner().invoke(app, ["projections", "hash", "--data", str(folder.path), "--json"])
    assert result.exit_code == 0, result.output
    assert len([r for r in caplog.records if "in a worker process" in r.getMessage()]) == 2
    with built(folder.log_path, tmp_path / "serial.sqlite3", [*BUILTIN], parallel=False) as r:
        assert json.loads(result.stdout) == {p.name: r.hash(p.name) for p in BUILTIN}


def test_share_gives_the_largest_first_to_the_least_loaded() -> None:
    costs = {"a": 5.0, "b": 4.0, "c": 3.0, "d": 3.0, "e": 1.0}
    assert parallel.share(costs, 2) == [["a", "d"], ["b", "c", "e"]]  # 8 and 8
    assert parallel.share(costs, 9) == [["a"], ["b"], ["c"], ["d"], ["e"]]
    assert parallel.share({"a": 0.0}, 2) == [["a"]]


def test_only_classes_a_worker_can_import_are_shared_out() -> None:
    class Local(Fragile):
        name = "local"

    assert parallel.class_ref(Fragile) == f"{__name__}:Fragile"
    assert parallel.class_ref(BUILTIN[0]) == "hubnode.projections.network:NetworkProjection"
    assert parallel.class_ref(Local) is None


def test_scratch_folders_of_processes_gone_are_removed(tmp_path: Path) -> None:
    dead = tmp_path / f"{parallel.SCRATCH_PREFIX}{2**22 + 12345}-abc"  # above pid_max
    alive = tmp_path / f"{parallel.SCRATCH_PREFIX}{os.getpid()}-abc"
    for folder in (dead, alive):
        folder.mkdir()
        (folder / "0.sqlite3").write_bytes(b"x")
    parallel._remove_stale(tmp_path / "views.sqlite3")
    assert not dead.exists()
    assert alive.exists()
