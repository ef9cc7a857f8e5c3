"""A harness for real-process federation tests: a nats-server and ``hubnode run`` nodes.

Everything is a real process on 127.0.0.1: the nats-server (``EmbeddedServer``, a random
port unless one is asked for) and one ``hubnode run`` subprocess per hub, its stderr
appended to ``node.log`` in the hub's folder (the tail goes into assertion messages).
The test process reads and appends to the hubs' logs directly: the log is safe to share
between processes. :meth:`Cluster.close` stops every process it started (SIGTERM, then
SIGKILL after a bound) and reports any node that did not exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

import msgspec

from hubnode import EventLog, HubFolder
from hubnode.config import EmbeddedNats
from hubnode.events.ids import hub_display
from hubnode.node import read_status
from hubnode.privacy.keyring import Keyring
from hubnode.protocol.natsd import EmbeddedServer
from hubnode.store.log import Head

from .conftest import NET, registered, update

HUBNODE: Final = Path(sys.executable).parent / "hubnode"
HEADS_INTERVAL: Final = 0.5
"""Seconds between heads announcements in tests (the default is 2 s)."""
STOP_TIMEOUT: Final = 10.0
"""Seconds a process gets to exit after SIGTERM before it is killed."""
POLL: Final = 0.05
NODE_LOG: Final = "node.log"


async def wait_until(
    predicate: Callable[[], Any],
    within: float = 10.0,
    what: str = "a condition",
    detail: Callable[[], str] | None = None,
) -> Any:
    """Poll ``predicate`` every 50 ms until it returns something truthy; return that.

    After ``within`` seconds fail with ``what`` and ``detail()`` (e.g. the nodes' log tails).
    """
    last: Any = None
    try:
        async with asyncio.timeout(within):
            while True:
                last = predicate()
                if inspect.isawaitable(last):
                    last = await last
                if last:
                    return last
                await asyncio.sleep(POLL)  # the polling period itself
    except TimeoutError:
        extra = f"\n{detail()}" if detail else ""
        raise AssertionError(
            f"timed out after {within:.0f}s waiting for {what} (last: {last!r}){extra}"
        ) from None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for cluster routes, which need a fixed one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


class NatsServer:
    """A nats-server process on 127.0.0.1; restartable on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.url = ""
        self._server: EmbeddedServer | None = None

    async def start(self) -> str:
        settings = EmbeddedNats(port=self.port)
        self._server = EmbeddedServer(
            self.workdir, settings, server_name="test-nats", cluster_name="test"
        )
        self.url = await self._server.start()
        self.port = int(self.url.rsplit(":", 1)[1])
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None

    @property
    def pid(self) -> int | None:
        return self._server.pid if self._server else None


class NodeProc:
    """One ``hubnode run`` subprocess for a hub folder."""

    def __init__(self, folder: HubFolder) -> None:
        self.folder = folder
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = folder.path / NODE_LOG
        self.nats_url: str | None = None
        self.servers: list[int | None] = []
        """Pids of the embedded nats-servers this node's runs started."""

    @property
    def name(self) -> str:
        return self.folder.config.name

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"node {self.name} is not running"
        return self.proc.pid

    async def start(self, nats_url: str | None) -> None:
        """Start the node and wait until its status says it is connected to NATS."""
        assert self.proc is None or self.proc.returncode is not None, f"{self.name} runs"
        self.nats_url = nats_url
        args = [str(HUBNODE), "run", "--data", str(self.folder.path)]
        if nats_url is not None:
            args += ["--nats-url", nats_url]
        else:
            self.servers.append(None)
        with open(self.log_path, "ab") as log:
            log.write(f"---- {time.strftime('%H:%M:%S')} {' '.join(args)}\n".encode())
            log.flush()
            self.proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
            )
        await wait_until(self.running, 15, f"node {self.name} to connect to NATS", detail=self.tail)

    def status(self) -> dict[str, Any] | None:
        return read_status(self.folder)

    def embedded_server_pid(self) -> int | None:
        """The pid of the nats-server this node started, from the ports file it names."""
        ports = list((self.folder.path / "run" / "nats" / "ports").glob("*.ports"))
        if not ports:
            return None
        assert len(ports) == 1, ports
        return int(ports[0].stem.rsplit("_", 1)[1])

    def running(self) -> bool:
        """This process wrote a status saying it runs and is connected to NATS."""
        if self.proc is None or self.proc.returncode is not None:
            raise AssertionError(f"node {self.name} is not running:\n{self.tail()}")
        status = self.status()
        return bool(
            status
            and status.get("pid") == self.proc.pid
            and status.get("running")
            and status["nats"]["connected"]
        )

    def current_status(self) -> dict[str, Any]:
        """The status this very process wrote (not one left by an earlier run)."""
        status = self.status()
        if status is None or self.proc is None or status.get("pid") != self.proc.pid:
            return {}
        return status

    def counters(self) -> dict[str, Any]:
        counters: dict[str, Any] = self.current_status().get("counters", {})
        return counters

    async def stop(self) -> int:
        """SIGTERM, wait (bounded), SIGKILL if needed; the exit code (0 if it was not running)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
                return -signal.SIGKILL
        assert proc.returncode is not None
        return proc.returncode

    def tail(self, chars: int = 3000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"== {self.name}: no log"
        return f"== {self.name} ({self.log_path}) ends:\n{text[-chars:]}"


class Cluster:
    """Hub folders, their nodes, one shared nats-server and the test's handles on the logs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.server: NatsServer | None = None
        self.folders: dict[str, HubFolder] = {}
        self.nodes: dict[str, NodeProc] = {}
        self._readers: dict[str, EventLog] = {}
        self._writers: dict[str, EventLog] = {}
        self.exit_codes: dict[str, list[int]] = {}

    # -- processes ----------------------------------------------------------------------

    async def start_server(self) -> str:
        if self.server is None:
            self.server = NatsServer(self.root / "nats")
        return await self.server.start()

    @property
    def url(self) -> str:
        assert self.server is not None and self.server.url, "no nats-server started"
        return self.server.url

    def hub(self, name: str, *, heads_interval: float = HEADS_INTERVAL, **config: Any) -> HubFolder:
        """A new hub folder with fast heads announcements (and any other config changes)."""
        folder = HubFolder.init(self.root / name, name=name, network=NET)
        folder.config = msgspec.structs.replace(
            folder.config, heads_interval=heads_interval, **config
        )
        folder.save_config()
        self.folders[name] = folder
        return folder

    def hubs(self, *names: str, **config: Any) -> list[HubFolder]:
        """New hubs that all trust each other."""
        folders = [self.hub(n, **config) for n in names]
        trust_each_other(folders)
        return folders

    async def start(
        self, folder: HubFolder, *, nats_url: str | None = None, embedded: bool = False
    ) -> NodeProc:
        """Run ``folder``'s node: on the shared server, on ``nats_url``, or (``embedded``)
        with no ``--nats-url``, so that it starts its own nats-server."""
        url = None if embedded else nats_url or self.url
        node = self.nodes.setdefault(folder.config.name, NodeProc(folder))
        await node.start(url)
        return node

    async def stop(self, folder: HubFolder) -> int:
        code = await self.nodes[folder.config.name].stop()
        self.exit_codes.setdefault(folder.config.name, []).append(code)
        return code

    def node(self, folder: HubFolder) -> NodeProc:
        return self.nodes[folder.config.name]

    def logs(self) -> str:
        return "\n".join(n.tail() for n in self.nodes.values())

    async def close(self) -> dict[str, list[int]]:
        """Stop every node and the server, close the logs; the nodes' exit codes."""
        for name, node in self.nodes.items():
            if node.proc is not None:
                self.exit_codes.setdefault(name, []).append(await node.stop())
            for pid in node.servers:  # left behind only by a node that was killed
                kill_if_alive(pid)
        for log in [*self._readers.values(), *self._writers.values()]:
            await log.close()
        self._readers.clear()
        self._writers.clear()
        if self.server is not None:
            await self.server.stop()
        return self.exit_codes

    # -- the logs -----------------------------------------------------------------------

    async def reader(self, folder: HubFolder) -> EventLog:
        name = folder.config.name
        if name not in self._readers:
            self._readers[name] = await folder.open_log(with_key=False)
        return self._readers[name]

    async def writer(self, folder: HubFolder) -> EventLog:
        name = folder.config.name
        if name not in self._writers:
            self._writers[name] = await folder.open_log()
        return self._writers[name]

    async def append(self, folder: HubFolder, n: int) -> int:
        """Append ``n`` events to ``folder``'s log from this process; its new head seq."""
        log = await self.writer(folder)
        head = await log.head(folder.hub)
        seq = head.seq if head else 0
        items: list[tuple[str, Any]] = []
        for i in range(seq + 1, seq + n + 1):
            if i == 1:
                # Registered with its seal key, as `hubnode` does: the node then has no
                # key of its own to publish and the event counts stay the test's own.
                with Keyring.open(folder) as ring:
                    seal_key = ring.seal_key.public
                items.append(("hub.registered", registered(folder.config.name, seal_key)))
            else:
                items.append(("hub.profile_updated", update(i)))
        for start in range(0, len(items), 1000):
            await log.append_many(items[start : start + 1000])
        return seq + n

    async def close_logs(self, folder: HubFolder) -> None:
        """Close this process's handles on ``folder``'s log (before replacing the file)."""
        name = folder.config.name
        for handles in (self._readers, self._writers):
            log = handles.pop(name, None)
            if log is not None:
                await log.close()

    async def heads(self, folder: HubFolder) -> dict[bytes, Head]:
        return await (await self.reader(folder)).heads()

    async def seqs(self, folder: HubFolder) -> dict[str, int]:
        """Per hub (by name where known), the seq this folder's log holds."""
        names = {f.hub: n for n, f in self.folders.items()}
        return {names.get(h, hub_display(h)): v.seq for h, v in (await self.heads(folder)).items()}

    async def wait_converged(
        self,
        folders: Iterable[HubFolder],
        expected: dict[HubFolder, int],
        within: float = 10.0,
    ) -> dict[bytes, Head]:
        """Wait until every log in ``folders`` holds exactly the same heads, with the
        ``expected`` seq for each listed hub; returns those heads."""
        folders = list(folders)
        want = {f.hub: seq for f, seq in expected.items()}

        async def converged() -> dict[bytes, Head] | None:
            all_heads = [await self.heads(f) for f in folders]
            first = all_heads[0]
            if any(h != first for h in all_heads[1:]):
                return None
            if {h: first[h].seq for h in want if h in first} != want:
                return None
            return first

        async def state() -> str:
            rows = [f"  {f.config.name}: {await self.seqs(f)}" for f in folders]
            return "heads now:\n" + "\n".join(rows)

        try:
            heads: dict[bytes, Head] = await wait_until(converged, within, "the logs to converge")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{await state()}\n{self.logs()}") from None
        return heads

    async def wait_holds(
        self, folder: HubFolder, expected: dict[HubFolder, int], within: float = 10.0
    ) -> None:
        """Wait until ``folder``'s log holds exactly the ``expected`` seq of each listed hub."""
        want = {f.config.name: seq for f, seq in expected.items()}

        async def holds() -> bool:
            seqs = await self.seqs(folder)
            return {n: seqs.get(n, 0) for n in want} == want

        try:
            await wait_until(holds, within, f"{folder.config.name} to hold {want}")
        except AssertionError as e:
            raise AssertionError(
                f"{e}: it holds {await self.seqs(folder)}\n{self.logs()}"
            ) from None


def trust_each_other(folders: list[HubFolder]) -> None:
    for a in folders:
        for b in folders:
            if a is not b:
                a.add_trusted(b.hub, b.config.name)


def kill_if_alive(pid: int | None) -> None:
    """SIGKILL ``pid`` if it still exists (teardown of processes a node should have ended)."""
    if pid is not None and alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def hubnode(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run the ``hubnode`` console script, with ``stdin`` as its input; (exit code,
    stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        str(HUBNODE),
        *args,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(30):
            out, err = await proc.communicate(stdin)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def hubnode_json(*args: str, stdin: bytes | None = None) -> Any:
    """Run ``hubnode ARGS --json`` and decode what it prints (failing on a non-zero exit)."""
    code, out, err = await hubnode(*args, "--json", stdin=stdin)
    assert code == 0, f"hubnode {' '.join(args)} exited {code}: {err}"
    return msgspec.json.decode(out)
