"""The hub processes of ``hubnode demo``: one ``hubnode run`` per hub, started, watched
and stopped (SIGTERM, wait, SIGKILL, then any nats-server a dead node left behind)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from rich.console import Console
from rich.markup import escape

from hubnode.config import HubFolder
from hubnode.demo_scenario import Profile
from hubnode.errors import HubnodeError
from hubnode.events.ids import hub_display
from hubnode.node import read_status
from hubnode.store.log import EventLog

NODE_LOG: Final = "node.log"
"""Each node's stdout and stderr, in its hub's data folder."""
STOP_TIMEOUT: Final = 12.0
"""Longer than a node's own wait for its nats-server to stop (10 s)."""


class DemoError(HubnodeError):
    """The demo could not complete; the message says which step and shows the nodes' logs."""


@dataclass
class DemoHub:
    """A hub of the demo: its data folder, the log the demo holds open, its node process."""

    number: int
    profile: Profile
    folder: HubFolder
    log: EventLog
    proc: asyncio.subprocess.Process | None = None

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def node_log(self) -> Path:
        return self.folder.path / NODE_LOG


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (bound at once, then released)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def hubnode_command() -> list[str]:
    """The ``hubnode`` console script beside this Python, or the same through ``-c``."""
    script = Path(sys.executable).parent / "hubnode"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from hubnode.cli import main; main()"]


def tail(path: Path, lines: int = 12) -> str:
    """The last ``lines`` of a node's log, indented, for an error message."""
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"    (cannot read {path}: {e.strerror})"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty)"


async def start_nodes(hubs: Sequence[DemoHub]) -> None:
    """Start ``hubnode run`` for each hub, its output in the hub's node.log."""
    command = hubnode_command()
    for hub in hubs:
        with open(hub.node_log, "ab") as log:
            hub.proc = await asyncio.create_subprocess_exec(
                *command,
                "run",
                "--data",
                str(hub.folder.path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                # Its own session: a Ctrl-C reaches only the demo, which stops every
                # node in order (SIGTERM, wait, SIGKILL) instead of racing them.
                start_new_session=True,
            )


async def stop_nodes(hubs: Sequence[DemoHub], out: Console) -> tuple[int, int]:
    """SIGTERM every node, wait, SIGKILL what is left; then any orphaned nats-server.

    Returns how many nodes were stopped and how many of them had to be killed.
    """
    running = [h for h in hubs if h.proc is not None and h.proc.returncode is None]
    for hub in running:
        assert hub.proc is not None
        with contextlib.suppress(ProcessLookupError):
            hub.proc.send_signal(signal.SIGTERM)

    async def reap(hub: DemoHub) -> bool:
        assert hub.proc is not None
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await hub.proc.wait()
            return False
        except TimeoutError:
            out.print(
                f"   the node of {escape(hub.name)} did not stop within "
                f"{STOP_TIMEOUT:.0f} s of SIGTERM; killing it"
            )
            with contextlib.suppress(ProcessLookupError):
                hub.proc.kill()
            await hub.proc.wait()
            return True

    killed = await asyncio.gather(*(reap(h) for h in running))
    for hub in hubs:
        kill_orphaned_servers(hub.folder.path)
    return len(running), sum(killed)


def check_alive(hubs: Sequence[DemoHub]) -> None:
    """Raise DemoError, with the end of its log, if a node has exited."""
    for hub in hubs:
        if hub.proc is not None and hub.proc.returncode is not None:
            raise DemoError(
                f"the node of {hub.name} ({hub.folder.path}) exited with code "
                f"{hub.proc.returncode}; {hub.node_log} ends:\n{tail(hub.node_log)}"
            )


async def cluster_formed(hubs: Sequence[DemoHub]) -> bool:
    """Every node runs and is connected; hubs 2… have heard hub 1 over the cluster."""
    founder = hub_display(hubs[0].folder.hub)
    for hub in hubs:
        status = read_status(hub.folder)
        if (
            status is None
            or hub.proc is None
            or status.get("pid") != hub.proc.pid
            or not status.get("running")
            or not status.get("nats", {}).get("connected")
        ):
            return False
        if hub.number > 1 and founder not in status.get("peers", {}):
            return False
    return True


def kill_orphaned_servers(folder: Path) -> None:
    """Kill a nats-server whose node died without stopping it.

    nats-server deletes its ports file (``nats-server_PID.ports``) when it shuts down, so a
    file left behind after the node exited names a server still running (or one killed).
    """
    for ports in (folder / "run" / "nats" / "ports").glob("*.ports"):
        pid_text = ports.stem.rpartition("_")[2]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        cmdline = Path(f"/proc/{pid}/cmdline")
        with contextlib.suppress(OSError):
            if cmdline.parent.exists() and b"nats-server" not in cmdline.read_bytes():
                continue  # the pid was reused by another program
            # Core NATS keeps no state: SQLite holds everything, so a hard kill loses nothing.
            os.kill(pid, signal.SIGKILL)
        ports.unlink(missing_ok=True)
