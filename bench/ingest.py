"""Verify + store of remote records through EventLog.ingest, with the references beside it.

    .venv/bin/python bench/ingest.py [--quick]

Input: a .hublog of 100,000 events by 20 hubs (20,000 with --quick), generated once into
bench/.cache/ with hubs interleaved in runs of 1-100 records (each hub's events in seq
order), as a node syncing from many peers receives them. Each run ingests it into a
fresh log, 2,000 records per ``ingest`` call, and checks every record was accepted.

The same ingest with two calls in flight at a time (``ingest_pipelined``): the next call
verifies while the previous one stores, as the gossip adapter runs live messages.

References from the same run, so the reader sees where the time goes:

- ``EventLog.verify_many`` alone (the thread-pool verification ingest starts with);
- ``verify_record`` in a loop on one thread (all the stateless checks, no storage);
- raw ``cryptography`` Ed25519 verify of the same signatures, one thread and two threads
  (keys loaded and bytes sliced beforehand: the floor for signature checking).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    NET,
    CpuMeter,
    CpuSample,
    cached_hublog,
    emit,
    load_records,
    print_machine,
    progress,
    table,
)
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hubnode import EventLog, IngestOutcome, Status
from hubnode.events.envelope import decode_record, signed_bytes
from hubnode.events.verify import verify_record

BATCH = 2_000
HUBS = 20
_TICK = os.sysconf("SC_CLK_TCK")


def _thread_cpu() -> dict[str, float]:
    """CPU seconds (user + sys) of each live thread of this process, by thread role."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / _TICK
        name = names.get(int(task.name), "other")
        role = (
            "main (event loop)"
            if name == "MainThread"
            else "verify pool"
            if name.startswith("hubnode-verify")
            else "sqlite (aiosqlite thread)"
            if name.startswith("Thread-")
            else "other"
        )
        out[role] = out.get(role, 0.0) + seconds
    return out


async def _ingest(records: list[bytes], folder: Path) -> tuple[CpuSample, dict[str, float]]:
    log = await EventLog.open(folder / "log.sqlite3", net=NET)
    try:
        before = _thread_cpu()
        with CpuMeter() as meter:
            accepted = 0
            for i in range(0, len(records), BATCH):
                outcomes = await log.ingest(records[i : i + BATCH])
                accepted += sum(1 for o in outcomes if o.status is Status.ACCEPTED)
        after = _thread_cpu()
        assert accepted == len(records), f"accepted {accepted} of {len(records)}"
        assert await log.count() == len(records)
    finally:
        await log.close()
    threads = {role: cpu - before.get(role, 0.0) for role, cpu in after.items()}
    return meter.sample, threads


async def _ingest_pipelined(records: list[bytes], folder: Path) -> CpuSample:
    """Ingest with up to two calls in flight: each call starts as the one before the
    previous ends, so one verifies while the other stores."""
    log = await EventLog.open(folder / "log.sqlite3", net=NET)
    try:
        with CpuMeter() as meter:
            accepted = 0
            running: asyncio.Task[list[IngestOutcome]] | None = None
            for i in range(0, len(records), BATCH):
                call = asyncio.create_task(log.ingest(records[i : i + BATCH]))
                if running is not None:
                    accepted += sum(1 for o in await running if o.status is Status.ACCEPTED)
                running = call
            assert running is not None
            accepted += sum(1 for o in await running if o.status is Status.ACCEPTED)
        assert accepted == len(records), f"accepted {accepted} of {len(records)}"
        assert await log.count() == len(records)
    finally:
        await log.close()
    return meter.sample


async def _verify_many(records: list[bytes], folder: Path) -> CpuSample:
    log = await EventLog.open(folder / "log.sqlite3", net=NET)
    try:
        with CpuMeter() as meter:
            for i in range(0, len(records), BATCH):
                checked = await log.verify_many(records[i : i + BATCH])
                assert not any(isinstance(c, Exception) for c in checked)
    finally:
        await log.close()
    return meter.sample


def verify_loop(records: list[bytes]) -> CpuSample:
    with CpuMeter() as meter:
        for raw in records:
            verify_record(raw, net=NET)
    return meter.sample


def _raw_inputs(records: list[bytes]) -> list[tuple[Ed25519PublicKey, bytes, bytes]]:
    keys: dict[bytes, Ed25519PublicKey] = {}
    out = []
    for raw in records:
        record, env = decode_record(raw)
        key = keys.get(env.key) or keys.setdefault(
            env.key, Ed25519PublicKey.from_public_bytes(env.key)
        )
        out.append((key, record.signature, signed_bytes(record.envelope)))
    return out


def _raw_verify(items: list[tuple[Ed25519PublicKey, bytes, bytes]]) -> None:
    for key, sig, data in items:
        key.verify(sig, data)


