"""Durable signed appends through EventLog, and the eventsourcing library side by side.

    .venv/bin/python bench/append.py [--quick]

Every figure is events made durable per second (SQLite WAL, synchronous=FULL: each
transaction's WAL frames are fsynced before the call returns), median of 5 runs (3 with
--quick), each run on a fresh database in a temporary folder:

- one writer, ``await log.append(...)`` one at a time: one transaction per event;
- the same on a log already holding 100,000 of the hub's events (20,000 with --quick):
  appending must not slow down as a chain grows;
- one writer, ``append_many`` in batches of 500;
- 8 writer tasks, each looping ``await log.append(...)``: group commit takes the waiting
  events of all 8 into one transaction;
- 1,000 appends at a time under ``asyncio.gather``: group commit at full width
  (``append_per_s``, the headline figure);
- the Python ``eventsourcing`` library (SQLite persistence, same durability: see
  ``eventsourcing_durability``) on the same number of events, one event per ``save()``
  and 500 events of one aggregate per ``save()``. Its events are not signed; hubnode
  signs every event with Ed25519 before it stores it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    KIND,
    NET,
    CpuMeter,
    CpuSample,
    emit,
    median,
    print_machine,
    profile_body,
    progress,
    table,
)
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from hubnode import EventLog, SigningKey
from hubnode.events.kinds import KINDS
from hubnode.events.network import HubProfileUpdated

BATCH = 500
WRITERS = 8
WIDTH = 1000


# -- hubnode -----------------------------------------------------------------------------


async def _timed_log(
    folder: Path,
    n: int,
    run: Callable[[EventLog], Any],
    before: Callable[[EventLog], Any] | None = None,
) -> CpuSample:
    """Open a fresh log, time ``run(log)``, check all ``n`` events are stored."""
    log = await EventLog.open(folder / "log.sqlite3", net=NET, key=SigningKey.generate())
    try:
        if before is not None:
            await before(log)
        async with log._db.execute("PRAGMA synchronous") as cur:  # durability as claimed
            row = await cur.fetchone()
        assert row is not None and row[0] == 2, f"expected synchronous=FULL (2), got {row}"
        with CpuMeter() as meter:
            await run(log)
        stored = await log.count()
        assert stored == n, f"stored {stored} events, expected {n}"
    finally:
        await log.close()
    return meter.sample


def hubnode_single(folder: Path, bodies: list[HubProfileUpdated]) -> CpuSample:
    async def run(log: EventLog) -> None:
        for body in bodies:
            await log.append(KIND, body)

    return asyncio.run(_timed_log(folder, len(bodies), run))


def hubnode_single_deep(folder: Path, bodies: list[HubProfileUpdated], depth: int) -> CpuSample:
    """As ``hubnode_single``, on a log already holding ``depth`` events of this hub.

    Appending must not slow down as a hub's chain grows: reading the head is one seek.
    Only the appends of ``bodies`` are timed, not the filling.
    """

    async def fill(log: EventLog) -> None:
        for _ in range(0, depth, 2000):
            await log.append_many([(KIND, bodies[0])] * 2000)

    async def run(log: EventLog) -> None:
        for body in bodies:
            await log.append(KIND, body)

    return asyncio.run(_timed_log(folder, depth + len(bodies), run, before=fill))


def hubnode_many(folder: Path, bodies: list[HubProfileUpdated]) -> CpuSample:
    async def run(log: EventLog) -> None:
        for i in range(0, len(bodies), BATCH):
            await log.append_many([(KIND, b) for b in bodies[i : i + BATCH]])

    return asyncio.run(_timed_log(folder, len(bodies), run))


def hubnode_writers(folder: Path, bodies: list[HubProfileUpdated]) -> CpuSample:
    async def writer(log: EventLog, mine: list[HubProfileUpdated]) -> None:
        for body in mine:
            await log.append(KIND, body)

    async def run(log: EventLog) -> None:
        await asyncio.gather(*(writer(log, bodies[w::WRITERS]) for w in range(WRITERS)))

    return asyncio.run(_timed_log(folder, len(bodies), run))


def hubnode_gather(folder: Path, bodies: list[HubProfileUpdated]) -> CpuSample:
    async def run(log: EventLog) -> None:
        for i in range(0, len(bodies), WIDTH):
            await asyncio.gather(*(log.append(KIND, b) for b in bodies[i : i + WIDTH]))

    return asyncio.run(_timed_log(folder, len(bodies), run))


# -- eventsourcing -----------------------------------------------------------------------


class HubProfile(Aggregate):
    """The same profile data as ``hub.profile_updated``, as an eventsourcing aggregate."""

    def __init__(self, name: str) -> None:
        self.name = name

    @event("ProfileUpdated")
    def update(self, name: str | None, roles: list[str], area: str, contact: str) -> None:
        self.name = name
        self.roles = roles
        self.area = area
        self.contact = contact


def _fields(body: HubProfileUpdated) -> dict[str, Any]:
    return {
        "name": body.name,
        "roles": list(body.roles or ()),
        "area": body.area,
        "contact": body.contact,
    }


def _es_app(folder: Path) -> Application:
    return Application(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(folder / "es.sqlite3"),
        }
    )


def es_durability(folder: Path) -> dict[str, Any]:
    """What eventsourcing's SQLite connections actually run with."""
    app = _es_app(folder)
    with app.recorder.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
        c.execute("PRAGMA journal_mode")
        journal = c.fetchone()[0]
        c.execute("PRAGMA synchronous")
        sync = c.fetchone()[0]
    app.close()
    return {"journal_mode": journal, "synchronous": {0: "OFF", 1: "NORMAL", 2: "FULL"}[sync]}


