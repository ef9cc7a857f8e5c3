"""A network split in two halves, each writing on its own, then healed: time to converge.

    .venv/bin/python bench/partition.py [--quick]

20 hubs (8 with ``--quick``), each a ``hubnode run`` process on 127.0.0.1 with the default
config (heads every 2 s). Two nats-servers form one NATS cluster: hubs 0-9 connect to the
first, hubs 10-19 to the second, and the second has a route to the first. Each hub's
``hub.registered`` event reaches every node; then the route is removed (the second
server's config is rewritten and reloaded with SIGHUP, as an operator would): the halves
are cut off from each other, and the nodes keep running. This process appends 499 events
to every hub's log (500 in all per hub; 100 with ``--quick``) and waits until each half
has converged on its own side. Then the route is restored the same way (SIGHUP) and the
clock starts: ``converge_s`` is the time until all 20 logs hold identical heads, every hub
at its last seq. Each node then lacks the other half's 10 x 499 events; it learns of them
from the next heads announcements it hears across the route and fetches them.

The cycle (cut, 499 more events per hub, heal) runs three times (once with ``--quick``);
the median is reported. Reference from the same run: the CPU floor, i.e. the signature
checks the heal requires (every node verifies every record it lacks) at this machine's
single-thread verify rate, spread over every core.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from _common import KIND, emit, print_machine, profile_body, progress, table  # noqa: E402

from hubnode import HubFolder  # noqa: E402
from hubnode.config import EmbeddedNats  # noqa: E402
from hubnode.events.verify import verify_record  # noqa: E402
from hubnode.protocol.natsd import EmbeddedServer, render_config  # noqa: E402
from tests.cluster import Cluster, free_port  # noqa: E402
from tests.conftest import NET  # noqa: E402

HEADS_INTERVAL: Final = 2.0
"""The default config's heads period: how soon a node hears of the other half."""
POLL: Final = 0.05
"""Seconds between this process's checks of the 20 logs' heads."""
TARGET_S: Final = 10.0
TICKS: Final = os.sysconf("SC_CLK_TCK")
COUNTED: Final = ("fetched", "duplicates", "fetch_failures", "accepted", "slow_consumer")
RELOADED: Final = "Reloaded server configuration"
START_AT_ONCE: Final = 4
"""Nodes started concurrently (Python start-up is CPU-bound on 2 cores)."""


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


class Heads:
    """Every hub's head (seq, id) in every log, read with direct read-only SQLite queries
    (one index seek per hub and log: ~2.5 ms for all 20 x 20)."""

    def __init__(self, folders: list[HubFolder]) -> None:
        self.hubs = [f.hub for f in folders]
        self._dbs = [sqlite3.connect(f"file:{f.log_path}?mode=ro", uri=True) for f in folders]

    def of(self, i: int) -> list[tuple[int, bytes]]:
        out = []
        for hub in self.hubs:
            row = (
                self._dbs[i]
                .execute(
                    "SELECT seq, id FROM events WHERE hub = ? ORDER BY seq DESC LIMIT 1", (hub,)
                )
                .fetchone()
            )
            out.append((int(row[0]), bytes(row[1])) if row else (0, b""))
        return out

    def seqs(self, i: int) -> list[int]:
        return [seq for seq, _ in self.of(i)]

    def holds(self, logs: range, want: list[int]) -> bool:
        """Every log in ``logs`` holds exactly seq ``want[h]`` of each hub ``h``."""
        return all(self.seqs(i) == want for i in logs)

    def holds_all(self, expected: list[tuple[range, list[int]]]) -> bool:
        return all(self.holds(logs, want) for logs, want in expected)

    def identical(self, want: list[int]) -> bool:
        """All logs hold the same heads, and those are ``want``."""
        first = self.of(0)
        return [s for s, _ in first] == want and all(
            self.of(i) == first for i in range(1, len(self._dbs))
        )

    def converged(self, want: list[int]) -> Callable[[], bool]:
        """A check that every log holds ``want``, then that all heads are identical.

        Cheap to call often: it reads again only the (log, hub) pairs not yet at their
        seq. Nothing is appended meanwhile, so a pair that got there stays there.
        """
        todo = {(i, h) for i in range(len(self._dbs)) for h in range(len(self.hubs))}

        def check() -> bool:
            for i, h in sorted(todo):
                row = (
                    self._dbs[i]
                    .execute(
                        "SELECT MAX(seq) FROM events WHERE hub = ?",
                        (self.hubs[h],),
                    )
                    .fetchone()
                )
                if row[0] == want[h]:
                    todo.discard((i, h))
            return not todo and self.identical(want)

        return check

    def close(self) -> None:
        for db in self._dbs:
            db.close()


