"""``make demo``: hubs of the Darlington network federate over one NATS cluster.

Each hub is a separate OS process (``hubnode run``) with its own data folder and its own
embedded nats-server; the servers join one cluster through routes. The hubs register,
the first hub admits the others (so every hub comes to trust every other). Then the hubs
share work, step by step (``hubnode/demo_scenario.py``): services published at two hubs,
a skills offer and request, a confirmed time-credit transfer, a tender with a cluster of
three hubs, its lots and bid, and ratings of a service; each hub also appends profile
updates in bulk. Then two people's pathways (``hubnode/demo_pathway.py``): enquiries,
consent, referrals, an outcome, a follow-up and an advocacy case, and an erasure — and
which hub can read whom. The demo watches the logs converge, then builds every hub's views
from its own log and shows that their hashes are identical, and a few lines of each view.
Then one hub's export is audited and a tampered copy of it fails the audit. The node
processes are :mod:`hubnode.demo_nodes`.

The demo process appends through each hub's own log file (the log is safe for several
processes: the node picks the new events up and gossips them), and reads every log to
watch progress. No step waits a fixed time: each polls the logs within a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Final

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hubnode.audit import audit_file
from hubnode.casework import Casework
from hubnode.config import EmbeddedNats, HubFolder
from hubnode.demo_nodes import (
    NODE_LOG,
    DemoError,
    DemoHub,
    check_alive,
    cluster_formed,
    free_ports,
    start_nodes,
    stop_nodes,
    tail,
)
from hubnode.demo_pathway import PathwayStory
from hubnode.demo_scenario import (
    MIN_HUBS,
    PROFILES,
    Step,
    profile_update,
    steps,
    view_lines,
)
from hubnode.events.ids import hub_display, short_hub
from hubnode.events.network import HubAdmitted, HubRegistered
from hubnode.hublog import HublogWriter
from hubnode.node import projection_runner
from hubnode.privacy.keyring import Keyring
from hubnode.projections.runner import ProjectionRunner
from hubnode.store.log import Head

NETWORK: Final = "darlington-csn"
POLL: Final = 0.05
"""Seconds between two reads of the logs while waiting for the nodes. A step converges in
tens of milliseconds on one machine and a read of every hub's heads costs far less, so a
longer pause (it was 0.2 s) only added to each of the demo's dozen steps."""
START_TIMEOUT: Final = 20.0
TRUST_TIMEOUT: Final = 20.0
CONVERGE_TIMEOUT: Final = 30.0
BURST: Final = 25
"""Appends issued at once; the log commits each burst as one transaction."""
MAX_HUBS: Final = len(PROFILES)

__all__ = ["MAX_HUBS", "NETWORK", "PROFILES", "DemoError", "run_demo"]


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


def _seconds(start: float) -> str:
    return f"{time.monotonic() - start:.1f} s"