def _timed_es(folder: Path, n: int, run: Callable[[Application, HubProfile], None]) -> CpuSample:
    app = _es_app(folder)
    try:
        profile = HubProfile(name="Darlington Community Hub")
        app.save(profile)  # the created event, outside the timing
        with CpuMeter() as meter:
            run(app, profile)
        assert profile.version == n + 1, profile.version
        stored = app.recorder.max_notification_id()  # type: ignore[attr-defined]
        assert stored == n + 1, f"stored {stored} events, expected {n + 1}"
    finally:
        app.close()
    return meter.sample


def es_per_event(folder: Path, bodies: list[HubProfileUpdated]) -> CpuSample:
    fields = [_fields(b) for b in bodies]

    def run(app: Application, profile: HubProfile) -> None:
        for f in fields:
            profile.update(**f)
            app.save(profile)

    return _timed_es(folder, len(bodies), run)


def es_batched(folder: Path, bodies: list[HubProfileUpdated]) -> CpuSample:
    fields = [_fields(b) for b in bodies]

    def run(app: Application, profile: HubProfile) -> None:
        for i in range(0, len(fields), BATCH):
            for f in fields[i : i + BATCH]:
                profile.update(**f)
            app.save(profile)

    return _timed_es(folder, len(bodies), run)


# -- the run -----------------------------------------------------------------------------

Scenario = tuple[str, str, Callable[[Path, list[HubProfileUpdated]], CpuSample], int]


def scenarios(n: int, depth: int, deep_n: int) -> list[Scenario]:
    """(figure, label, function, events timed)."""

    def deep(folder: Path, bodies: list[HubProfileUpdated]) -> CpuSample:
        return hubnode_single_deep(folder, bodies[:deep_n], depth)

    return [
        ("append_single_writer_per_s", "hubnode: 1 writer, await append() each", hubnode_single, n),
        (
            "append_single_writer_deep_per_s",
            f"hubnode: same, log already holding {depth:,} events",
            deep,
            deep_n,
        ),
        ("append_many_per_s", f"hubnode: 1 writer, append_many({BATCH})", hubnode_many, n),
        (
            "append_8_writers_per_s",
            f"hubnode: {WRITERS} writer tasks, append()",
            hubnode_writers,
            n,
        ),
        ("append_per_s", f"hubnode: gather({WIDTH}) x append() [group commit]", hubnode_gather, n),
        ("eventsourcing_per_event_per_s", "eventsourcing: 1 event per save()", es_per_event, n),
        ("eventsourcing_batched_per_s", f"eventsourcing: {BATCH} events per save()", es_batched, n),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer events and runs")
    args = parser.parse_args()
    n, runs, depth = (4_000, 3, 20_000) if args.quick else (20_000, 5, 100_000)
    deep_n = 1_000
    runs_of = scenarios(n, depth, deep_n)

    print_machine()
    bodies = [profile_body(1, i) for i in range(2, n + 2)]
    body_size = median([len(KINDS.encode_body(KIND, b)) for b in bodies])
    with tempfile.TemporaryDirectory(prefix="hubnode-bench-") as tmp:
        durability = es_durability(Path(tmp))
    print(
        f"{n:,} events per run, {runs} runs per scenario, body ~{body_size:.0f} bytes "
        f"msgpack; temp folder on {tempfile.gettempdir()}"
    )
    print(
        "durability: hubnode WAL + synchronous=FULL (checked per run); eventsourcing "
        f"journal_mode={durability['journal_mode']}, synchronous={durability['synchronous']} "
        "(it sets only WAL; FULL is this SQLite build's default)"
    )

    samples: dict[str, list[CpuSample]] = {key: [] for key, _, _, _ in runs_of}
    events = {key: count for key, _, _, count in runs_of}
    for r in range(runs):  # interleave scenarios so machine noise spreads over all of them
        for key, label, fn, count in runs_of:
            with tempfile.TemporaryDirectory(prefix="hubnode-bench-") as tmp:
                sample = fn(Path(tmp), bodies)
            samples[key].append(sample)
            progress(
                f"  run {r + 1}/{runs} {label}: {count / sample.wall:,.0f} events/s, "
                f"CPU {sample.utilisation:.0%}"
            )

    mid = {key: sorted(ss, key=lambda s: s.wall)[len(ss) // 2] for key, ss in samples.items()}
    rates = {key: events[key] / mid[key].wall for key in samples}
    spread = {
        key: (events[key] / max(s.wall for s in ss), events[key] / min(s.wall for s in ss))
        for key, ss in samples.items()
    }
    base = rates["eventsourcing_per_event_per_s"]
    table(
        f"Durable appends, median of {runs} runs",
        ["scenario", "events", "events/s", "min", "max", "CPU", "x eventsourcing 1/save"],
        [
            [
                label,
                count,
                rates[key],
                *spread[key],
                f"{mid[key].utilisation:.0%}",
                f"{rates[key] / base:.1f}x",
            ]
            for key, label, _, count in runs_of
        ],
    )
    print(
        "CPU: user + sys of this process (all threads) over wall time, median run; "
        "of 200% on 2 cores."
    )
    target = 15_000
    verdict = "met" if rates["append_per_s"] >= target else "MISSED"
    print(f"\ntarget: group commit >= {target:,} events/s on 2 cores: {verdict}")
    emit(
        {
            "bench": "append",
            "quick": args.quick,
            "events": n,
            "runs": runs,
            "deep_log_events": depth,
            "cores": os.cpu_count(),
            **{key: round(rate) for key, rate in rates.items()},
            "eventsourcing_durability": durability,
        }
    )


if __name__ == "__main__":
    main()