class Servers:
    """Two nats-servers in one cluster; the second's route to the first can be cut and
    restored by rewriting its config and sending SIGHUP (a config reload)."""

    def __init__(self, root: Path) -> None:
        self.ports = (free_port(), free_port())
        self.route = f"nats-route://127.0.0.1:{self.ports[0]}"
        self.servers = [
            EmbeddedServer(
                root / f"nats{i}",
                self._settings(i, routed=i == 1),
                server_name=f"bench-nats-{i}",
                cluster_name="bench",
            )
            for i in (0, 1)
        ]
        self.urls: list[str] = []

    def _settings(self, i: int, *, routed: bool) -> EmbeddedNats:
        return EmbeddedNats(cluster_port=self.ports[i], routes=(self.route,) if routed else ())

    async def start(self) -> list[str]:
        for server in self.servers:
            self.urls.append(await server.start())
        # Fix the client ports, so that a reload does not move them.
        for i, url in enumerate(self.urls):
            port = int(url.rsplit(":", 1)[1])
            self.servers[i].settings = EmbeddedNats(
                port=port, cluster_port=self.ports[i], routes=self.servers[i].settings.routes
            )
        return self.urls

    async def set_route(self, routed: bool) -> None:
        """Rewrite the second server's config with or without its route, reload it and
        wait until its log says the reload is done (a removed route is closed by then)."""
        server = self.servers[1]
        log = server.workdir / "nats-server.log"
        reloads = log.read_text(errors="replace").count(RELOADED)
        server.settings = EmbeddedNats(
            port=server.settings.port,
            cluster_port=self.ports[1],
            routes=(self.route,) if routed else (),
        )
        conf = server.workdir / "nats-server.conf"
        conf.write_text(
            render_config(
                server.settings, server_name=server.server_name, cluster_name=server.cluster_name
            )
        )
        assert server.pid is not None
        os.kill(server.pid, signal.SIGHUP)
        await until(
            lambda: log.read_text(errors="replace").count(RELOADED) > reloads,
            10,
            "the nats-server to reload its config",
            poll=0.005,
        )

    def pids(self) -> list[int | None]:
        return [s.pid for s in self.servers]

    async def stop(self) -> None:
        for server in self.servers:
            await server.stop()


async def until(predicate: Any, within: float, what: str, poll: float = POLL) -> float:
    """Poll ``predicate`` until true; the perf_counter time it was first seen true."""
    try:
        async with asyncio.timeout(within):
            while True:
                if predicate():
                    return time.perf_counter()
                await asyncio.sleep(poll)  # the polling period itself
    except TimeoutError:
        raise TimeoutError(f"timed out after {within:.0f} s waiting for {what}") from None


def statuses_after(cluster: Cluster, wall: float) -> bool:
    """Every node has written a status file after wall time ``wall``."""
    return all((n.current_status().get("updated_at") or 0) > wall for n in cluster.nodes.values())


async def counters(cluster: Cluster) -> dict[str, int]:
    """The nodes' counters summed, from status files written after this call."""
    wall = time.time()  # status files are rewritten every second: wait for newer ones
    await until(partial(statuses_after, cluster, wall), 10, "fresh status files", poll=0.1)
    return {
        key: sum(int(n.counters().get(key, 0)) for n in cluster.nodes.values()) for key in COUNTED
    }


