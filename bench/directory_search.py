"""``hubnode directory search`` over 20,000 services from 20 hubs.

    .venv/bin/python bench/directory_search.py [--quick]

Input: 20 hubs publish 1,000 services each (HSDS-shaped, ~700 bytes: categories, areas,
weekly hours, costs, a location and a contact) and report capacity for half of them,
signed on every core, interleaved as gossip brings them and ingested with
``EventLog.ingest``; the .hublog and the log are cached under bench/.cache/. The log is
copied into a fresh hub folder and its views caught up (timed, for reference).

``search_ms`` (the target, < 50 ms): the answer to a search, in-process. The timed call is
``hubnode.commands.directory.find``, what ``hubnode directory search`` runs: it opens the
hub's projection runner, checks it is caught up, finds the first page (the default
``--limit``) and the number of matches (``Search.page``), decodes the services shown and
reads their ratings. Every search the command offers is timed (text, category, area,
free, open-now, all combined, no filter); p50 and max over 20 repetitions (5 with
--quick), interleaved; the figure is the slowest search's p50. Also timed, outside the
target: ``--limit 0`` (every match decoded). References from the same run: opening a
caught-up runner alone, and the whole CLI command as a subprocess (p50 of 5, 2 with
--quick) beside ``hubnode --help``, the process start-up every command pays.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    _FRAME,
    CACHE_DIR,
    NET,
    _interleave,
    _read_frames,
    emit,
    hub_key,
    load_records,
    print_machine,
    progress,
    registered_body,
    table,
)
from projections import service_body

from hubnode import EventLog, Status
from hubnode.commands.common import caught_up
from hubnode.commands.directory import DEFAULT_LIMIT, Search, find
from hubnode.config import HubFolder
from hubnode.events.directory import CapacityReported
from hubnode.hublog import MAGIC
from hubnode.testing import ChainWriter

HUBS: Final = 20
PER_HUB: Final = 1_000
TARGET_MS: Final = 50.0
_GENERATOR_VERSION: Final = 1
ROOT: Final = Path(__file__).resolve().parent.parent
WHEN: Final = dt.datetime(2026, 11, 25, 10, 30)  # a Wednesday morning
"""The local time ``--open-now`` is asked for (``--at``), so runs compare."""


def _sign_services(args: tuple[int, int, str]) -> int:
    """Worker: hub ``hub_no`` registers, publishes ``n`` services, reports half's capacity."""
    hub_no, n, part = args
    rng = random.Random(4242 + hub_no)
    writer = ChainWriter(NET, hub_key(hub_no))
    with open(part, "wb") as f:
        records = [writer.next("hub.registered", registered_body(hub_no))]
        for k in range(n):
            records.append(writer.next("service.published", service_body(rng, hub_no, k)))
            if k % 2:
                body = CapacityReported(
                    service=f"svc-{k}",
                    status=rng.choice(("accepting", "waitlist", "no-capacity")),
                    as_of=dt.date(2026, 11, rng.randint(1, 25)),
                )
                records.append(writer.next("capacity.reported", body))
        for raw in records:
            f.write(_FRAME.pack(len(raw)) + raw)
    return hub_no


