"""``make demo``: hubs of the Darlington network federate over one NATS cluster.

Each hub is a separate OS process (``hubnode run``) with its own data folder and its own
embedded nats-server; the servers join one cluster through routes. The hubs register,
the first hub admits the others (so every hub comes to trust every other). Then the hubs
share work, step by step (``hubnode/demo_scenario.py``): services published at two hubs,
a skills offer and request, a confirmed time-credit transfer, a tender with a cluster of
three hubs, its lots and bid, and ratings of a service; each hub also appends profile
updates in bulk. The demo watches the logs converge, then builds every hub's views from
its own log and shows that their hashes are identical, and a few lines of each view. Then
one hub's export is audited and a tampered copy of it fails the audit.

The demo process appends through each hub's own log file (the log is safe for several
processes: the node picks the new events up and gossips them), and reads every log to
watch progress. No step waits a fixed time: each polls the logs within a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hubnode.audit import audit_file
from hubnode.config import EmbeddedNats, HubFolder
from hubnode.demo_scenario import MIN_HUBS, Step, steps, view_lines
from hubnode.errors import HubnodeError
from hubnode.events.ids import hub_display, short_hub
from hubnode.events.network import HubAdmitted, HubProfileUpdated, HubRegistered, Role
from hubnode.hublog import HublogWriter
from hubnode.node import projection_runner, read_status
from hubnode.privacy.keyring import Keyring
from hubnode.projections.runner import ProjectionRunner
from hubnode.store.log import EventLog, Head

NETWORK: Final = "darlington-csn"
NODE_LOG: Final = "node.log"
"""Each node's stdout and stderr, in its hub's data folder."""
POLL: Final = 0.2
"""Seconds between two reads of the logs while waiting for the nodes."""
START_TIMEOUT: Final = 20.0
TRUST_TIMEOUT: Final = 20.0
CONVERGE_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 12.0
"""Longer than a node's own wait for its nats-server to stop (10 s)."""
BURST: Final = 25
"""Appends issued at once; the log commits each burst as one transaction."""


class Profile(NamedTuple):
    name: str
    roles: tuple[Role, ...]
    area: str
    contact: str


PROFILES: Final[tuple[Profile, ...]] = (
    Profile(
        "Darlington Advice Hub",
        ("gateway", "follow-up"),
        "Darlington town centre",
        "advice@example.org",
    ),
    Profile(
        "Care Navigators North",
        ("follow-up", "advocacy"),
        "Harrowgate Hill and Cockerton",
        "navigators@example.org",
    ),
    Profile(
        "Volunteer Centre",
        ("direct-delivery", "new-services"),
        "Borough-wide",
        "volunteer@example.org",
    ),
    Profile(
        "Eastbourne Community Hub",
        ("gateway", "direct-delivery"),
        "Eastbourne and Firthmoor",
        "eastbourne@example.org",
    ),
    Profile(
        "Red Hall Family Centre",
        ("direct-delivery", "follow-up"),
        "Red Hall and Lingfield",
        "redhall@example.org",
    ),
    Profile(
        "Skerne Park Residents' Hub",
        ("advocacy", "gateway"),
        "Skerne Park and Bank Top",
        "skernepark@example.org",
    ),
    Profile(
        "Haughton Food Pantry",
        ("direct-delivery",),
        "Haughton and Springfield",
        "pantry@example.org",
    ),
    Profile(
        "Rural Darlington Outreach",
        ("gateway", "new-services"),
        "Hurworth, Middleton St George and Heighington",
        "rural@example.org",
    ),
)
MAX_HUBS: Final = len(PROFILES)


class DemoError(HubnodeError):
    """The demo could not complete; the message says which step and shows the nodes' logs."""


@dataclass
class _Hub:
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