def raw_verify(items: list[tuple[Ed25519PublicKey, bytes, bytes]], threads: int) -> CpuSample:
    with CpuMeter() as meter:
        if threads == 1:
            _raw_verify(items)
        else:
            step = -(-len(items) // threads)
            with ThreadPoolExecutor(threads) as pool:
                list(
                    pool.map(_raw_verify, [items[i : i + step] for i in range(0, len(items), step)])
                )
    return meter.sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 events instead of 100,000")
    args = parser.parse_args()
    per_hub, runs = (1_000, 3) if args.quick else (5_000, 3)

    print_machine()
    path = cached_hublog("ingest", HUBS, per_hub, order="gossip")
    records = load_records(path)
    n = len(records)
    size = sum(map(len, records)) / n
    print(f"{path.name}: {n:,} records by {HUBS} hubs, {size:.0f} bytes each on average")
    print(f"ingest in calls of {BATCH:,} records into a fresh log per run; {runs} runs")
    items = _raw_inputs(records)

    samples: dict[str, list[CpuSample]] = {
        k: [] for k in ("ingest", "pipelined", "verify_many", "verify_record", "raw1", "raw2")
    }
    threads: list[dict[str, float]] = []
    for r in range(runs):
        with tempfile.TemporaryDirectory(prefix="hubnode-bench-") as tmp:
            sample, per_thread = asyncio.run(_ingest(records, Path(tmp)))
        samples["ingest"].append(sample)
        threads.append(per_thread)
        progress(
            f"  run {r + 1}/{runs} ingest: {n / sample.wall:,.0f} events/s, "
            f"CPU {sample.utilisation:.0%}"
        )
        with tempfile.TemporaryDirectory(prefix="hubnode-bench-") as tmp:
            samples["pipelined"].append(asyncio.run(_ingest_pipelined(records, Path(tmp))))
        wall = samples["pipelined"][-1].wall
        progress(f"  run {r + 1}/{runs} ingest, 2 calls in flight: {n / wall:,.0f} events/s")
        with tempfile.TemporaryDirectory(prefix="hubnode-bench-") as tmp:
            samples["verify_many"].append(asyncio.run(_verify_many(records, Path(tmp))))
        samples["verify_record"].append(verify_loop(records))
        samples["raw1"].append(raw_verify(items, 1))
        samples["raw2"].append(raw_verify(items, 2))

    def mid(key: str) -> CpuSample:
        ordered = sorted(samples[key], key=lambda s: s.wall)
        return ordered[len(ordered) // 2]

    ingest = mid("ingest")
    rows: list[list[Any]] = []
    labels = {
        "ingest": "EventLog.ingest (verify on pool + store)",
        "pipelined": "EventLog.ingest, 2 calls in flight",
        "verify_many": "EventLog.verify_many only (pool, no store)",
        "verify_record": "verify_record loop, 1 thread (no store)",
        "raw1": "raw cryptography verify, 1 thread",
        "raw2": "raw cryptography verify, 2 threads",
    }
    for key, label in labels.items():
        s = mid(key)
        rows.append([label, n / s.wall, s.wall, s.cpu, f"{s.utilisation:.0%}"])
    table(
        f"Ingest of {n:,} records, median of {runs} runs",
        ["what", "events/s", "seconds", "CPU s", "CPU (of 200%)"],
        rows,
    )
    store_s = ingest.wall - mid("verify_many").wall
    print(
        f"\nstore phase (ingest minus verify_many, derived): {store_s:.2f} s, "
        f"{store_s / ingest.wall:.0%} of ingest wall time"
    )
    mid_threads = threads[samples["ingest"].index(ingest)]
    table(
        "CPU seconds by thread during the median ingest run",
        ["thread", "CPU s", "share of wall"],
        [
            [role, round(cpu, 2), f"{cpu / ingest.wall:.0%}"]
            for role, cpu in sorted(mid_threads.items(), key=lambda kv: -kv[1])
        ],
    )
    target = 12_000
    rate = n / ingest.wall
    verdict = "met" if rate >= target else "MISSED"
    print(f"\ntarget: ingest >= {target:,} events/s on 2 cores: {verdict}")
    emit(
        {
            "bench": "ingest",
            "quick": args.quick,
            "events": n,
            "hubs": HUBS,
            "batch": BATCH,
            "runs": runs,
            "cores": os.cpu_count(),
            "ingest_per_s": round(rate),
            "ingest_cpu_s": round(ingest.cpu, 2),
            "ingest_cpu_utilisation": round(ingest.utilisation, 2),
            "ingest_pipelined_per_s": round(n / mid("pipelined").wall),
            "ingest_pipelined_cpu_s": round(mid("pipelined").cpu, 2),
            "verify_many_per_s": round(n / mid("verify_many").wall),
            "verify_record_1_thread_per_s": round(n / mid("verify_record").wall),
            "raw_verify_1_thread_per_s": round(n / mid("raw1").wall),
            "raw_verify_2_threads_per_s": round(n / mid("raw2").wall),
            "ingest_thread_cpu_s": {k: round(v, 2) for k, v in mid_threads.items()},
        }
    )


if __name__ == "__main__":
    main()