def cached_directory_log(hubs: int, per_hub: int) -> Path:
    CACHE_DIR.mkdir(exist_ok=True)
    tag = f"directory-v{_GENERATOR_VERSION}-{hubs}x{per_hub}"
    path = CACHE_DIR / f"{tag}.log.sqlite3"
    if path.exists():
        return path
    hublog = CACHE_DIR / f"{tag}.hublog"
    if not hublog.exists():
        parts = CACHE_DIR / f"{tag}.parts"
        shutil.rmtree(parts, ignore_errors=True)
        parts.mkdir()
        progress(f"generating {hublog.name}: {hubs} hubs x {per_hub:,} services")
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            list(
                pool.map(
                    _sign_services, [(i, per_hub, str(parts / f"{i}.part")) for i in range(hubs)]
                )
            )
        tmp = hublog.with_name(hublog.name + ".part")
        with open(tmp, "wb") as out:
            out.write(MAGIC)
            _interleave([_read_frames(parts / f"{i}.part") for i in range(hubs)], out)
        tmp.replace(hublog)
        shutil.rmtree(parts)
    records = load_records(hublog)
    tmp = path.with_name(path.name + ".part")
    for leftover in tmp.parent.glob(tmp.name + "*"):
        leftover.unlink()

    async def ingest() -> None:
        async with await EventLog.open(tmp, net=NET) as log:
            for i in range(0, len(records), 2_000):
                outcomes = await log.ingest(records[i : i + 2_000])
                assert all(o.status is Status.ACCEPTED for o in outcomes)

    progress(f"ingesting {len(records):,} records into {path.name}")
    asyncio.run(ingest())
    db = sqlite3.connect(tmp)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    tmp.replace(path)
    for leftover in tmp.parent.glob(tmp.name + "-*"):
        leftover.unlink()
    return path


SEARCHES: Final[list[tuple[str, list[str], Search]]] = [
    ("text", ["--text", "debt advice"], Search(text="debt advice")),
    ("category", ["--category", "housing"], Search(categories=("housing",))),
    ("area", ["--area", "DL3"], Search(area="DL3")),
    ("free", ["--free"], Search(free=True)),
    (
        "open_now",
        ["--open-now", "--at", f"{WHEN:%Y-%m-%dT%H:%M}"],
        Search(open_at=WHEN),
    ),
    (
        "combined",
        ["--text", "food", "--category", "food", "--area", "TS5", "--free"],
        Search(text="food", categories=("food",), area="TS5", free=True),
    ),
    ("none", [], Search()),
]
"""(key, the command's flags, the search they make)."""
EVERYTHING: Final = ("open_now", "none")
"""Searches also timed with ``--limit 0``: every match decoded (not in the target)."""


def _timed_calls(
    folder: HubFolder, reps: int
) -> tuple[dict[str, list[float]], dict[str, tuple[int, int]]]:
    """ms per call of every search (and the references), interleaved; what each found
    (matches, shown)."""
    calls: list[tuple[str, Callable[[], Any]]] = [
        (key, lambda s=search: find(folder, s, limit=DEFAULT_LIMIT)) for key, _, search in SEARCHES
    ]
    calls += [
        (f"{key}_all", lambda s=search: find(folder, s, limit=None))
        for key, _, search in SEARCHES
        if key in EVERYTHING
    ]
    calls.append(("runner", lambda: caught_up(folder).close()))
    times: dict[str, list[float]] = {key: [] for key, _ in calls}
    found: dict[str, tuple[int, int]] = {}
    for _ in range(reps):  # interleaved, so machine noise spreads over all of them
        for key, fn in calls:
            t0 = time.perf_counter()
            result = fn()
            times[key].append((time.perf_counter() - t0) * 1000)
            # Keep counts only: 20,000 live listings would slow every later call's GC.
            found[key] = (result.total, len(result.listings)) if result else (0, 0)
            del result
    return times, found


