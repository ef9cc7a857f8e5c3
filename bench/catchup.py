"""A node missing the last 10 of a hub's 100,000 events: how fast and how little it fetches.

    .venv/bin/python bench/catchup.py [--quick]

Two hubs' folders are built once and cached under ``bench/.cache/``: an author's chain of
100,000 signed events (20,000 with ``--quick``; the author never runs) is ingested whole
into the *holder*'s log and without its last 10 events into the *laggard*'s; both trust
each other and the author, and their projections are caught up. Each run copies the two
folders, starts a nats-server and both ``hubnode run`` processes (default config: heads
every 2 s), and measures two ways:

- **laggard first**: the laggard runs; the holder starts. ``catchup_s`` is from the first
  heads message of the holder on the bus (this process subscribes with nats-py) until the
  laggard's log holds seq 100,000 (read-only SQLite query every millisecond);
- **holder first**: the holder runs; the laggard starts. From the laggard's spawn until it
  holds seq 100,000: Python start-up, connecting, and waiting for the holder's next
  periodic heads announcement (up to 2 s) are all included.

``records_fetched`` is the laggard's own ``fetched`` counter from ``run/status.json``.
Reference, same run: ``EventLog.ingest`` of those 10 records into a copy of the laggard's
log in this process, and a nats-py request/reply round trip on the same server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import nats  # noqa: E402
from _common import (  # noqa: E402
    CACHE_DIR,
    NET,
    cached_hublog,
    emit,
    hub_key,
    load_records,
    median,
    print_machine,
    progress,
    table,
)
from nats.aio.msg import Msg  # noqa: E402

from hubnode import HubFolder  # noqa: E402
from hubnode.events.ids import hub_display  # noqa: E402
from hubnode.node import projection_runner  # noqa: E402
from hubnode.protocol import messages as m  # noqa: E402
from tests.cluster import Cluster, NatsServer  # noqa: E402

MISSING: Final = 10
HEADS_INTERVAL: Final = 2.0
POLL: Final = 0.001
TARGET_S: Final = 1.0
_CACHE_VERSION: Final = 1
"""Bump when the cached folders' layout changes."""


# -- the cached folders -------------------------------------------------------------------


async def _build(root: Path, records: list[bytes], author: bytes) -> None:
    holder = HubFolder.init(root / "holder", name="holder", network=NET)
    laggard = HubFolder.init(root / "laggard", name="laggard", network=NET)
    for folder, other in ((holder, laggard), (laggard, holder)):
        assert folder.config.heads_interval == HEADS_INTERVAL, "the default config"
        folder.add_trusted(other.hub, other.config.name)
        folder.add_trusted(author, "author")
    for folder, n in ((holder, len(records)), (laggard, len(records) - MISSING)):
        log = await folder.open_log()
        try:
            for i in range(0, n, 2000):
                outcomes = await log.ingest(records[i : min(n, i + 2000)])
                bad = [o for o in outcomes if o.status != "accepted"]
                assert not bad, bad[:3]
        finally:
            await log.close()
        runner = projection_runner(folder)  # as a node would have done long ago
        try:
            runner.catch_up()
        finally:
            runner.close()
        progress(f"  {folder.config.name}: {n:,} events ingested, projections caught up")