def verify_floor_us(records: list[bytes]) -> float:
    """CPU microseconds per ``verify_record`` on one thread (the node's per-record check);
    CPU time, not wall time, so that other work on the machine does not inflate it."""
    t0 = time.thread_time()
    for raw in records:
        verify_record(raw, net=NET)
    return (time.thread_time() - t0) / len(records) * 1e6


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    hubs, per_hub, cycles = (8, 100, 1) if args.quick else (20, 500, 3)
    cycles = args.cycles or cycles
    half = hubs // 2
    cluster = Cluster(root)
    servers = Servers(root)
    heads: Heads | None = None
    results: list[dict[str, float]] = []
    floor_us = 0.0
    try:
        urls = await servers.start()
        folders = cluster.hubs(*[f"hub{i:02d}" for i in range(hubs)], heads_interval=HEADS_INTERVAL)
        for f in folders:
            await cluster.append(f, 1)  # hub.registered
        progress(f"starting {hubs} nodes: {half} on {urls[0]}, {hubs - half} on {urls[1]}")
        gate = asyncio.Semaphore(START_AT_ONCE)

        async def start(i: int, f: HubFolder) -> None:
            async with gate:
                await cluster.start(f, nats_url=urls[0 if i < half else 1])

        t0 = time.perf_counter()
        await asyncio.gather(*(start(i, f) for i, f in enumerate(folders)))
        progress(f"  all connected in {time.perf_counter() - t0:.1f} s")
        heads = Heads(folders)
        seq = [1] * hubs
        everyone = range(hubs)
        await until(lambda: heads.holds(everyone, seq), 120, "every hub.registered everywhere")
        pids = {name: node.pid for name, node in cluster.nodes.items()}

        for cycle in range(cycles):
            await servers.set_route(False)
            progress(f"cycle {cycle + 1}/{cycles}: cut; appending {per_hub - 1} events per hub")
            before = list(seq)
            # Appended while cut off: each half gossips its own; nothing crosses.
            for i, f in enumerate(folders):
                writer = await cluster.writer(f)
                items = [(KIND, profile_body(i, seq[i] + k)) for k in range(1, per_hub)]
                for start_ in range(0, len(items), 1000):
                    await writer.append_many(items[start_ : start_ + 1000])
                seq[i] += per_hub - 1
            first, second = range(half), range(half, hubs)
            want_first = seq[:half] + before[half:]
            want_second = before[:half] + seq[half:]
            t_cut = time.perf_counter()
            await until(
                partial(heads.holds_all, [(first, want_first), (second, want_second)]),
                300,
                "each half to converge on its own",
                poll=0.2,
            )
            halves_s = time.perf_counter() - t_cut
            # Still cut off: nothing of the other half arrived.
            assert heads.holds_all([(first, want_first), (second, want_second)])
            if not floor_us:
                sample = await (await cluster.reader(folders[0])).records(
                    folders[0].hub, 2, limit=2000
                )
                floor_us = verify_floor_us(sample)

            before_heal = await counters(cluster)
            cpu0 = {n: cpu_s(p) for n, p in pids.items()}
            srv0 = sum(cpu_s(p) for p in servers.pids())
            progress("  heal: route restored")
            t_heal = time.perf_counter()
            await servers.set_route(True)
            t_done = await until(heads.converged(seq), 120, "all logs to converge")
            converge = t_done - t_heal
            cpu = sum(cpu_s(p) - cpu0[n] for n, p in pids.items())
            srv = sum(cpu_s(p) for p in servers.pids()) - srv0
            after_heal = await counters(cluster)
            delta = {k: after_heal[k] - before_heal[k] for k in COUNTED}
            missing = 2 * half * (hubs - half) * (per_hub - 1)
            results.append(
                {
                    "converge_s": converge,
                    "halves_s": halves_s,
                    "cpu_s": cpu,
                    "server_cpu_s": srv,
                    "missing": missing,
                    **delta,
                }
            )
            progress(
                f"  converged {converge:.2f} s after the heal; fetched {delta['fetched']:,} "
                f"records (missing {missing:,}), duplicates {delta['duplicates']:,}, "
                f"failed fetches {delta['fetch_failures']}; node CPU {cpu:.1f} s"
            )
    finally:
        if heads is not None:
            heads.close()
        codes = await cluster.close()
        await servers.stop()
    bad = {n: c for n, c in codes.items() if any(c)}
    if bad:
        progress(f"warning: nodes that did not exit 0: {bad}")

    cores = os.cpu_count() or 1
    mid = sorted(results, key=lambda r: r["converge_s"])[len(results) // 2]
    floor_s = mid["missing"] * floor_us / 1e6 / cores
    table(
        f"Heal of a split: {hubs} hubs in two halves, {per_hub} events per hub appended "
        f"during each cut, median of {cycles} cycle(s)",
        ["what", "seconds", "CPU s", "records"],
        [
            [
                "heal -> identical heads in every log (converge_s)",
                mid["converge_s"],
                mid["cpu_s"],
                mid["fetched"],
            ],
            ["  (each half converging on its own side first)", mid["halves_s"], "", ""],
            [
                f"reference: CPU floor, verify what each node lacks on {cores} cores",
                floor_s,
                floor_s * cores,
                mid["missing"],
            ],
        ],
    )
    print(
        "all cycles, converge_s: "
        + ", ".join(f"{r['converge_s']:.2f}" for r in results)
        + f"; in the median heal: {mid['duplicates']:,} duplicates received, "
        f"{mid['fetch_failures']} failed fetches, {mid['slow_consumer']} slow-consumer drops"
        + f"; heads every {HEADS_INTERVAL:.0f} s; verify_record {floor_us:.1f} µs/record on "
        f"1 thread; nats-servers' CPU during the median heal {mid['server_cpu_s']:.2f} s; "
        f"this process polls the logs every {POLL * 1000:.0f} ms"
    )
    ok = mid["converge_s"] < TARGET_S
    print(f"\ntarget converge < {TARGET_S:.0f} s: {'met' if ok else 'MISSED'}")
    return {
        "bench": "partition",
        "quick": args.quick,
        "hubs": hubs,
        "events_per_hub_per_cut": per_hub,
        "cycles": cycles,
        "converge_s": round(mid["converge_s"], 2),
        "converge_runs_s": [round(r["converge_s"], 2) for r in results],
        "records_fetched": mid["fetched"],
        "records_missing": mid["missing"],
        "duplicates": mid["duplicates"],
        "fetch_failures": mid["fetch_failures"],
        "slow_consumer": mid["slow_consumer"],
        "node_cpu_s": round(mid["cpu_s"], 1),
        "cpu_floor_s": round(floor_s, 2),
        "verify_us": round(floor_us, 1),
        "heads_interval_s": HEADS_INTERVAL,
        "cores": cores,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 hubs, 100 events, one cycle")
    parser.add_argument("--cycles", type=int, help="cut/heal cycles (default 3, quick 1)")
    args = parser.parse_args()
    print_machine()

    async def guarded() -> dict[str, Any]:
        # SIGTERM/SIGINT cancel the run, so `finally` stops every node and both servers.
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with tempfile.TemporaryDirectory(prefix="hubnode-bench-partition-") as tmp:
            return await run(args, Path(tmp))

    emit(asyncio.run(guarded()))


if __name__ == "__main__":
    main()
