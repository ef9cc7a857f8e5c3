"""Gossip over NATS between real nodes: append-to-peer latency and A→B replication rate.

    .venv/bin/python bench/gossip.py [--quick]

One nats-server and 10 ``hubnode run`` processes on 127.0.0.1 (4 with ``--quick``), all
trusting each other, with the default config (heads every 2 s). This process appends to
hub A's log — as ``hubnode log append`` or any other local process would — and watches hub
B's log with a plain read-only SQLite query every millisecond. It also subscribes to the
network's ``ev`` subject with nats-py, so each sample splits into two parts:

- **to the bus**: from A's append being durable until A's node has published the event
  (it notices appends made by other processes by checking its log; see ``publish_poll``);
- **bus to B's log**: from the message on the bus until B has verified and stored it.

The figures: ``p50_ms`` and ``p99_ms`` of the whole (append durable → in B's log, which
includes up to 1 ms of this process's polling), and of both parts; the reference is raw
nats-py publish → subscriber callback for a message of the same size on the same server.

Then the other nodes are stopped and A→B throughput is measured: ``replicate_per_s`` is
events appended at A (``append_many``, 1,000 per call, from this process) divided by the
time from the first append until B's log holds them all. Beside it, in the same run: the
rate of the appends alone, and raw nats-py pub/sub throughput replaying the very payloads
A's node published (the ceiling for the transport), and with one record per message. Each
run also reports the CPU time of A's node, B's node and the appends, how busy the whole
machine was (``/proc/stat``) and the CPU time other processes took meanwhile: on a shared
machine, that says whether a slow run was this work or its neighbours.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import nats  # noqa: E402
from _common import KIND, emit, median, print_machine, profile_body, progress, table  # noqa: E402
from nats.aio.msg import Msg  # noqa: E402

from hubnode import EventLog, HubFolder  # noqa: E402
from hubnode.events.envelope import event_id  # noqa: E402
from hubnode.protocol import messages as m  # noqa: E402
from hubnode.protocol.transport import PUBLISH_POLL  # noqa: E402
from tests.cluster import Cluster, wait_until  # noqa: E402
from tests.conftest import NET  # noqa: E402

HEADS_INTERVAL: Final = 2.0
"""The default; the live ``ev`` path does not depend on it."""
POLL: Final = 0.001
"""Seconds between this process's checks of B's log in the latency samples."""
IDLE_S: Final = 5.0
"""Seconds of no appends over which the nodes' idle CPU is measured."""
TARGET_P99_MS: Final = 50.0
TARGET_REPLICATE: Final = 10_000.0
TICKS: Final = os.sysconf("SC_CLK_TCK")


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / TICKS, sum(fields) / TICKS


def cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` so far (0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


class HeadProbe:
    """One hub's head seq in a node's log, read with a direct read-only SQLite query.

    Plain ``sqlite3`` on this thread (~20-50 µs a query) instead of ``EventLog`` on
    aiosqlite's thread, so that polling every millisecond stays cheap and precise.
    """

    def __init__(self, folder: HubFolder, hub: bytes) -> None:
        self._db = sqlite3.connect(f"file:{folder.log_path}?mode=ro", uri=True)
        self._db.execute("PRAGMA query_only=1")
        self._hub = hub

    def seq(self) -> int:
        row = self._db.execute(
            "SELECT seq FROM events WHERE hub = ? ORDER BY seq DESC LIMIT 1", (self._hub,)
        ).fetchone()
        return int(row[0]) if row else 0

    async def wait(self, seq: int, within: float, poll: float) -> float:
        """Poll until the log holds ``seq``; the perf_counter time it was first seen."""
        async with asyncio.timeout(within):
            while True:
                if self.seq() >= seq:
                    return time.perf_counter()
                await asyncio.sleep(poll)  # the polling period itself

    def close(self) -> None:
        self._db.close()


@dataclass
class BusWatch:
    """A nats-py subscriber on ``ev``: when each record (by id) was first seen on the bus."""

    seen: dict[bytes, float] = field(default_factory=dict)
    payloads: list[bytes] = field(default_factory=list)
    keep: bool = False

    async def on_msg(self, msg: Msg) -> None:
        now = time.perf_counter()
        if self.keep:  # replication: keep the payloads, spare this process the hashing
            self.payloads.append(msg.data)
            return
        for raw in m.records_decoder.decode(msg.data):
            self.seen.setdefault(event_id(raw), now)


def pct(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def ms(values: Iterable[float]) -> list[float]:
    return [v * 1000 for v in values]


# -- latency ------------------------------------------------------------------------------


async def latency(
    writer: EventLog, probe: HeadProbe, bus: BusWatch, samples: int
) -> dict[str, list[float]]:
    """``samples`` appends at A, each timed until it is in B's log, with random gaps between
    them so they do not fall in step with the node's own polling."""
    rng = random.Random(20261125)
    # Gaps spread over a whole polling period of A's node: otherwise each append lands just
    # after the poll that published the previous one and waits a full period.
    gap = max(0.05, PUBLISH_POLL)
    out: dict[str, list[float]] = {"total": [], "to_bus": [], "bus_to_b": [], "append": []}
    for i in range(samples):
        await asyncio.sleep(rng.uniform(0.0, gap))  # pacing between samples, not a wait
        t0 = time.perf_counter()
        appended = await writer.append(KIND, profile_body(0, i))
        t1 = time.perf_counter()
        t2 = await probe.wait(appended.seq, 10.0, POLL)
        on_bus = bus.seen.get(appended.id)
        if on_bus is None:  # the subscriber's callback can trail B's ingest by a hair
            await wait_until(lambda id_=appended.id: id_ in bus.seen, 5.0, "the bus watcher")
            on_bus = bus.seen[appended.id]
        out["append"].append(t1 - t0)
        out["total"].append(t2 - t1)
        out["to_bus"].append(on_bus - t1)
        out["bus_to_b"].append(t2 - on_bus)
        if (i + 1) % 50 == 0:
            progress(f"  {i + 1}/{samples} samples, p50 so far {median(ms(out['total'])):.1f} ms")
    return out


async def raw_latency(url: str, payload: bytes, samples: int) -> list[float]:
    """nats-py publish → subscriber callback (two connections) for ``payload``."""
    pub, sub = await nats.connect(url), await nats.connect(url)
    got: asyncio.Queue[float] = asyncio.Queue()

    async def on_msg(msg: Msg) -> None:
        got.put_nowait(time.perf_counter())

    try:
        await sub.subscribe("bench.raw.latency", cb=on_msg)
        await sub.flush()
        rng = random.Random(1)
        out = []
        for _ in range(samples):
            await asyncio.sleep(rng.uniform(0.0, 0.01))  # pacing between samples
            t0 = time.perf_counter()
            await pub.publish("bench.raw.latency", payload)
            await pub.flush()
            async with asyncio.timeout(5):
                out.append(await got.get() - t0)
        return out
    finally:
        await pub.close()
        await sub.close()


# -- throughput ---------------------------------------------------------------------------


@dataclass
class Replication:
    events: int
    append_s: float
    replicate_s: float
    messages: int
    node_cpu: dict[str, float]
    machine_busy: float
    """Share of all cores busy during the run, whoever used them."""
    others_cpu: float
    """CPU seconds used meanwhile by processes other than A's and B's nodes and this one."""
    load: float

    @property
    def per_s(self) -> float:
        return self.events / self.replicate_s


async def replicate(
    writer: EventLog,
    probe: HeadProbe,
    bus: BusWatch,
    events: int,
    pids: dict[str, int],
    first: int,
) -> Replication:
    """Append ``events`` at A from this process; time until B's log holds them all."""
    head = await writer.head(writer.hub)  # type: ignore[arg-type]
    target = (head.seq if head else 0) + events
    bodies = [(KIND, profile_body(0, first + i)) for i in range(events)]
    bus.payloads.clear()
    bus.keep = True
    load = os.getloadavg()[0]
    cpu0 = {name: cpu_s(pid) for name, pid in pids.items()}
    cpu0["bench"] = cpu_s(os.getpid())
    busy0, total0 = machine_cpu_s()
    t0 = time.perf_counter()
    for i in range(0, events, 1000):
        await writer.append_many(bodies[i : i + 1000])
    t1 = time.perf_counter()
    cpu1 = cpu_s(os.getpid())
    t2 = await probe.wait(target, 120.0, 0.005)
    busy1, total1 = machine_cpu_s()
    cpu = {name: cpu_s(pid) - cpu0[name] for name, pid in pids.items()}
    bench_all = cpu_s(os.getpid()) - cpu0["bench"]
    cpu["bench"] = cpu1 - cpu0["bench"]  # the appends: signing and storing
    bus.keep = False
    ours = cpu["A"] + cpu["B"] + bench_all
    return Replication(
        events,
        t1 - t0,
        t2 - t0,
        len(bus.payloads),
        cpu,
        machine_busy=(busy1 - busy0) / (total1 - total0),
        others_cpu=max(0.0, busy1 - busy0 - ours),
        load=load,
    )


async def raw_throughput(url: str, payloads: list[bytes]) -> tuple[float, int]:
    """Publish ``payloads`` on one connection as fast as nats-py goes; seconds from the
    first publish until a subscriber on a second connection has received the last one."""
    pub, sub = await nats.connect(url), await nats.connect(url)
    done = asyncio.Event()
    count = 0

    async def on_msg(msg: Msg) -> None:
        nonlocal count
        count += 1
        if count == len(payloads):
            done.set()

    try:
        await sub.subscribe(
            "bench.raw.throughput",
            cb=on_msg,
            pending_msgs_limit=len(payloads) + 1,
            pending_bytes_limit=sum(map(len, payloads)) + 1,
        )
        await sub.flush()
        t0 = time.perf_counter()
        for payload in payloads:
            await pub.publish("bench.raw.throughput", payload)
        await pub.flush()
        async with asyncio.timeout(120):
            await done.wait()
        return time.perf_counter() - t0, count
    finally:
        await pub.close()
        await sub.close()


# -- the run ------------------------------------------------------------------------------


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    hubs, samples, events, runs = (4, 50, 10_000, 1) if args.quick else (10, 200, 50_000, 3)
    cluster = Cluster(root)
    bus = BusWatch()
    watcher = None
    probe: HeadProbe | None = None
    try:
        url = await cluster.start_server()
        folders = cluster.hubs(*[f"hub{i:02d}" for i in range(hubs)], heads_interval=HEADS_INTERVAL)
        a, b = folders[0], folders[-1]
        for f in folders:
            await cluster.append(f, 1)  # hub.registered
        progress(f"starting {hubs} nodes on {url}")
        t0 = time.perf_counter()
        await asyncio.gather(*(cluster.start(f) for f in folders))
        progress(f"  all connected in {time.perf_counter() - t0:.1f} s")
        await cluster.wait_converged(folders, {f: 1 for f in folders}, within=60)

        watcher = await nats.connect(url)
        await watcher.subscribe(
            m.subject(NET, "ev"),
            cb=bus.on_msg,
            pending_msgs_limit=1_000_000,
            pending_bytes_limit=1 << 30,
        )
        await watcher.flush()
        writer = await cluster.writer(a)
        probe = HeadProbe(b, a.hub)
        pids = {name: node.pid for name, node in cluster.nodes.items()}
        server_pid = cluster.server.pid if cluster.server else None

        progress(f"idle: {IDLE_S:.0f} s with no appends")
        cpu0 = {n: cpu_s(p) for n, p in pids.items()}
        w0 = time.perf_counter()
        await asyncio.sleep(IDLE_S)  # the idle period measured, not a wait for a condition
        idle = statistics.fmean(cpu_s(p) - cpu0[n] for n, p in pids.items())
        idle /= time.perf_counter() - w0

        progress(f"latency: {samples} appends at {a.config.name}, watched in {b.config.name}")
        cpu0 = {n: cpu_s(p) for n, p in pids.items()}
        server0 = cpu_s(server_pid)
        w0 = time.perf_counter()
        lat = await latency(writer, probe, bus, samples)
        wall = time.perf_counter() - w0
        node_cpu = {n: cpu_s(p) - cpu0[n] for n, p in pids.items()}
        server_cpu = cpu_s(server_pid) - server0
        one_record = m.encoder.encode([(await writer.records(a.hub, 2, limit=1))[0]])
        raw = await raw_latency(url, one_record, samples)

        # Throughput: only A and B run, so B's CPU is not shared with eight other verifiers.
        for f in folders[1:-1]:
            await cluster.stop(f)
        pids = {"A": cluster.node(a).pid, "B": cluster.node(b).pid}
        reps: list[Replication] = []
        raws: list[tuple[float, float]] = []
        for r in range(runs):
            progress(f"replication run {r + 1}/{runs}: {events:,} events A -> B")
            rep = await replicate(writer, probe, bus, events, pids, first=10_000 + r * events)
            reps.append(rep)
            payloads = list(bus.payloads)
            raw_s, got = await raw_throughput(url, payloads)
            assert got == len(payloads)
            singles = [m.encoder.encode([raw]) for raw in await writer.records(a.hub, 2, limit=1)]
            single_s, _ = await raw_throughput(url, singles * events)
            raws.append((events / raw_s, events / single_s))
            progress(
                f"  {rep.per_s:,.0f} events/s replicated ({rep.messages} messages), appends "
                f"alone {events / rep.append_s:,.0f}/s, raw NATS same payloads "
                f"{events / raw_s:,.0f} records/s, 1 record/message {events / single_s:,.0f}/s; "
                f"load {rep.load:.2f}, machine {rep.machine_busy:.0%} busy, other processes "
                f"{rep.others_cpu:.1f} CPU s; CPU s: A's node {rep.node_cpu['A']:.2f}, B's node "
                f"{rep.node_cpu['B']:.2f}, appends {rep.node_cpu['bench']:.2f}"
            )
    finally:
        if probe is not None:
            probe.close()
        if watcher is not None:
            await watcher.close()
        codes = await cluster.close()
    bad = {n: c for n, c in codes.items() if any(c)}
    if bad:
        progress(f"warning: nodes that did not exit 0: {bad}")

    total, to_bus, bus_to_b = ms(lat["total"]), ms(lat["to_bus"]), ms(lat["bus_to_b"])
    raw_ms = ms(raw)
    table(
        f"Append at A until in B's log: {samples} samples, {hubs} nodes, one nats-server",
        ["part", "p50 ms", "p90 ms", "p99 ms", "max ms", "mean ms"],
        [
            [label, pct(v, 50), pct(v, 90), pct(v, 99), max(v), statistics.fmean(v)]
            for label, v in (
                ("append durable -> in B's log (total)", total),
                ("  append durable -> on the bus (A's node)", to_bus),
                ("  on the bus -> in B's log (B's node)", bus_to_b),
                ("  (the append itself, fsync'd)", ms(lat["append"])),
                ("reference: raw nats-py pub -> sub, same size", raw_ms),
            )
        ],
    )
    per_node = statistics.fmean(node_cpu.values()) / wall
    print(
        f"A's node checks its log for other processes' appends every {PUBLISH_POLL * 1000:.0f}"
        f" ms; B is watched every {POLL * 1000:.0f} ms. CPU per node (mean): {idle:.1%} of a "
        f"core idle, {per_node:.1%} during the {wall:.1f} s of sampling; nats-server "
        f"{server_cpu / wall:.1%}."
    )
    mid = sorted(range(runs), key=lambda i: reps[i].per_s)[runs // 2]
    rep, (raw_same, raw_single) = reps[mid], raws[mid]
    table(
        f"A -> B replication, {events:,} events, median of {runs} run(s) "
        "(only A's and B's nodes running)",
        ["what", "events/s", "seconds", "messages"],
        [
            [
                "appended at A (append_many 1,000), then in B's log",
                rep.per_s,
                rep.replicate_s,
                rep.messages,
            ],
            ["  appends alone (this process, signing)", events / rep.append_s, rep.append_s, ""],
            [
                "reference: raw nats-py pub/sub, A's node's payloads",
                raw_same,
                events / raw_same,
                rep.messages,
            ],
            [
                "reference: raw nats-py pub/sub, 1 record per message",
                raw_single,
                events / raw_single,
                events,
            ],
        ],
    )
    print(
        "all runs, events/s: "
        + ", ".join(f"{r.per_s:,.0f}" for r in reps)
        + f"; CPU of the median run: A's node {rep.node_cpu['A']:.1f} s, B's node "
        f"{rep.node_cpu['B']:.1f} s, this process's appends {rep.node_cpu['bench']:.1f} s, "
        f"over {rep.replicate_s:.1f} s of wall time on {os.cpu_count()} cores; the machine was "
        f"{rep.machine_busy:.0%} busy, other processes using {rep.others_cpu:.1f} CPU s "
        f"(load average {rep.load:.2f} at the start)"
    )
    p99 = pct(total, 99)
    print(
        f"\ntarget p99 < {TARGET_P99_MS:.0f} ms: {'met' if p99 < TARGET_P99_MS else 'MISSED'}"
        f" ({p99:.1f} ms); target replicate >= {TARGET_REPLICATE:,.0f}/s: "
        f"{'met' if rep.per_s >= TARGET_REPLICATE else 'MISSED'} ({rep.per_s:,.0f}/s)"
    )
    return {
        "bench": "gossip",
        "quick": args.quick,
        "hubs": hubs,
        "samples": samples,
        "p50_ms": round(pct(total, 50), 2),
        "p99_ms": round(p99, 2),
        "to_bus_p50_ms": round(pct(to_bus, 50), 2),
        "to_bus_p99_ms": round(pct(to_bus, 99), 2),
        "bus_to_b_p50_ms": round(pct(bus_to_b, 50), 2),
        "bus_to_b_p99_ms": round(pct(bus_to_b, 99), 2),
        "raw_nats_p50_ms": round(pct(raw_ms, 50), 3),
        "raw_nats_p99_ms": round(pct(raw_ms, 99), 3),
        "publish_poll_ms": PUBLISH_POLL * 1000,
        "node_cpu_idle_pct": round(idle * 100, 2),
        "node_cpu_sampling_pct": round(per_node * 100, 2),
        "events": events,
        "runs": runs,
        "replicate_per_s": round(rep.per_s),
        "replicate_runs_per_s": [round(r.per_s) for r in reps],
        "append_per_s": round(events / rep.append_s),
        "raw_nats_same_payloads_per_s": round(raw_same),
        "raw_nats_single_record_per_s": round(raw_single),
        "messages": rep.messages,
        "replicate_cpu_s": {k: round(v, 2) for k, v in rep.node_cpu.items()},
        "replicate_machine_busy": round(rep.machine_busy, 3),
        "replicate_others_cpu_s": round(rep.others_cpu, 2),
        "replicate_load": [round(r.load, 2) for r in reps],
        "cores": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 nodes, fewer samples and events")
    args = parser.parse_args()
    print_machine()

    async def guarded() -> dict[str, Any]:
        # SIGTERM/SIGINT cancel the run, so `finally` stops every node and the server.
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with tempfile.TemporaryDirectory(prefix="hubnode-bench-gossip-") as tmp:
            return await run(args, Path(tmp))

    emit(asyncio.run(guarded()))


if __name__ == "__main__":
    main()