def cached_folders(events: int) -> Path:
    """``bench/.cache/catchup-vV-N/`` with ``holder/`` and ``laggard/`` hub folders."""
    path = CACHE_DIR / f"catchup-v{_CACHE_VERSION}-{events}"
    if (path / "complete").exists():
        return path
    hublog = cached_hublog("catchup", 1, events, order="export")
    records = load_records(hublog)
    shutil.rmtree(path, ignore_errors=True)
    tmp = path.with_name(path.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    progress(f"building {path}")
    asyncio.run(_build(tmp, records, hub_key(0).public))
    (tmp / "complete").write_text("")
    tmp.rename(path)
    return path


def copy_folders(cache: Path, dest: Path) -> tuple[HubFolder, HubFolder]:
    """Fresh copies of the cached holder and laggard, projections caught up."""
    folders = []
    for name in ("holder", "laggard"):
        shutil.copytree(cache / name, dest / name)
        folder = HubFolder.open(dest / name)
        runner = projection_runner(folder)  # a no-op unless projections changed since
        try:
            runner.catch_up()
        finally:
            runner.close()
        folders.append(folder)
    return folders[0], folders[1]


# -- measuring ----------------------------------------------------------------------------


class SeqProbe:
    """The author's head seq in a log, by a direct read-only SQLite query."""

    def __init__(self, folder: HubFolder, hub: bytes) -> None:
        self._db = sqlite3.connect(f"file:{folder.log_path}?mode=ro", uri=True)
        self._hub = hub

    def seq(self) -> int:
        row = self._db.execute(
            "SELECT seq FROM events WHERE hub = ? ORDER BY seq DESC LIMIT 1", (self._hub,)
        ).fetchone()
        return int(row[0]) if row else 0

    async def wait(self, seq: int, within: float) -> float:
        async with asyncio.timeout(within):
            while True:
                if self.seq() >= seq:
                    return time.perf_counter()
                await asyncio.sleep(POLL)  # the polling period itself

    def close(self) -> None:
        self._db.close()


async def fresh_counters(cluster: Cluster, folder: HubFolder, after: float) -> dict[str, Any]:
    """The node's counters from a status file written after wall time ``after``."""
    node = cluster.node(folder)
    async with asyncio.timeout(10):
        while True:
            if (node.current_status().get("updated_at") or 0) > after:
                return node.counters()
            await asyncio.sleep(0.05)  # status.json is rewritten every second


async def one_run(
    cache: Path, root: Path, events: int, author: bytes, laggard_first: bool
) -> dict[str, float]:
    holder, laggard = copy_folders(cache, root)
    cluster = Cluster(root)
    probe = SeqProbe(laggard, author)
    watcher = None
    start: asyncio.Future[Any] | None = None
    try:
        url = await cluster.start_server()
        assert probe.seq() == events - MISSING
        first_heads: list[float] = []

        async def on_heads(msg: Msg) -> None:
            if not first_heads and m.heads_decoder.decode(msg.data).sender == holder.hub:
                first_heads.append(time.perf_counter())

        watcher = await nats.connect(url)
        await watcher.subscribe(m.subject(NET, "heads"), cb=on_heads)
        await watcher.flush()
        first, second = (laggard, holder) if laggard_first else (holder, laggard)
        await cluster.start(first)
        # A random pause, so that the second node's start is out of step with the first
        # one's heads announcements (the harness returns in step with its status file).
        await asyncio.sleep(random.uniform(0.0, HEADS_INTERVAL))  # pacing, not a wait
        t_spawn = time.perf_counter()
        start = asyncio.ensure_future(cluster.start(second))
        t_done = await probe.wait(events, 30.0)
        await start
        if laggard_first:
            assert first_heads, "the holder's heads were never seen"
            elapsed = t_done - first_heads[0]
        else:
            elapsed = t_done - t_spawn
        counters = await fresh_counters(cluster, laggard, time.time())
        return {
            "catchup_s": elapsed,
            "since_spawn_s": t_done - t_spawn,
            "fetched": counters.get("fetched", 0),
            "duplicates": counters.get("duplicates", 0),
            "fetch_failures": counters.get("fetch_failures", 0),
        }
    finally:
        if start is not None and not start.done():
            start.cancel()
        probe.close()
        if watcher is not None:
            await watcher.close()
        codes = await cluster.close()
        bad = {n: c for n, c in codes.items() if any(c)}
        if bad:
            progress(f"warning: nodes that did not exit 0: {bad}")


async def references(cache: Path, root: Path, events: int, author: bytes) -> dict[str, float]:
    """Ingesting the 10 records locally; a NATS request/reply round trip."""
    holder, laggard = copy_folders(cache, root)
    source = await holder.open_log(with_key=False)
    try:
        records = await source.records(author, events - MISSING + 1, limit=MISSING)
    finally:
        await source.close()
    log = await laggard.open_log()
    try:
        t0 = time.perf_counter()
        outcomes = await log.ingest(records)
        ingest_s = time.perf_counter() - t0
        assert [o.status for o in outcomes] == ["accepted"] * MISSING
    finally:
        await log.close()
    server = NatsServer(root / "nats-ref")
    url = await server.start()
    try:
        a, b = await nats.connect(url), await nats.connect(url)

        async def echo(msg: Msg) -> None:
            await msg.respond(m.encoder.encode(records))

        await b.subscribe("bench.rtt", cb=echo)
        await b.flush()
        rtts = []
        for _ in range(50):
            t0 = time.perf_counter()
            await a.request("bench.rtt", b"x", timeout=5)
            rtts.append(time.perf_counter() - t0)
        await a.close()
        await b.close()
    finally:
        await server.stop()
    return {"ingest_10_s": ingest_s, "request_rtt_s": median(rtts)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    events, runs = (20_000, 1) if args.quick else (100_000, 3)
    cache = cached_folders(events)
    author = hub_key(0).public
    rows: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="hubnode-bench-catchup-") as tmp:
        for r in range(runs):
            for laggard_first in (True, False):
                label = "laggard first" if laggard_first else "holder first"
                root = Path(tmp) / f"run{r}-{int(laggard_first)}"
                result = await one_run(cache, root, events, author, laggard_first)
                rows[laggard_first].append(result)
                shutil.rmtree(root, ignore_errors=True)
                progress(
                    f"  run {r + 1}/{runs} {label}: {result['catchup_s'] * 1000:.0f} ms, "
                    f"fetched {result['fetched']}"
                )
        ref = await references(cache, Path(tmp) / "ref", events, author)

    def mid(results: list[dict[str, float]]) -> dict[str, float]:
        return sorted(results, key=lambda x: x["catchup_s"])[len(results) // 2]

    a, b = mid(rows[True]), mid(rows[False])
    table(
        f"Catch-up of the last {MISSING} of {events:,} events of one hub, median of {runs} run(s)",
        ["what", "ms", "records fetched", "duplicates"],
        [
            [
                "laggard running; holder's first heads -> laggard holds all (catchup_s)",
                a["catchup_s"] * 1000,
                a["fetched"],
                a["duplicates"],
            ],
            ["  same run, from the holder's spawn", a["since_spawn_s"] * 1000, "", ""],
            [
                "holder running; laggard's spawn -> laggard holds all",
                b["catchup_s"] * 1000,
                b["fetched"],
                b["duplicates"],
            ],
            [
                "reference: EventLog.ingest of the 10 records, in process",
                ref["ingest_10_s"] * 1000,
                MISSING,
                "",
            ],
            [
                "reference: nats-py request/reply round trip (10-record reply)",
                ref["request_rtt_s"] * 1000,
                "",
                "",
            ],
        ],
    )
    print(
        "all runs, catchup_s (laggard first): "
        + ", ".join(f"{x['catchup_s'] * 1000:.0f} ms" for x in rows[True])
        + "; holder first: "
        + ", ".join(f"{x['catchup_s'] * 1000:.0f} ms" for x in rows[False])
        + f"; author {hub_display(author)[:16]}…, heads every {HEADS_INTERVAL:.0f} s"
    )
    ok = a["catchup_s"] < TARGET_S
    print(
        f"\ntarget catchup < {TARGET_S:.0f} s: {'met' if ok else 'MISSED'}; "
        f"records fetched ~ {MISSING}: {'met' if a['fetched'] <= 2 * MISSING else 'MISSED'}"
    )
    return {
        "bench": "catchup",
        "quick": args.quick,
        "events": events,
        "missing": MISSING,
        "runs": runs,
        "catchup_s": round(a["catchup_s"], 4),
        "catchup_runs_s": [round(x["catchup_s"], 4) for x in rows[True]],
        "records_fetched": a["fetched"],
        "duplicates": a["duplicates"],
        "fetch_failures": a["fetch_failures"],
        "from_holder_spawn_s": round(a["since_spawn_s"], 3),
        "laggard_start_to_caught_up_s": round(b["catchup_s"], 3),
        "ingest_10_ms": round(ref["ingest_10_s"] * 1000, 2),
        "request_rtt_ms": round(ref["request_rtt_s"] * 1000, 3),
        "heads_interval_s": HEADS_INTERVAL,
        "cores": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 events, one run")
    args = parser.parse_args()
    print_machine()
    cached_folders(20_000 if args.quick else 100_000)  # before timing anything

    async def guarded() -> dict[str, Any]:
        # SIGTERM/SIGINT cancel the run, so `finally` stops every node and the server.
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        return await run(args)

    emit(asyncio.run(guarded()))


if __name__ == "__main__":
    main()
