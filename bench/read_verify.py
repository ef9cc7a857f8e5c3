"""What checking records as they are read costs: serving and exporting, with and without.

    .venv/bin/python bench/read_verify.py [--quick]

A log of 200,000 signed events of 4 hubs (20,000 of 2 with ``--quick``) is built once
and cached under ``bench/.cache/``. Every scenario reads every record of it once, median
of 5 runs (3 with ``--quick``), scenarios interleaved so that machine noise spreads over
all of them:

- **serve**: sync replies as the node answers them, ``EventLog.records(hub, start,
  limit=1000, max_bytes=1 MiB)`` over each hub's chain (the live push reads the same way):
  - *plain*, the reference: the query ``records()`` ran before reading verified (raw only);
  - *id check* (what ships): ``records()``, each record hashed and compared with its
    stored id;
  - *full check*: ``records()`` then ``EventLog.verify_many`` on each reply (every check
    of ingest, signatures on every core): what verifying on read as ingest does would cost;
- **export**: ``EventLog.export_records()`` (id check, what ``hubnode log export`` runs)
  against ``export_records(checked=False)`` (the bytes as stored, as the auditor reads).

Figures are records per second of wall time; ``*_us_per_record`` is the added cost of a
check per record, from the medians and (``*_fastest``) from each scenario's fastest run,
the one least disturbed by other work. The load average is printed before and after (the
machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _common import (  # noqa: E402
    CACHE_DIR,
    NET,
    cached_hublog,
    emit,
    load_records,
    median,
    print_machine,
    progress,
    table,
)

from hubnode import EventLog, Status  # noqa: E402

REPLY_LIMIT: Final = 1000
REPLY_BYTES: Final = 1 << 20
_CACHE_VERSION: Final = 1


def cached_log(hubs: int, per_hub: int) -> Path:
    """``bench/.cache/read_verify-vV-HUBSxPER_HUB.sqlite3``: every record ingested, once."""
    path = CACHE_DIR / f"read_verify-v{_CACHE_VERSION}-{hubs}x{per_hub}.sqlite3"
    if path.exists():
        return path
    records = load_records(cached_hublog("read_verify", hubs, per_hub, order="export"))
    tmp = path.with_name(path.name + ".part")
    for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
        leftover.unlink(missing_ok=True)
    progress(f"building {path.name}: ingesting {len(records):,} records")

    async def build() -> None:
        async with await EventLog.open(tmp, net=NET) as log:
            for i in range(0, len(records), 2000):
                outcomes = await log.ingest(records[i : i + 2000])
                bad = [o for o in outcomes if o.status is not Status.ACCEPTED]
                assert not bad, bad[:3]

    asyncio.run(build())
    shutil.move(tmp, path)
    return path


# -- the readers --------------------------------------------------------------------------


async def plain_records(log: EventLog, hub: bytes, start: int) -> list[bytes]:
    """``EventLog.records`` as it was before reading verified: the same query, raw only."""
    out: list[bytes] = []
    total = 0
    async with log._db.execute(
        "SELECT raw FROM events WHERE hub = ? AND seq >= ? ORDER BY seq LIMIT ?",
        (hub, start, REPLY_LIMIT),
    ) as cur:
        async for (raw,) in cur:
            if out and total + len(raw) > REPLY_BYTES:
                break
            out.append(bytes(raw))
            total += len(raw)
    return out


async def checked_records(log: EventLog, hub: bytes, start: int) -> list[bytes]:
    return await log.records(hub, start, limit=REPLY_LIMIT, max_bytes=REPLY_BYTES)


async def fully_checked_records(log: EventLog, hub: bytes, start: int) -> list[bytes]:
    records = await log.records(hub, start, limit=REPLY_LIMIT, max_bytes=REPLY_BYTES)
    results = await log.verify_many(records)
    assert not any(isinstance(r, Exception) for r in results)
    return records


Reader = Callable[[EventLog, bytes, int], Awaitable[list[bytes]]]


def serve(read: Reader) -> Callable[[EventLog, list[bytes]], Awaitable[int]]:
    async def run(log: EventLog, hubs: list[bytes]) -> int:
        n = 0
        for hub in hubs:
            start = 1
            while records := await read(log, hub, start):
                start += len(records)
                n += len(records)
        return n

    return run


def export(checked: bool) -> Callable[[EventLog, list[bytes]], Awaitable[int]]:
    async def run(log: EventLog, hubs: list[bytes]) -> int:
        n = 0
        async for _ in log.export_records(checked=checked):
            n += 1
        return n

    return run


SCENARIOS: Final = (
    ("serve_plain", "serve: records() before reading verified [reference]", serve(plain_records)),
    ("serve_checked", "serve: records(), id check [ships]", serve(checked_records)),
    (
        "serve_full_check",
        "serve: records() + verify_many() (ingest's checks, all cores)",
        serve(fully_checked_records),
    ),
    ("export_plain", "export: export_records(checked=False) [reference]", export(False)),
    ("export_checked", "export: export_records(), id check [ships]", export(True)),
)


async def timed(
    path: Path, run: Callable[[EventLog, list[bytes]], Awaitable[int]], expected: int
) -> float:
    async with await EventLog.open(path, net=NET, create=False) as log:
        hubs = sorted(await log.heads())
        t0 = time.perf_counter()
        n = await run(log, hubs)
        wall = time.perf_counter() - t0
    assert n == expected, f"read {n} records, expected {expected}"
    return wall


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer records and runs")
    args = parser.parse_args()
    hubs, per_hub, runs = (2, 10_000, 3) if args.quick else (4, 50_000, 5)
    n = hubs * per_hub
    load_start = load()
    print_machine()
    path = cached_log(hubs, per_hub)
    size_mb = path.stat().st_size / 1e6
    print(f"{n:,} records of {hubs} hubs ({size_mb:.0f} MB log), {runs} runs per scenario")

    asyncio.run(timed(path, serve(plain_records), n))  # warm the OS page cache first
    walls: dict[str, list[float]] = {key: [] for key, _, _ in SCENARIOS}
    for r in range(runs):
        for key, label, run in SCENARIOS:
            wall = asyncio.run(timed(path, run, n))
            walls[key].append(wall)
            progress(f"  run {r + 1}/{runs} {label}: {n / wall:,.0f} records/s")

    rate = {key: n / median(w) for key, w in walls.items()}
    added = {key: (median(w) - median(walls[ref])) / n * 1e6 for key, w, ref in _pairs(walls)}
    # The fastest run of each is the least disturbed by other work on a shared machine.
    added_best = {key: (min(w) - min(walls[ref])) / n * 1e6 for key, w, ref in _pairs(walls)}
    table(
        f"Reading every record once, median of {runs} runs",
        ["scenario", "records/s", "min", "max", "µs/record", "vs reference"],
        [
            [
                label,
                rate[key],
                n / max(walls[key]),
                n / min(walls[key]),
                median(walls[key]) / n * 1e6,
                f"{rate[key] / rate[_reference(key)]:.2f}x",
            ]
            for key, label, _ in SCENARIOS
        ],
    )
    load_end = load()
    for label, by in (("medians", added), ("fastest runs", added_best)):
        print(
            f"\nadded per record ({label}): id check {by['serve_checked']:.2f} µs serving, "
            f"{by['export_checked']:.2f} µs exporting; ingest's checks "
            f"{by['serve_full_check']:.2f} µs serving",
            end="",
        )
    print()
    print(f"load average: {load_start} at start, {load_end} at end (1, 5, 15 min)")
    figures: dict[str, Any] = {
        "bench": "read_verify",
        "quick": args.quick,
        "records": n,
        "hubs": hubs,
        "runs": runs,
        "cores": os.cpu_count(),
        **{f"{key}_per_s": round(r) for key, r in rate.items()},
        "id_check_serve_us_per_record": round(added["serve_checked"], 3),
        "id_check_export_us_per_record": round(added["export_checked"], 3),
        "full_check_serve_us_per_record": round(added["serve_full_check"], 3),
        "id_check_serve_us_per_record_fastest": round(added_best["serve_checked"], 3),
        "id_check_export_us_per_record_fastest": round(added_best["export_checked"], 3),
        "full_check_serve_us_per_record_fastest": round(added_best["serve_full_check"], 3),
        "load_avg_start": load_start,
        "load_avg_end": load_end,
    }
    emit(figures)


def _reference(key: str) -> str:
    return "serve_plain" if key.startswith("serve") else "export_plain"


def _pairs(walls: dict[str, list[float]]) -> list[tuple[str, list[float], str]]:
    return [(key, w, _reference(key)) for key, w in walls.items()]


if __name__ == "__main__":
    main()
