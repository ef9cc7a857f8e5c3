"""Issue 12 item 4: damaged files and a missing server must not hang the node.

Real ``hubnode`` processes, each bounded by a timeout: start-up checks of the log and the
views, commands on a damaged views file, SIGTERM and SIGINT in every state (never
connected, unresolvable host, reconnecting, disk full, read-only folder), the ``nats_url``
check, "running but failing" in ``hubnode status``, and the embedded nats-server dying
with a SIGKILLed node.

The disk-full and read-only cases run the node in a private mount namespace
(``unshare -m``, root only) on a small tmpfs; the test reaches its files through
``/proc/PID/root``. Where that is not possible they are skipped, saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import msgspec
import nats
import pytest
from typer.testing import CliRunner

from hubnode import HubFolder
from hubnode.cli import app
from hubnode.config import check_nats_url
from hubnode.node import Node, projection_runner, status_path
from hubnode.protocol import messages as m

from .cluster import HUBNODE, NatsServer, alive, hubnode, kill_if_alive, wait_until
from .conftest import NET, chain, registered, update
from .test_console import Net

STOP_WITHIN: Final = 5.0
"""Seconds a node may take to exit after SIGTERM or SIGINT, in any state."""
START_WITHIN: Final = 15.0
"""Seconds for a node process to start (Python imports on a loaded 2-core machine)."""
UNREACHABLE: Final = "nats://127.0.0.1:1"
UNRESOLVABLE: Final = "nats://nowhere.invalid:4222"
"""``.invalid`` never resolves (RFC 2606), and fails locally without a DNS round trip."""


# -- helpers ----------------------------------------------------------------------------


def make_hub(path: Path, events: int = 0) -> HubFolder:
    """A hub with its log (``events`` of its own) and caught-up views, as after some use."""
    folder = HubFolder.init(path, name=path.name, network=NET)

    async def fill() -> None:
        async with await folder.open_log() as log:
            if events:
                items: list[tuple[str, Any]] = [("hub.registered", registered(path.name))]
                items += [("hub.profile_updated", update(i)) for i in range(2, events + 1)]
                await log.append_many(items)

    asyncio.run(fill())
    runner = projection_runner(folder)
    runner.catch_up(parallel=False)
    runner.close()
    return folder


def smash_page(path: Path, page: int) -> None:
    """Overwrite page ``page`` (1-based) of a SQLite file with garbage, as a bad disk would."""
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(18)[16:18], "big")
        f.seek((page - 1) * size)
        f.write(b"\xa5" * size)


def checkpoint(path: Path) -> None:
    """Move everything from ``path``'s WAL into the file itself, so damage to it shows."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def one_line(stderr: str) -> str:
    """The single line a failing command printed (asserting it printed only that)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


class Run:
    """One ``hubnode run`` process (its stderr in a file), always ended by the test."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def exits_within(self, seconds: float) -> int:
        """The exit code, failing (with the node's output) if it takes longer."""
        try:
            async with asyncio.timeout(seconds):
                return await self.proc.wait()
        except TimeoutError:
            raise AssertionError(
                f"hubnode run did not exit within {seconds:.0f} s; its output:\n{self.output()}"
            ) from None

    async def stopped_by(self, sig: signal.Signals) -> tuple[int, float]:
        """Send ``sig``; (exit code, seconds it took)."""
        began = time.monotonic()
        self.proc.send_signal(sig)
        code = await self.exits_within(STOP_WITHIN)
        return code, time.monotonic() - began

    async def end(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


@contextlib.asynccontextmanager
async def hubnode_run(
    *args: str | Path, log: Path, prefix: tuple[str, ...] = ()
) -> AsyncIterator[Run]:
    """``hubnode run ARGS`` (after ``prefix``, e.g. an ``unshare`` command line)."""
    with open(log, "ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *prefix,
            str(HUBNODE),
            "run",
            *map(str, args),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    run = Run(proc, log)
    try:
        yield run
    finally:
        await run.end()


def status_of(path: Path, pid: int) -> dict[str, Any]:
    """The status ``pid`` wrote into data folder ``path`` ({} if none yet)."""
    try:
        status: dict[str, Any] = json.loads((path / "run" / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return status if status.get("pid") == pid else {}


async def started(run: Run, data: Path) -> dict[str, Any]:
    """Wait until the node writes its status (it runs, whether or not it has connected)."""

    def written() -> dict[str, Any]:
        if run.proc.returncode is not None:
            raise AssertionError(f"hubnode run exited {run.proc.returncode}:\n{run.output()}")
        return status_of(data, run.pid)

    status: dict[str, Any] = await wait_until(
        written, START_WITHIN, "the node to write its status", detail=run.output
    )
    return status


async def connected(run: Run, data: Path) -> None:
    await started(run, data)
    await wait_until(
        lambda: status_of(data, run.pid).get("nats", {}).get("connected"),
        START_WITHIN,
        "the node to connect to NATS",
        detail=run.output,
    )


# -- start-up checks --------------------------------------------------------------------


async def test_run_refuses_a_truncated_views_file_with_one_line(tmp_path: Path) -> None:
    """Issue 12 item 4: a truncated views.sqlite3 made `hubnode run` print an error and
    stay alive without gossiping until SIGTERM."""
    folder = await asyncio.to_thread(make_hub, tmp_path / "hub", 50)
    views = folder.path / "views.sqlite3"
    checkpoint(views)
    with open(views, "r+b") as f:
        f.truncate(views.stat().st_size // 2)
    async with hubnode_run(
        "--data", folder.path, "--nats-url", UNREACHABLE, log=tmp_path / "out"
    ) as run:
        code = await run.exits_within(START_WITHIN)
        line = one_line(run.output())
    assert code != 0
    assert str(views) in line and "delete views.sqlite3" in line


async def test_run_refuses_a_damaged_log_with_one_line(tmp_path: Path) -> None:
    """Issue 12 item 4: a damaged log is found at start, named, with what to do."""
    folder = await asyncio.to_thread(make_hub, tmp_path / "hub", 400)
    log = folder.log_path
    checkpoint(log)
    pages = log.stat().st_size // 4096
    smash_page(log, pages // 2)
    async with hubnode_run(
        "--data", folder.path, "--nats-url", UNREACHABLE, log=tmp_path / "out"
    ) as run:
        code = await run.exits_within(START_WITHIN)
        line = one_line(run.output())
    assert code != 0
    assert str(log) in line and "damaged" in line
    assert "hubnode log check" in line and "A stored record is damaged" in line


async def test_run_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    """Issue 12 item 4: a views file overwritten with other bytes is refused like a damaged one."""
    folder = await asyncio.to_thread(make_hub, tmp_path / "hub", 3)
    views = folder.path / "views.sqlite3"
    checkpoint(views)
    views.write_bytes(b"this is not a database\n" * 500)
    async with hubnode_run(
        "--data", folder.path, "--nats-url", UNREACHABLE, log=tmp_path / "out"
    ) as run:
        assert await run.exits_within(START_WITHIN) != 0
        line = one_line(run.output())
    assert str(views) in line and "delete views.sqlite3" in line


def test_commands_name_a_damaged_log_in_one_line(tmp_path: Path) -> None:
    """Issue 12 item 4: a command opening a log that is not a database says what to do."""
    folder = make_hub(tmp_path / "hub", 3)
    checkpoint(folder.log_path)
    folder.log_path.write_bytes(b"garbage " * 1000)
    done = subprocess.run(
        [HUBNODE, "log", "heads", "--data", folder.path], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert str(folder.log_path) in line and "A stored record is damaged" in line


# -- commands on damaged views ----------------------------------------------------------


def test_projections_hash_names_a_damaged_views_file_in_one_line(tmp_path: Path) -> None:
    """Issue 12 item 4: a smashed views page made `projections hash` crash with a traceback."""
    folder = make_hub(tmp_path / "hub", 30)
    views = folder.path / "views.sqlite3"
    checkpoint(views)
    for page in (3, 5, 8):
        smash_page(views, page)
    done = subprocess.run(
        [HUBNODE, "projections", "hash", "--data", folder.path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert str(views) in line and "delete views.sqlite3" in line


def test_a_damaged_projection_table_is_named_when_read_not_only_at_open(tmp_path: Path) -> None:
    """Issue 12 item 4: damage inside one projection's table, met by a read after the views
    opened fine, still gives the one line (the runner maps it at its boundary)."""
    folder = make_hub(tmp_path / "hub", 30)
    views = folder.path / "views.sqlite3"
    checkpoint(views)
    with contextlib.closing(sqlite3.connect(views)) as db:
        ((table, root),) = db.execute(
            "SELECT name, rootpage FROM sqlite_schema WHERE type = 'table' AND name GLOB "
            "'p__network__b*__hubs'"
        ).fetchall()
        assert db.execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (1,)
    smash_page(views, root)
    result = CliRunner().invoke(app, ["projections", "hash", "--data", str(folder.path)])
    assert result.exit_code == 1, result.output
    line = one_line(result.output)
    assert str(views) in line and "damaged" in line and "delete views.sqlite3" in line


# -- stopping in every state ------------------------------------------------------------


@pytest.mark.parametrize("url", [UNREACHABLE, UNRESOLVABLE], ids=["refused", "unresolvable"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_node_that_never_connected_stops_on_a_signal(
    tmp_path: Path, url: str, sig: signal.Signals
) -> None:
    """Issue 12 item 4: SIGTERM and Ctrl-C were ignored while NATS had never connected."""
    folder = await asyncio.to_thread(make_hub, tmp_path / "hub")
    async with hubnode_run("--data", folder.path, "--nats-url", url, log=tmp_path / "out") as run:
        status = await started(run, folder.path)
        assert status["nats"]["connected"] is False
        code, took = await run.stopped_by(sig)
    assert code == 0, run.output()
    assert took < STOP_WITHIN
    assert status_of(folder.path, run.pid)["running"] is False


async def test_a_reconnecting_node_stops_on_sigterm(tmp_path: Path) -> None:
    """Issue 12 item 4: SIGTERM ends a node whose server went away (it is reconnecting)."""
    folder = await asyncio.to_thread(make_hub, tmp_path / "hub")
    server = NatsServer(tmp_path / "nats")
    url = await server.start()
    try:
        async with hubnode_run(
            "--data", folder.path, "--nats-url", url, log=tmp_path / "out"
        ) as run:
            await connected(run, folder.path)
            await server.stop()
            await wait_until(
                lambda: status_of(folder.path, run.pid)["nats"]["connected"] is False,
                10,
                "the node to notice the server is gone",
                detail=run.output,
            )
            code, _ = await run.stopped_by(signal.SIGTERM)
        assert code == 0, run.output()
    finally:
        await server.stop()


async def test_a_node_reports_running_but_failing_while_nats_never_connects(tmp_path: Path) -> None:
    """Issue 12 item 4: `hubnode status` tells a node that cannot reach NATS from a stopped one."""
    folder = await asyncio.to_thread(make_hub, tmp_path / "hub")
    async with hubnode_run(
        "--data", folder.path, "--nats-url", UNREACHABLE, log=tmp_path / "out"
    ) as run:
        await started(run, folder.path)
        status = await wait_until(
            lambda: status_of(folder.path, run.pid).get("failing"),
            15,
            "the node to report that it cannot reach NATS",
            detail=run.output,
        )
        assert "not connected to NATS at nats://127.0.0.1:1 since" in status["nats"]
        code, out, err = await hubnode("status", "--data", str(folder.path))
        assert code == 0, err
        assert "node running but failing (not connected to NATS at nats://127.0.0.1:1 since" in out
        code, out, _ = await hubnode("status", "--data", str(folder.path), "--json")
        report = msgspec.json.decode(out)
        assert report["running"] is True and report["state"] == "failing"
        assert "nats" in report["failing"]
        assert (await run.stopped_by(signal.SIGTERM))[0] == 0


async def embedded_server(run: Any, data: Path) -> int:
    """The pid of the nats-server the node ``run`` started, once it is connected."""
    await connected(run, data)
    (ports,) = (data / "run" / "nats" / "ports").glob("*.ports")
    return int(ports.stem.rsplit("_", 1)[1])


async def test_a_sigkilled_node_takes_its_embedded_nats_server_with_it(tmp_path: Path) -> None:
    """Issue 12 item 4: SIGKILL of `hubnode run` left its embedded nats-server running."""
    folder = await asyncio.to_thread(make_hub, tmp_path / "hub")
    server_pid: int | None = None
    try:
        async with hubnode_run("--data", folder.path, log=tmp_path / "out") as run:
            server_pid = await embedded_server(run, folder.path)
            assert alive(server_pid)
            run.proc.kill()
            await run.proc.wait()
            await wait_until(
                lambda: not alive(server_pid),
                STOP_WITHIN,
                f"nats-server {server_pid} to die with its node",
            )
    finally:
        kill_if_alive(server_pid)


async def test_sigterm_stops_the_node_and_its_embedded_server(tmp_path: Path) -> None:
    """Issue 12 item 4: SIGTERM ends the node and the nats-server it started, exit 0."""
    folder = await asyncio.to_thread(make_hub, tmp_path / "hub")
    server_pid: int | None = None
    try:
        async with hubnode_run("--data", folder.path, log=tmp_path / "out") as run:
            server_pid = await embedded_server(run, folder.path)
            code, _ = await run.stopped_by(signal.SIGTERM)
        assert code == 0, run.output()
        assert not alive(server_pid)
    finally:
        kill_if_alive(server_pid)


# -- nats_url ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "embedded",
        "nats://127.0.0.1:4222",
        "nats://hub-a.example.org",
        "tls://hub-a:s3cret@10.8.0.1:4222",
        "ws://127.0.0.1:8080",
        "wss://nats.example.org/ws",
        "nats://[::1]:4222",
        "nats://10.0.0.1:4222,nats://10.0.0.2:4222",
        "tls://a:4222, tls://b:4222",
    ],
)
def test_nats_url_accepts_what_nats_py_connects_to(url: str) -> None:
    """Issue 12 item 4: the nats_url forms that work are accepted (server lists too)."""
    assert check_nats_url(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://[::1", "invalid"),
        ("ftp://127.0.0.1:4222", "scheme 'ftp'"),
        ("127.0.0.1:4222", "no scheme"),
        ("nats://", "no host"),
        ("nats://127.0.0.1:99999", "port"),
        ("nats://127.0.0.1:four", "port"),
        ("nats://a:4222,,nats://b:4222", "empty"),
        ("nats://a:4222,ws://b:8080", "mixes"),
        ("", "empty"),
    ],
)
def test_nats_url_refuses_a_malformed_value_saying_what_to_write(url: str, why: str) -> None:
    """Issue 12 item 4: `ftp://[::1` was not even validated."""
    with pytest.raises(ValueError) as caught:
        check_nats_url(url)
    message = str(caught.value)
    assert why in message and "nats://HOST:PORT" in message and '"embedded"' in message
    assert "\n" not in message


def test_nats_url_errors_never_show_a_password() -> None:
    with pytest.raises(ValueError) as caught:
        check_nats_url("ftp://hub-a:s3cret@10.8.0.1:4222")
    assert "s3cret" not in str(caught.value) and "hub-a:***@" in str(caught.value)


def test_run_refuses_a_malformed_nats_url_with_one_line_and_exit_2(tmp_path: Path) -> None:
    """Issue 12 item 4: `hubnode run --nats-url ftp://[::1` is a usage error."""
    folder = make_hub(tmp_path / "hub")
    done = subprocess.run(
        [HUBNODE, "run", "--data", folder.path, "--nats-url", "ftp://[::1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert "'ftp://[::1'" in line and "nats://HOST:PORT" in line


def test_a_malformed_nats_url_in_the_config_is_refused_on_load(tmp_path: Path) -> None:
    """Issue 12 item 4: a bad nats_url in hubnode.toml is named when the folder is opened."""
    folder = make_hub(tmp_path / "hub")
    config = folder.path / "hubnode.toml"
    config.write_text(
        config.read_text().replace('nats_url = "embedded"', 'nats_url = "ftp://[::1"')
    )
    result = CliRunner().invoke(app, ["status", "--data", str(folder.path)])
    assert result.exit_code == 1
    line = one_line(result.output)
    assert str(config) in line and "'ftp://[::1'" in line


def test_init_refuses_a_malformed_nats_url_with_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "init",
            "--data",
            str(tmp_path / "hub"),
            "--name",
            "A",
            "--network",
            NET,
            "--nats-url",
            "nats://h:4222,,",
        ],
    )
    assert result.exit_code == 2
    assert "empty" in one_line(result.output)
    assert not (tmp_path / "hub" / "keys").exists()


async def test_a_server_list_connects_to_the_server_that_answers(tmp_path: Path) -> None:
    """Issue 12 item 4: comma-separated server lists work (one server down, one up)."""
    folder = await asyncio.to_thread(make_hub, tmp_path / "hub")
    server = NatsServer(tmp_path / "nats")
    url = await server.start()
    try:
        async with hubnode_run(
            "--data", folder.path, "--nats-url", f"{UNREACHABLE},{url}", log=tmp_path / "out"
        ) as run:
            await connected(run, folder.path)
            assert (await run.stopped_by(signal.SIGTERM))[0] == 0
    finally:
        await server.stop()


# -- status: running but failing --------------------------------------------------------


def write_status(folder: HubFolder, **fields: Any) -> None:
    path = status_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = {
        "pid": os.getpid(),
        "running": True,
        "updated_at": time.time(),
        "nats": {"url": "nats://127.0.0.1:4222", "connected": True},
        "peers": {},
        "counters": {},
    }
    path.write_text(json.dumps(base | fields))


def status_line(folder: HubFolder) -> tuple[str, dict[str, Any]]:
    runner = CliRunner()
    text = runner.invoke(app, ["status", "--data", str(folder.path)])
    assert text.exit_code == 0, text.output
    as_json = runner.invoke(app, ["status", "--data", str(folder.path), "--json"])
    report: dict[str, Any] = json.loads(as_json.output)
    return text.output.splitlines()[0], report


def test_status_tells_running_failing_stale_and_not_running_apart(tmp_path: Path) -> None:
    """Issue 12 item 4: `status` said "not running" while the process lived."""
    folder = make_hub(tmp_path / "hub")
    write_status(folder)
    line, report = status_line(folder)
    assert line.endswith("node running") and report["state"] == "running"
    assert report["running"] is True and report["failing"] == {}

    reason = "cannot write to log.sqlite3: database or disk is full"
    write_status(folder, failing={"log": reason})
    line, report = status_line(folder)
    assert line.endswith(f"node running but failing ({reason})")
    assert report["state"] == "failing" and report["failing"] == {"log": reason}

    write_status(folder, updated_at=time.time() - 120)  # the process lives (it is us)
    line, report = status_line(folder)
    assert "node running but failing (status file stale: not updated since" in line
    assert report["state"] == "stale" and report["running"] is True

    # Killed: its last status says running, but no process has that pid (above pid_max).
    write_status(folder, updated_at=time.time() - 120, pid=2**22 + 1)
    line, report = status_line(folder)
    assert line.endswith("node not running") and report["state"] == "not running"

    write_status(folder, running=False)  # a clean stop
    line, report = status_line(folder)
    assert line.endswith("node not running") and report["running"] is False


async def test_the_node_keeps_going_when_its_status_file_cannot_be_written(tmp_path: Path) -> None:
    """Issue 12 item 4: a failed status write killed the status loop (and later the stop)."""
    folder = await asyncio.to_thread(make_hub, tmp_path / "hub")
    server = NatsServer(tmp_path / "nats")
    url = await server.start()
    node = Node(folder, nats_url=url)
    try:
        await node.start()
        path = status_path(folder)
        path.with_suffix(".tmp").mkdir()  # writing the status now fails (as root, too)
        node.write_status(running=True)
        assert node.failing()["status"].startswith(f"cannot write {path.parent}")
        shutil.rmtree(path.with_suffix(".tmp"))
        node.write_status(running=True)
        assert "status" not in node.failing()
    finally:
        try:
            await node.stop()
        finally:
            await server.stop()


async def test_views_that_fail_while_running_are_reported_and_retried(tmp_path: Path) -> None:
    """Issue 12 item 4: an error updating the views ended the node's projection loop for
    good, silently; now it is reported as failing and retried until it clears."""
    folder = await asyncio.to_thread(make_hub, tmp_path / "hub", 3)
    server = NatsServer(tmp_path / "nats")
    url = await server.start()
    node = Node(folder, nats_url=url)
    views = sqlite3.connect(folder.path / "views.sqlite3", isolation_level=None)
    try:
        await node.start()
        assert node.log is not None
        views.execute(
            "CREATE TRIGGER broken BEFORE UPDATE OF checkpoint ON projection_builds "
            "BEGIN SELECT RAISE(ABORT, 'the views cannot be written'); END"
        )
        await node.log.append("hub.profile_updated", update(4))
        reason = await wait_until(lambda: node.failing().get("views"), 10, "views to fail")
        assert "the views cannot be written" in reason
        views.execute("DROP TRIGGER broken")
        await node.log.append("hub.profile_updated", update(5))
        await wait_until(lambda: "views" not in node.failing(), 10, "views to work again")
    finally:
        views.close()
        try:
            await node.stop()
        finally:
            await server.stop()


# -- disk full and read-only: a private mount namespace ---------------------------------


UNSHARE: Final = ("unshare", "-m", "--propagation", "private", "sh", "-c")
"""Run a shell script in a private mount namespace: its mounts are seen by it alone."""


def _can_mount_privately(where: Path) -> str | None:
    """None if ``unshare -m`` can mount a tmpfs here; else why not."""
    if shutil.which("unshare") is None:
        return "no unshare(1) on this machine"
    where.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [*UNSHARE[:4], "mount", "-t", "tmpfs", "-o", "size=1m", "hubnode-test", str(where)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare failed: {e}"
    return None if done.returncode == 0 else f"cannot mount a tmpfs privately: {done.stderr}"


@pytest.fixture
def private_mounts(tmp_path: Path) -> None:
    why = _can_mount_privately(tmp_path / "probe")
    if why is not None:
        pytest.skip(f"needs root and mount namespaces: {why}")


FULL_DISK: Final = """set -e
mount -t tmpfs -o size=16m hubnode-data "$1"
cp -a "$2/." "$1/"
mkdir -p "$1/run"
if [ "$3" = separate-run ]; then mount -t tmpfs -o size=2m hubnode-run "$1/run"; fi
shift 3
exec "$@"
"""
"""A tmpfs for the data folder (and, when asked, another for run/), then the command."""

READ_ONLY: Final = """set -e
mount --bind "$1" "$1"
mount -o remount,ro,bind "$1"
mount -t tmpfs -o size=2m hubnode-run "$1/run"
shift 1
exec "$@"
"""
"""The data folder read-only (run/ writable), then the command."""


SILENT_DNS: Final = """set -e
mount --bind "$1" /etc/resolv.conf
shift 1
exec "$@"
"""
"""A resolv.conf naming a DNS server that never answers, then the command."""


async def test_a_node_stuck_resolving_its_nats_host_stops_on_sigterm(
    tmp_path: Path, private_mounts: None
) -> None:
    """Issue 12 item 4: with the network down at boot, a DNS lookup of the NATS host
    blocks for the resolver's timeout (30 s here); SIGTERM still ends the node in 5 s."""
    folder = await asyncio.to_thread(make_hub, tmp_path / "hub")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dns:
        dns.bind(("127.88.0.53", 53))  # receives queries, never answers
        dns.settimeout(START_WITHIN)
        resolv = tmp_path / "resolv.conf"
        resolv.write_text("nameserver 127.88.0.53\noptions timeout:30 attempts:1\n")
        async with hubnode_run(
            "--data",
            folder.path,
            "--nats-url",
            "nats://nats.hub-a.example.org:4222",
            log=tmp_path / "out",
            prefix=(*UNSHARE, SILENT_DNS, "sh", str(resolv)),
        ) as run:
            await started(run, folder.path)
            await asyncio.to_thread(dns.recvfrom, 512)  # the node is resolving the host
            code, _ = await run.stopped_by(signal.SIGTERM)
    assert code == 0, run.output()
    assert "not waiting for a blocked lookup" in run.output()


def fill(folder: Path) -> None:
    """Write to ``folder`` until its file system is full (unbuffered: nothing left to flush)."""
    with open(folder / "filler", "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)


async def publish_peer_events(url: str, records: list[bytes]) -> None:
    nc = await nats.connect(servers=[url])
    try:
        for payload in m.pack_records(records, nc.max_payload):
            await nc.publish(m.subject(NET, "ev"), payload)
        await nc.flush()
    finally:
        await nc.close()


async def test_a_full_disk_shows_running_but_failing_and_sigterm_ends_it(
    tmp_path: Path, private_mounts: None
) -> None:
    """Issue 12 item 4: with the log's disk full the node said "not running" while it
    lived, and SIGTERM did not end it."""
    source = await asyncio.to_thread(make_hub, tmp_path / "source", 5)
    writer, records = chain(20)
    source.add_trusted(writer.hub, "peer")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    server = NatsServer(tmp_path / "nats")
    url = await server.start()
    namespace = (*UNSHARE, FULL_DISK, "sh", str(mnt), str(source.path), "separate-run")
    try:
        async with hubnode_run(
            "--data", mnt, "--nats-url", url, log=tmp_path / "out", prefix=namespace
        ) as run:
            data = Path(f"/proc/{run.pid}/root{mnt}")
            await connected(run, data)
            await asyncio.to_thread(fill, data)
            await publish_peer_events(url, records)
            reason = await wait_until(
                lambda: status_of(data, run.pid).get("failing", {}).get("log"),
                10,
                "the node to report that it cannot write its log",
                detail=run.output,
            )
            assert reason.startswith("cannot write to log.sqlite3:") and "full" in reason
            code, out, err = await hubnode("status", "--data", str(data))
            assert code == 0, err
            assert "node running but failing (cannot write to log.sqlite3:" in out
            code, took = await run.stopped_by(signal.SIGTERM)
        assert took < STOP_WITHIN
        assert code == 0, run.output()
    finally:
        await server.stop()


async def test_a_node_whose_whole_disk_is_full_still_stops_and_ends_its_server(
    tmp_path: Path, private_mounts: None
) -> None:
    """Issue 12 item 4: a full disk (status file included) ends the node on SIGTERM, and
    its embedded nats-server with it."""
    source = await asyncio.to_thread(make_hub, tmp_path / "source", 5)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    namespace = (*UNSHARE, FULL_DISK, "sh", str(mnt), str(source.path), "one-disk")
    server_pid: int | None = None
    try:
        async with hubnode_run("--data", mnt, log=tmp_path / "out", prefix=namespace) as run:
            data = Path(f"/proc/{run.pid}/root{mnt}")
            await connected(run, data)
            (ports,) = (data / "run" / "nats" / "ports").glob("*.ports")
            server_pid = int(ports.stem.rsplit("_", 1)[1])
            await asyncio.to_thread(fill, data)
            before = status_of(data, run.pid)["updated_at"]
            await wait_until(
                lambda: "cannot write" in run.output(),
                10,
                "the node to notice that it cannot write its status",
                detail=run.output,
            )
            assert status_of(data, run.pid)["updated_at"] - before < 3  # the last state kept
            code, took = await run.stopped_by(signal.SIGTERM)
        assert took < STOP_WITHIN and code == 0, run.output()
        assert not alive(server_pid)
    finally:
        kill_if_alive(server_pid)


async def test_a_read_only_data_folder_ends_run_at_once_with_one_line(
    tmp_path: Path, private_mounts: None
) -> None:
    """Issue 12 item 4: on a read-only data folder `hubnode run` printed an error and hung."""
    folder = await asyncio.to_thread(make_hub, tmp_path / "hub", 5)
    (folder.path / "run").mkdir(exist_ok=True)
    namespace = (*UNSHARE, READ_ONLY, "sh", str(folder.path))
    async with hubnode_run(
        "--data", folder.path, "--nats-url", UNREACHABLE, log=tmp_path / "out", prefix=namespace
    ) as run:
        code = await run.exits_within(START_WITHIN)
        line = one_line(run.output())
    assert code != 0
    assert "Read-only file system" in line or "readonly" in line


def test_the_console_says_when_the_node_runs_but_fails(net: Net) -> None:
    """Issue 12 item 4, for staff: a node that runs but cannot write its log is not shown
    as fine; Today says what does not work."""
    import json as json_

    from hubnode.node import status_path
    from tests.test_console import Clock, open_desk

    for desk in open_desk(net.a, Clock()):
        desk.signed_in("a worker")
        path = status_path(net.a)
        path.parent.mkdir(exist_ok=True)
        failing = {"log": "cannot write to log.sqlite3: database or disk is full"}
        status = {"running": True, "updated_at": desk.clock.now, "failing": failing}
        path.write_text(json_.dumps({**status, "nats": {"connected": True}}))
        today = desk.get("/").text
        assert "node is not running" not in today
        assert "running but cannot do all its work" in today
        assert "cannot write to log.sqlite3: database or disk is full" in today