def _timed_cli(folder: HubFolder, reps: int) -> dict[str, list[float]]:
    """ms per whole ``hubnode directory search`` process of every search, and ``--help``."""
    hubnode = str(Path(sys.executable).parent / "hubnode")
    runs = [
        (key, ["directory", "search", "--data", str(folder.path), *flags])
        for key, flags, _ in SEARCHES
    ]
    runs.append(("help", ["--help"]))
    times: dict[str, list[float]] = {key: [] for key, _ in runs}
    for _ in range(reps):
        for key, argv in runs:
            t0 = time.perf_counter()
            done = subprocess.run(
                [hubnode, *argv],
                capture_output=True,
                env={**os.environ, "COLUMNS": "200"},
                check=False,
            )
            times[key].append((time.perf_counter() - t0) * 1000)
            assert done.returncode == 0, done.stderr.decode()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    reps, cli_reps = (5, 2) if args.quick else (20, 5)

    print_machine()
    source = cached_directory_log(HUBS, PER_HUB)
    with tempfile.TemporaryDirectory(prefix="hubnode-bench-") as tmp:
        folder = HubFolder.init(Path(tmp) / "hub", name="Bench Hub", network=NET)
        shutil.copyfile(source, folder.log_path)
        t0 = time.perf_counter()
        runner = caught_up(folder)
        catch_up_s = time.perf_counter() - t0
        (services,) = runner.query("directory", "SELECT count(*) FROM {services}")[0]
        runner.close()
        assert services == HUBS * PER_HUB, services
        print(
            f"{services:,} services by {HUBS} hubs ({source.stat().st_size / 1e6:.0f} MB log); "
            f"views caught up from empty in {catch_up_s:.1f} s; {reps} repetitions per search"
        )

        times, found = _timed_calls(folder, reps)
        p50 = {key: statistics.median(ts) for key, ts in times.items()}
        worst = max((key for key, _, _ in SEARCHES), key=p50.__getitem__)
        search_ms = p50[worst]

        def row(key: str, label: str) -> list[Any]:
            matches = f"{found[key][0]:,}" if key != "runner" else ""
            shown = f"{found[key][1]:,}" if key != "runner" else ""
            return [label, matches, shown, f"{p50[key]:.1f}", f"{max(times[key]):.1f}"]

        flags = {key: " ".join(f"'{f}'" if " " in f else f for f in fl) for key, fl, _ in SEARCHES}
        table(
            f"directory search, in-process: find(), default --limit {DEFAULT_LIMIT}, ms",
            ["search", "matches", "shown", "p50 ms", "max ms"],
            [row(key, flags[key] or "(no filter)") for key, _, _ in SEARCHES]
            + [row(f"{key}_all", f"{flags[key] or '(no filter)'} --limit 0") for key in EVERYTHING]
            + [row("runner", "reference: open a caught-up runner only")],
        )

        cli = _timed_cli(folder, cli_reps)
        cli_p50 = {key: statistics.median(ts) for key, ts in cli.items()}
        table(
            f"The whole command as a subprocess (start-up and imports included), p50 of {cli_reps}",
            ["command", "ms", "less start-up"],
            [
                [
                    f"hubnode directory search {flags[key]}".rstrip(),
                    f"{cli_p50[key]:.0f}",
                    f"{cli_p50[key] - cli_p50['help']:.0f}",
                ]
                for key, _, _ in SEARCHES
            ]
            + [["reference: hubnode --help (start-up)", f"{cli_p50['help']:.0f}", ""]],
        )
    verdict = "met" if search_ms < TARGET_MS else "MISSED"
    print(f"\ntarget: search < {TARGET_MS:.0f} ms (slowest search's p50: {worst}): {verdict}")
    out: dict[str, Any] = {
        "bench": "directory_search",
        "quick": args.quick,
        "services": HUBS * PER_HUB,
        "hubs": HUBS,
        "repetitions": reps,
        "limit": DEFAULT_LIMIT,
        "cores": os.cpu_count(),
        "load_at_end": round(os.getloadavg()[0], 2),
        "search_ms": round(search_ms, 1),
        "search_slowest": worst,
        **{f"search_{k}_p50_ms": round(v, 1) for k, v in p50.items() if k != "runner"},
        **{f"search_{k}_max_ms": round(max(times[k]), 1) for k in p50 if k != "runner"},
        "runner_open_p50_ms": round(p50["runner"], 1),
        "catch_up_s": round(catch_up_s, 1),
        **{f"cli_{k}_ms": round(v) for k, v in cli_p50.items()},
        "target_ms": TARGET_MS,
    }
    emit(out)


if __name__ == "__main__":
    main()