async def run_demo(
    out: Console, *, hubs: int = 4, events: int = 50, keep: Path | None = None
) -> None:
    """Run the demo with ``hubs`` hubs sharing work and appending ``events`` updates each.

    The data folders go to a temporary folder removed at the end, or to ``keep``.
    SIGTERM (like Ctrl-C) stops every node before the demo exits.
    """
    if not MIN_HUBS <= hubs <= MAX_HUBS:
        raise DemoError(f"the demo runs {MIN_HUBS} to {MAX_HUBS} hubs, not {hubs}")
    if events < 1:
        raise DemoError(f"each hub appends at least 1 event, not {events}")
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    terminated: list[bool] = []

    def on_sigterm() -> None:
        terminated.append(True)
        task.cancel()

    previous = signal.getsignal(signal.SIGTERM)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        if keep is not None:
            if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
                raise DemoError(f"{keep} is not an empty folder; pass a new one to --keep")
            keep.mkdir(parents=True, exist_ok=True)
            await _Demo(keep, out, hubs, events, kept=True).run()
        else:
            with tempfile.TemporaryDirectory(prefix="hubnode-demo-") as tmp:
                await _Demo(Path(tmp), out, hubs, events, kept=False).run()
            out.print(f"removed {escape(tmp)}")
    except asyncio.CancelledError:
        if terminated:
            raise DemoError("stopped by SIGTERM; every node was stopped first") from None
        out.print("interrupted; every node was stopped")
        raise
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (bound at once, then released)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def _hubnode_command() -> list[str]:
    """The ``hubnode`` console script beside this Python, or the same through ``-c``."""
    script = Path(sys.executable).parent / "hubnode"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from hubnode.cli import main; main()"]


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"    (cannot read {path}: {e.strerror})"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty)"


def _seconds(start: float) -> str:
    return f"{time.monotonic() - start:.1f} s"


