"""Several local processes appending to one data folder at once (DESIGN §4).

Each append transaction reads the hub's head inside ``BEGIN IMMEDIATE``, so two
processes sharing a folder must still build one gap-free chain. The child program is
``tests/appender.py``; both children open the new log together.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from hubnode import EventLog, HubFolder

from .appender import Child, check_folder
from .conftest import NET

PER_CHILD = 300


async def test_connections_creating_one_new_log_at_once_all_open_it(tmp_path: Path) -> None:
    # Switching a new file to WAL upgrades a read lock to a write lock, which SQLite
    # answers with BUSY at once (no busy handler): about one race in four used to fail
    # with "database is locked". Two connections in one process race the same way.
    for attempt in range(30):
        path = tmp_path / f"log{attempt}.sqlite3"
        opened = await asyncio.gather(
            *(EventLog.open(path, net=NET) for _ in range(2)), return_exceptions=True
        )
        for log in opened:
            if isinstance(log, EventLog):
                await log.close()
        assert [e for e in opened if isinstance(e, BaseException)] == [], f"attempt {attempt}"


async def _check_one_chain(folder: HubFolder, children: list[Child]) -> int:
    """Assert the children built one chain together; returns how often the writer switched."""
    a, b = ([r.seq for r in c.reported] for c in children)
    assert (len(a), len(b)) == (PER_CHILD, PER_CHILD)
    assert a == sorted(a) and b == sorted(b), "each process's own appends keep their order"
    assert not set(a) & set(b), "two processes were given the same seq"
    reported = [r for c in children for r in c.reported]
    check = await check_folder(folder.path, folder.hub, reported)
    assert check.problems == []
    assert check.head == 2 * PER_CHILD
    assert {r.id for r in reported} == set(check.ids)
    owner = {seq: i for i, seqs in enumerate((a, b)) for seq in seqs}
    return sum(owner[s] != owner[s + 1] for s in range(1, 2 * PER_CHILD))


async def test_two_processes_appending_at_once_build_one_gap_free_chain(tmp_path: Path) -> None:
    folder = HubFolder.init(tmp_path / "hub", name="Shared hub", network=NET)
    children: list[Child] = []
    try:
        for seed in (1, 2):
            children.append(await Child.start(folder.path, count=PER_CHILD, seed=seed))
        codes = await asyncio.gather(*(c.finish() for c in children))
        errors = [await c.stderr() for c in children]
    finally:
        for c in children:
            await c.kill()

    assert codes == [0, 0], errors
    await _check_one_chain(folder, children)


async def test_two_processes_interleaving_bursts_build_one_gap_free_chain(
    tmp_path: Path,
) -> None:
    # Free-running, one process often holds the write lock for most of its run (SQLite's
    # busy handler sleeps while the other commits again). Released burst by burst, both
    # contend every round, so each process's next transaction builds on the other's.
    folder = HubFolder.init(tmp_path / "hub", name="Shared hub", network=NET)
    children: list[Child] = []
    rounds = 0
    try:
        for seed in (3, 4):
            children.append(
                await Child.start(folder.path, count=PER_CHILD, seed=seed, lockstep=True)
            )
        while live := [c for c in children if await c.wait_waiting()]:
            for c in live:
                c.go()
            rounds += len(live) == 2
        codes = await asyncio.gather(*(c.finish() for c in children))
        errors = [await c.stderr() for c in children]
    finally:
        for c in children:
            await c.kill()

    assert codes == [0, 0], errors
    switches = await _check_one_chain(folder, children)
    # In every round both wrote a burst, so the chain changes hands at least once a round.
    assert switches >= rounds > 10
