"""Crash safety: a process killed with SIGKILL loses nothing its log reported durable.

The child program and the checks live in ``tests/appender.py`` (shared with
``bench/crash.py``). Rounds kill at varied moments: right after spawn, once the log is
open, within the first bursts of concurrent appends, and well into the loop. Set
``HUBNODE_CRASH_SEED`` to replay a failing run.

SIGKILL ends the process, not the machine: the kernel's page cache survives, so these
tests prove that commits are atomic and that nothing is reported before its commit, not
that ``synchronous=FULL`` survives power loss.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from hubnode import HubFolder
from hubnode.events.envelope import event_id
from hubnode.hublog import HublogWriter

from .appender import KILL_PLANS, Reported, check_folder, crash_loop
from .conftest import NET, chain, update

SEED = int(os.environ.get("HUBNODE_CRASH_SEED", "20240611"))
ROUNDS = 20


def _replay_hint(seed: int, problems: list[str]) -> str:
    return f"seed {seed} (rerun with HUBNODE_CRASH_SEED={seed}):\n" + "\n".join(problems[:20])


async def test_killed_appender_loses_no_event_it_reported_durable(tmp_path: Path) -> None:
    folder = HubFolder.init(tmp_path / "hub", name="Crash hub", network=NET)

    stats = await crash_loop(folder.path, rounds=ROUNDS, seed=SEED)

    assert not stats.problems, _replay_hint(SEED, stats.problems)
    assert len(stats.rounds) == ROUNDS
    assert {r.plan for r in stats.rounds} == set(KILL_PLANS)
    assert stats.durable > ROUNDS, "children reported too few appends to test anything"
    assert stats.lost == 0


async def test_killed_ingester_loses_no_record_it_reported_stored(tmp_path: Path) -> None:
    folder = HubFolder.init(tmp_path / "hub", name="Ingesting hub", network=NET)
    peer, records = chain(1500)
    source = tmp_path / "peer.hublog"
    with open(source, "wb") as f:
        writer = HublogWriter(f)
        for raw in records:
            writer.write(raw)

    stats = await crash_loop(folder.path, rounds=6, seed=SEED, ingest=source)

    assert not stats.problems, _replay_hint(SEED, stats.problems)
    assert stats.durable > 0
    # The last ingester ran over the whole source: everything is stored, in order.
    check = await check_folder(folder.path, peer.hub, [])
    assert check.ids == [event_id(raw) for raw in records]


async def test_folder_check_reports_a_reported_event_that_is_not_stored(tmp_path: Path) -> None:
    # The crash tests are only as good as this check: it must notice loss and replacement.
    folder = HubFolder.init(tmp_path / "hub", name="Checked hub", network=NET)
    async with await folder.open_log() as log:
        stored = [await log.append("hub.profile_updated", update(n)) for n in range(3)]
    good = [Reported(a.seq, a.id) for a in stored]

    ok = await check_folder(folder.path, folder.hub, good)
    lost = await check_folder(folder.path, folder.hub, [*good, Reported(4, b"\x01" * 32)])
    replaced = await check_folder(folder.path, folder.hub, [Reported(2, stored[0].id)])

    assert (ok.problems, ok.found, ok.head) == ([], 3, 3)
    assert [p.split(":")[0] for p in lost.problems] == ["lost"]
    assert lost.found == 3
    assert [p.split(":")[0] for p in replaced.problems] == ["replaced"]


async def test_folder_check_reports_a_log_that_does_not_audit(tmp_path: Path) -> None:
    folder = HubFolder.init(tmp_path / "hub", name="Tampered hub", network=NET)
    async with await folder.open_log() as log:
        await log.append("hub.profile_updated", update(1))
    # Overwrite the last byte of the stored signature behind the log's back.
    with contextlib.closing(sqlite3.connect(folder.log_path)) as db, db:
        (raw,) = db.execute("SELECT raw FROM events").fetchone()
        db.execute("UPDATE events SET raw = ?", (raw[:-1] + bytes([raw[-1] ^ 1]),))

    check = await check_folder(folder.path, folder.hub, [])

    assert any(p.startswith("audit failed") for p in check.problems), check.problems