class _Demo:
    def __init__(self, root: Path, out: Console, hubs: int, events: int, *, kept: bool) -> None:
        self.root = root
        self.out = out
        self.count = hubs
        self.events = events
        self.kept = kept
        self.hubs: list[_Hub] = []

    # -- the story ----------------------------------------------------------------------

    async def run(self) -> None:
        out = self.out
        started = time.monotonic()
        where = "kept" if self.kept else "removed at the end; keep them with --keep DIR"
        out.print(
            f"[bold]hubnode demo[/] — network {NETWORK!r}: {self.count} hubs, each a separate "
            f"process with its own nats-server, sharing work; {self.events} profile updates "
            "each\n"
            f"data folders in {escape(str(self.root))} ({where})\n"
        )
        try:
            try:
                await self._federate()
            finally:
                stopping = time.monotonic()
                stopped, killed = await self._stop_nodes()
            how = f"SIGTERM; {killed} killed" if killed else "SIGTERM"
            out.print(f"7. stopped {stopped} nodes ({how}): {_seconds(stopping)}")
            await self._audit()
        finally:
            await self._close_logs()
        out.print(f"\ndemo finished in {_seconds(started)}")

    async def _federate(self) -> None:
        out = self.out
        await self._create_hubs()
        step = time.monotonic()
        await self._start_nodes()
        await self._until(self._cluster_formed, START_TIMEOUT, "the nodes joining one cluster")
        out.print(
            f"1. started {self.count} nodes (`hubnode run`); their nats-servers formed one "
            f"cluster: {_seconds(step)}"
        )

        step = time.monotonic()
        await self._register_and_admit()
        frontier = await self._own_heads()
        await self._until(lambda: self._all_hold(frontier), TRUST_TIMEOUT, "trust between all hubs")
        out.print(
            f"2. each hub registered; {escape(self.hubs[0].name)} admitted the other "
            f"{self.count - 1}; every hub now trusts all {self.count}: {_seconds(step)}"
        )

        first, *later = steps([h.folder.hub for h in self.hubs])
        step = time.monotonic()
        await asyncio.gather(self._append_profile_updates(), self._append_step(first))
        out.print(
            f"3. appended {self.events} profile updates at each hub in bursts of "
            f"{min(BURST, self.events)} concurrent appends (one group commit per burst); and "
            f"the shared work began: {self._said(first)}: {_seconds(step)}"
        )
        step = time.monotonic()
        frontier = await self._own_heads()
        await self._converge(frontier)
        total = sum(head.seq for head in frontier.values())
        out.print(f"   every hub holds all {total} events: {_seconds(step)}")

        out.print("4. the shared work, each step appended once every hub holds the one before:")
        for shared in later:
            step = time.monotonic()
            await self._append_step(shared)
            frontier = await self._own_heads()
            held = functools.partial(self._all_hold, frontier)
            await self._until(held, CONVERGE_TIMEOUT, "convergence")
            out.print(f"   {self._said(shared)}: every hub holds it after {_seconds(step)}")
        total = sum(head.seq for head in frontier.values())
        out.print(f"   every hub holds all {total} events\n")
        await self._print_table(frontier)
        await self._show_views()

    # -- hubs and nodes -----------------------------------------------------------------

    async def _create_hubs(self) -> None:
        ports = _free_ports(2 * self.count)
        client, cluster = ports[: self.count], ports[self.count :]
        for i, profile in enumerate(PROFILES[: self.count]):
            folder = HubFolder.init(self.root / f"hub{i + 1}", name=profile.name, network=NETWORK)
            routes = tuple(
                f"nats-route://127.0.0.1:{port}" for j, port in enumerate(cluster) if j != i
            )
            embedded = EmbeddedNats(port=client[i], cluster_port=cluster[i], routes=routes)
            folder.config = msgspec.structs.replace(folder.config, embedded=embedded)
            folder.save_config()
            if self.hubs:
                # Trust bootstraps from the founder: every hub trusts hub 1, hub 1 admits them.
                founder = self.hubs[0]
                folder.add_trusted(founder.folder.hub, founder.name)
            self.hubs.append(_Hub(i + 1, profile, folder, await folder.open_log()))

    async def _start_nodes(self) -> None:
        command = _hubnode_command()
        for hub in self.hubs:
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

    async def _stop_nodes(self) -> tuple[int, int]:
        """SIGTERM every node, wait, SIGKILL what is left; then any orphaned nats-server.

        Returns how many nodes were stopped and how many of them had to be killed.
        """
        running = [h for h in self.hubs if h.proc is not None and h.proc.returncode is None]
        for hub in running:
            assert hub.proc is not None
            with contextlib.suppress(ProcessLookupError):
                hub.proc.send_signal(signal.SIGTERM)

        async def reap(hub: _Hub) -> bool:
            assert hub.proc is not None
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await hub.proc.wait()
                return False
            except TimeoutError:
                self.out.print(
                    f"   the node of {escape(hub.name)} did not stop within "
                    f"{STOP_TIMEOUT:.0f} s of SIGTERM; killing it"
                )
                with contextlib.suppress(ProcessLookupError):
                    hub.proc.kill()
                await hub.proc.wait()
                return True

        killed = await asyncio.gather(*(reap(h) for h in running))
        for hub in self.hubs:
            _kill_orphaned_servers(hub.folder.path)
        return len(running), sum(killed)

    async def _close_logs(self) -> None:
        for hub in self.hubs:
            await hub.log.close()

    def _check_alive(self) -> None:
        for hub in self.hubs:
            if hub.proc is not None and hub.proc.returncode is not None:
                raise DemoError(
                    f"the node of {hub.name} ({hub.folder.path}) exited with code "
                    f"{hub.proc.returncode}; {hub.node_log} ends:\n{_tail(hub.node_log)}"
                )

    async def _until(self, done: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
        """Poll ``done`` every POLL seconds; a clear error with the nodes' logs on timeout."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    self._check_alive()
                    if await done():
                        return
                    # The nodes change the logs from other processes: nothing to wait on.
                    await asyncio.sleep(POLL)
        except TimeoutError:
            raise DemoError(
                f"no {what} within {seconds:.0f} s. Events held and node logs:\n"
                + "\n".join([await self._describe(h) for h in self.hubs])
            ) from None

    async def _describe(self, hub: _Hub) -> str:
        heads = await hub.log.heads()
        held = ", ".join(f"{short_hub(h)} {head.seq}" for h, head in sorted(heads.items()))
        return (
            f"  hub{hub.number} {hub.name} holds {held or 'nothing'}; "
            f"{hub.node_log} ends:\n{_tail(hub.node_log)}"
        )

    async def _cluster_formed(self) -> bool:
        """Every node runs and is connected; hubs 2… have heard hub 1 over the cluster."""
        founder = hub_display(self.hubs[0].folder.hub)
        for hub in self.hubs:
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

    # -- events -------------------------------------------------------------------------

    async def _register_and_admit(self) -> None:
        async def register(hub: _Hub) -> None:
            p = hub.profile
            with Keyring.open(hub.folder) as ring:  # others seal people's data keys to it
                seal_key = ring.seal_key.public
            body = HubRegistered(
                name=p.name, roles=p.roles, area=p.area, contact=p.contact, seal_key=seal_key
            )
            await hub.log.append("hub.registered", body)

        await asyncio.gather(*(register(h) for h in self.hubs))
        founder, *others = self.hubs
        await founder.log.append_many(
            [
                (
                    "hub.admitted",
                    HubAdmitted(
                        hub=hub_display(o.folder.hub),
                        name=o.name,
                        note=f"known partner serving {o.profile.area}",
                    ),
                )
                for o in others
            ]
        )

    async def _append_profile_updates(self) -> None:
        async def append(hub: _Hub) -> None:
            for start in range(0, self.events, BURST):
                burst = range(start + 1, min(start + BURST, self.events) + 1)
                await asyncio.gather(
                    *(hub.log.append("hub.profile_updated", _update(hub.profile, n)) for n in burst)
                )

        await asyncio.gather(*(append(h) for h in self.hubs))

    async def _append_step(self, shared: Step) -> None:
        """Append one step of the shared work: each hub's events in order, hubs at once."""

        async def append(hub: _Hub) -> None:
            items = [(a.kind, a.body) for a in shared.appends if a.hub == hub.number - 1]
            if items:
                await hub.log.append_many(items)

        await asyncio.gather(*(append(h) for h in self.hubs))

    def _said(self, shared: Step) -> str:
        return escape(shared.what.format(*(h.name for h in self.hubs)))

    async def _own_heads(self) -> dict[bytes, Head]:
        """Every hub's head as its own log holds it: what all logs must converge to."""
        heads = {}
        for hub in self.hubs:
            head = await hub.log.head(hub.folder.hub)
            assert head is not None, "every hub has appended by now"
            heads[hub.folder.hub] = head
        return heads

    async def _all_hold(self, frontier: dict[bytes, Head]) -> bool:
        for hub in self.hubs:
            heads = await hub.log.heads()
            if any(heads.get(h) != head for h, head in frontier.items()):
                return False
        return True

    async def _converge(self, frontier: dict[bytes, Head]) -> None:
        """Wait until every log holds exactly ``frontier``, showing events held per hub."""
        total = sum(head.seq for head in frontier.values())
        started = time.monotonic()
        done: set[int] = set()
        with self._progress(total) as show:

            async def converged() -> bool:
                counts = [await h.log.count() for h in self.hubs]
                show(counts)
                complete = await self._all_hold(frontier)
                for hub, held in zip(self.hubs, counts, strict=True):
                    if held == total and hub.number not in done and not self.out.is_terminal:
                        done.add(hub.number)
                        self.out.print(
                            f"   {escape(hub.name)} holds all {total} events ({_seconds(started)})"
                        )
                return complete

            # Every hub verifies and stores every other hub's events: allow for the volume.
            timeout = CONVERGE_TIMEOUT + self.count * total / 4000
            await self._until(converged, timeout, "convergence")

    @contextlib.contextmanager
    def _progress(self, total: int) -> Iterator[Callable[[list[int]], None]]:
        """A bar per hub (events held / expected) on a terminal; nothing when piped."""
        if not self.out.is_terminal:
            yield lambda counts: None
            return
        columns = (
            TextColumn("   {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("events"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.out, transient=True) as bar:
            tasks = [bar.add_task(escape(h.name), total=total) for h in self.hubs]

            def show(counts: list[int]) -> None:
                for task, held in zip(tasks, counts, strict=True):
                    bar.update(task, completed=held)

            yield show

    # -- results ------------------------------------------------------------------------

    async def _print_table(self, frontier: dict[bytes, Head]) -> None:
        table = Table("hub", "hub id", "events held", "same heads", "forks")
        for hub in self.hubs:
            same = await hub.log.heads() == frontier
            table.add_row(
                escape(hub.name),
                short_hub(hub.folder.hub) + "…",
                str(await hub.log.count()),
                "[green]✔[/]" if same else "[red]✘[/]",
                str(len(await hub.log.forks())),
            )
        self.out.print(table)
        first, last = self.hubs[0].folder.path, self.hubs[-1].folder.path
        self.out.print(
            f"data folders: {escape(str(first))} … {last.name}, the node's output in "
            f"{NODE_LOG} in each\n"
        )

    async def _show_views(self) -> None:
        """Build every hub's views from its own log; show their hashes and what they hold."""
        step = time.monotonic()
        runners: list[ProjectionRunner] = []
        try:
            for hub in self.hubs:
                runner = projection_runner(hub.folder)
                runners.append(runner)
                await asyncio.to_thread(runner.catch_up)
            names = list(runners[0].projections)
            hashes = [{name: r.hash(name) for name in names} for r in runners]
            table = Table("hub", *names)
            for hub, hashed in zip(self.hubs, hashes, strict=True):
                table.add_row(escape(hub.name), *(hashed[name][:12] + "…" for name in names))
            same = all(h == hashes[0] for h in hashes)
            verdict = "identical on every hub" if same else "[bold red]NOT identical[/]"
            self.out.print(
                f"5. every hub's views, built from its own log (projection hashes): {verdict}: "
                f"{_seconds(step)}"
            )
            self.out.print(table)
            if not same:
                raise DemoError("the hubs hold the same events but their views differ")
            reader = self.hubs[2]
            self.out.print(
                f"6. what the views show, read at {escape(reader.name)} (hub {reader.number}), "
                "which published no service:"
            )
            for line in view_lines(runners[2], {h.folder.hub: h.name for h in self.hubs}):
                self.out.print("   " + line, markup=False)
            self.out.print()
        finally:
            for runner in runners:
                runner.close()

    async def _audit(self) -> None:
        hub = self.hubs[0]
        path = self.root / f"hub{hub.number}.hublog"
        with open(path, "wb") as f:
            writer = HublogWriter(f)
            async for raw in hub.log.export_records():
                writer.write(raw)
        report = audit_file(path)
        verdict = "[green]verified[/]" if report.ok() else "[bold red]FAILED[/]"
        self.out.print(
            f"8. {escape(hub.name)} exported its log to {path.name}: {report.records} records of "
            f"{len(report.hubs)} hubs; every signature, chain link and seq — {verdict}"
        )
        if not report.ok():
            raise DemoError(f"the audit of {path} failed: {report.failures[:1]}")

        # Tampering is caught: change one bit of one record and audit again.
        data = bytearray(path.read_bytes())
        data[-10] ^= 0x01
        tampered = self.root / "tampered.hublog"
        tampered.write_bytes(bytes(data))
        report = audit_file(tampered)
        verdict = "verified" if report.ok() else "FAILED"
        self.out.print(f"9. one flipped bit in {tampered.name}: audit {verdict}")
        if report.failures:
            self.out.print(f"   first bad record: {report.failures[0]}", markup=False)


def _update(profile: Profile, n: int) -> HubProfileUpdated:
    """The ``n``-th profile update of a hub: its drop-in rota, week after week."""
    if n % 10 == 0:
        return HubProfileUpdated(contact=f"duty-desk-{n // 10}@{profile.contact.split('@')[1]}")
    return HubProfileUpdated(area=f"{profile.area} (drop-in rota, week {n})")


def _kill_orphaned_servers(folder: Path) -> None:
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