class _Demo:
    def __init__(self, root: Path, out: Console, hubs: int, events: int, *, kept: bool) -> None:
        self.root = root
        self.out = out
        self.count = hubs
        self.events = events
        self.kept = kept
        self.hubs: list[DemoHub] = []

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
                stopped, killed = await stop_nodes(self.hubs, self.out)
            how = f"SIGTERM; {killed} killed" if killed else "SIGTERM"
            out.print(f"8. stopped {stopped} nodes ({how}): {_seconds(stopping)}")
            await self._audit()
        finally:
            await self._close_logs()
        out.print(f"\ndemo finished in {_seconds(started)}")

    async def _federate(self) -> None:
        out = self.out
        await self._create_hubs()
        step = time.monotonic()
        await start_nodes(self.hubs)
        formed = functools.partial(cluster_formed, self.hubs)
        await self._until(formed, START_TIMEOUT, "the nodes joining one cluster")
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

        await self._pathway()
        frontier = await self._own_heads()  # the nodes append no more: erasures confirmed
        total = sum(head.seq for head in frontier.values())
        out.print(f"   every hub holds all {total} events\n")
        await self._print_table(frontier)
        await self._show_views()

    # -- hubs and nodes -----------------------------------------------------------------

    async def _create_hubs(self) -> None:
        ports = free_ports(2 * self.count)
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
            self.hubs.append(DemoHub(i + 1, profile, folder, await folder.open_log()))

    async def _close_logs(self) -> None:
        for hub in self.hubs:
            await hub.log.close()

    async def _until(self, done: Callable[[], Awaitable[bool]], seconds: float, what: str) -> None:
        """Poll ``done`` every POLL seconds; a clear error with the nodes' logs on timeout."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    check_alive(self.hubs)
                    if await done():
                        return
                    # The nodes change the logs from other processes: nothing to wait on.
                    await asyncio.sleep(POLL)
        except TimeoutError:
            raise DemoError(
                f"no {what} within {seconds:.0f} s. Events held and node logs:\n"
                + "\n".join([await self._describe(h) for h in self.hubs])
            ) from None

    async def _describe(self, hub: DemoHub) -> str:
        heads = await hub.log.heads()
        held = ", ".join(f"{short_hub(h)} {head.seq}" for h, head in sorted(heads.items()))
        return (
            f"  hub{hub.number} {hub.name} holds {held or 'nothing'}; "
            f"{hub.node_log} ends:\n{tail(hub.node_log)}"
        )

    # -- events -------------------------------------------------------------------------

    async def _register_and_admit(self) -> None:
        async def register(hub: DemoHub) -> None:
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
        async def append(hub: DemoHub) -> None:
            for start in range(0, self.events, BURST):
                burst = range(start + 1, min(start + BURST, self.events) + 1)
                await asyncio.gather(
                    *(
                        hub.log.append("hub.profile_updated", profile_update(hub.profile, n))
                        for n in burst
                    )
                )

        await asyncio.gather(*(append(h) for h in self.hubs))

    async def _append_step(self, shared: Step) -> None:
        """Append one step of the shared work: each hub's events in order, hubs at once."""

        async def append(hub: DemoHub) -> None:
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
        """Every log holds ``frontier``: a head at or past it (a hub's events are stored in
        chain order, so that includes it; the nodes may have appended since)."""
        for hub in self.hubs:
            heads = await hub.log.heads()
            for h, head in frontier.items():
                held = heads.get(h)
                if held is None or held.seq < head.seq:
                    return False
        return True

    async def _settle(self, ready: Callable[[], Awaitable[bool]] | None, what: str) -> None:
        """Wait until ``ready`` (if given), then until every log holds every hub's latest
        own event, as the hubs' own logs say at that moment."""

        async def settled() -> bool:
            if ready is not None and not await ready():
                return False
            return await self._all_hold(await self._own_heads())

        await self._until(settled, CONVERGE_TIMEOUT, what)

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

    async def _pathway(self) -> None:
        """The pathway story (:mod:`hubnode.demo_pathway`) through each hub's casework.

        The nodes keep their keyrings (open key boxes, erasures), so the casework leaves
        them to it (``keep_keys=False``) and the story waits for what the nodes do.
        """
        self.out.print(
            f"5. two people come to {escape(self.hubs[0].name)}, a point of access, their "
            "details sealed to the hubs they agree to; each step goes through the actions "
            "the `hubnode enquiry`, `referral`, `followup`, `advocacy` and `person` commands use:"
        )
        with contextlib.ExitStack() as stack:
            hubs = []
            for hub in self.hubs:
                ring = stack.enter_context(Keyring.open(hub.folder))
                views = projection_runner(hub.folder)
                stack.callback(views.close)
                hubs.append((hub.name, Casework(hub.folder, hub.log, ring, views, keep_keys=False)))
            story = PathwayStory(hubs)
            for told in story.steps():
                step = time.monotonic()
                await told.act()
                await self._settle(told.ready, told.waiting_for)
                self.out.print(f"   {told.what}: every hub holds it after {_seconds(step)}")
            table, confirmations = await story.readers()
        self.out.print("   who can read what, as each hub's own keyring and views say:")
        self.out.print(table)
        for line in confirmations:
            self.out.print(f"   {line}")

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
                f"6. every hub's views, built from its own log (projection hashes): {verdict}: "
                f"{_seconds(step)}"
            )
            self.out.print(table)
            if not same:
                raise DemoError("the hubs hold the same events but their views differ")
            reader = self.hubs[2]
            self.out.print(
                f"7. what the views show, read at {escape(reader.name)} (hub {reader.number}), "
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
            f"9. {escape(hub.name)} exported its log to {path.name}: {report.records} records of "
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
        self.out.print(f"10. one flipped bit in {tampered.name}: audit {verdict}")
        if report.failures:
            self.out.print(f"   first bad record: {report.failures[0]}", markup=False)
