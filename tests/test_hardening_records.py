"""Issue 12 item 7: stored records are verified as they are read; damage is named, not served.

A record altered on disk (one flipped byte of its signature, changed behind the log's
back with a raw ``UPDATE``) must not reach a peer or an export, must be reported once in
the node's log and in its status, and ``hubnode log check`` must name it. Damage below
the records (a smashed index page) gives one line, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from hubnode import HubFolder, Status
from hubnode.cli import app
from hubnode.events.envelope import decode_record
from hubnode.events.ids import hub_display, parse_hub
from hubnode.hublog import HublogWriter, read_hublog
from hubnode.node import Node, status_path
from hubnode.protocol import messages as m
from hubnode.protocol.transport import Gossip
from hubnode.store.integrity import MAX_NOTED, BadRecord, Damage, DamagedRecord
from hubnode.store.repair import repair_log
from hubnode.testing import ChainWriter
from hubnode.trust import TrustSet

from .cluster import Cluster, wait_until
from .conftest import NET, registered, sync, update

HUBNODE = Path(sys.executable).parent / "hubnode"


# -- damaging a log behind its back -------------------------------------------------------


def flip_signature_byte(log_path: Path, hub: bytes, seq: int) -> None:
    """Flip one bit of the last byte of the stored signature of ``hub``'s event ``seq``."""
    with contextlib.closing(sqlite3.connect(log_path)) as db, db:
        (raw,) = db.execute(
            "SELECT raw FROM events WHERE hub = ? AND seq = ?", (hub, seq)
        ).fetchone()
        db.execute(
            "UPDATE events SET raw = ? WHERE hub = ? AND seq = ?",
            (raw[:-1] + bytes([raw[-1] ^ 0x01]), hub, seq),
        )


def smash_index(log_path: Path, index: str = "sqlite_autoindex_events_2") -> None:
    """Overwrite the root page of ``index`` (the events' UNIQUE (hub, seq)) with garbage."""
    with contextlib.closing(sqlite3.connect(log_path)) as db:
        (root,) = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (index,)
        ).fetchone()
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
    with open(log_path, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xde\xad\xbe\xef" * (page_size // 4))


async def make_hub(tmp_path: Path, own: int = 5) -> HubFolder:
    """A hub with ``own`` events of its own (log closed: safe to damage)."""
    folder = HubFolder.init(tmp_path / "hub", name="Hub A", network=NET)
    async with await folder.open_log() as log:
        await log.append("hub.registered", registered("Hub A"))
        for i in range(2, own + 1):
            await log.append("hub.profile_updated", update(i))
    return folder


async def add_peer(folder: HubFolder, n: int = 5) -> ChainWriter:
    """Store ``n`` events of a trusted peer hub in ``folder``'s log; the peer's writer."""
    writer = ChainWriter(NET)
    records = [writer.next("hub.registered", registered("Hub P"))]
    records += [writer.next("hub.profile_updated", update(i)) for i in range(2, n + 1)]
    folder.add_trusted(writer.hub, "Hub P")
    async with await folder.open_log(with_key=False) as log:
        outcomes = await log.ingest(records)
    assert {o.status for o in outcomes} == {Status.ACCEPTED}
    return writer


# -- the node's serving paths -------------------------------------------------------------


class _Nats:
    """What ``Gossip`` uses of a NATS connection to publish: records what it sends."""

    max_payload = 1 << 20
    is_connected = True

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, payload: bytes) -> None:
        self.published.append((subject, payload))


class _Request:
    """A sync request as nats-py hands it to the subscription; keeps the reply."""

    reply = "_INBOX.test"

    def __init__(self, request: m.SyncRequest) -> None:
        self.subject = m.sync_subject(NET, request.hub)
        self.data = m.encoder.encode(request)
        self.replies: list[list[bytes]] = []

    async def respond(self, data: bytes) -> None:
        self.replies.append(m.records_decoder.decode(data))


def seq_of(raw: bytes) -> int:
    return decode_record(raw)[1].seq


async def serving_gossip(folder: HubFolder) -> Gossip:
    log = await folder.open_log()
    gossip = Gossip(log, TrustSet(folder.hub, trusted(folder)))
    gossip._nc = _Nats()  # type: ignore[assignment]
    gossip.connected = True
    return gossip


def trusted(folder: HubFolder) -> list[bytes]:
    return [parse_hub(t.id) for t in folder.config.trust]


async def ask(gossip: Gossip, hub: bytes, start: int = 1) -> list[bytes]:
    """Send ``gossip`` a sync request addressed to it; the records it replies with."""
    request = _Request(m.SyncRequest(hub, start, 100, 1 << 20, gossip.own))
    await gossip._on_sync(request)  # type: ignore[arg-type]
    assert len(request.replies) == 1
    return request.replies[0]


def errors_naming(caplog: pytest.LogCaptureFixture, hub: bytes, seq: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR
        and hub_display(hub) in r.getMessage()
        and f"seq {seq}" in r.getMessage()
    ]


async def test_a_sync_reply_stops_before_a_damaged_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = await make_hub(tmp_path, 1)
    peer = await add_peer(folder, 5)
    flip_signature_byte(folder.log_path, peer.hub, 3)
    gossip = await serving_gossip(folder)
    try:
        caplog.set_level(logging.INFO)
        served = await ask(gossip, peer.hub)
        # What comes before it, and nothing from it on: the asker fetches the rest elsewhere.
        assert [seq_of(r) for r in served] == [1, 2]
        assert await ask(gossip, peer.hub, 3) == []
        assert [seq_of(r) for r in await ask(gossip, peer.hub, 4)] == [4, 5]
        # Logged loudly, once per bad record (not once per read).
        assert len(errors_naming(caplog, peer.hub, 3)) == 1, caplog.text
    finally:
        await gossip.log.close()


async def test_live_push_skips_a_damaged_own_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = await make_hub(tmp_path, 5)
    flip_signature_byte(folder.log_path, folder.hub, 3)
    gossip = await serving_gossip(folder)
    try:
        caplog.set_level(logging.INFO)
        async with asyncio.timeout(5):
            await gossip._publish_new()
        nc = gossip._nc
        assert isinstance(nc, _Nats)
        pushed = [raw for _, payload in nc.published for raw in m.records_decoder.decode(payload)]
        # Peers get the rest at once and fetch seq 3 from any holder that has it sound.
        assert [seq_of(r) for r in pushed] == [1, 2, 4, 5]
        assert gossip._published_seq == 5
        assert len(errors_naming(caplog, folder.hub, 3)) == 1, caplog.text
    finally:
        await gossip.log.close()


async def test_the_node_status_names_a_damaged_record(tmp_path: Path) -> None:
    folder = await make_hub(tmp_path, 4)
    flip_signature_byte(folder.log_path, folder.hub, 2)
    node = Node(folder)
    node.log = await folder.open_log()
    node.gossip = Gossip(node.log, TrustSet(folder.hub, []))
    node.gossip._nc = _Nats()  # type: ignore[assignment]
    node.gossip.connected = True
    try:
        await node.gossip._publish_new()
        node.write_status(running=True)
    finally:
        await node.log.close()
    status = json.loads(status_path(folder).read_text())
    assert status["bad_records"] == [
        {
            "hub": hub_display(folder.hub),
            "seq": 2,
            "reason": "id_mismatch",
            "detail": status["bad_records"][0]["detail"],
        }
    ]
    # `hubnode status` runs its own event loop: off this test's loop, in a thread.
    result = await asyncio.to_thread(invoke, CliRunner(), "status", "--data", folder.path)
    assert result.exit_code == 0, result.output
    assert f"DAMAGED RECORD: {hub_display(folder.hub)} seq 2" in result.stdout
    assert "hubnode log check" in result.stdout
    result = await asyncio.to_thread(invoke, CliRunner(), "status", "--data", folder.path, "--json")
    assert json.loads(result.stdout)["bad_records"] == status["bad_records"]


# -- export and check ---------------------------------------------------------------------


def invoke(runner: CliRunner, *args: str | Path) -> Result:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"HUBNODE_DATA": None, "COLUMNS": "250", "NO_COLOR": "1"})


def one_line(result: Result) -> str:
    """The single line a command failed with: no traceback, no second line."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_export_fails_with_one_line_naming_a_damaged_record(
    runner: CliRunner, tmp_path: Path
) -> None:
    folder = asyncio.run(make_hub(tmp_path, 5))
    flip_signature_byte(folder.log_path, folder.hub, 3)
    out = tmp_path / "all.hublog"
    result = invoke(runner, "log", "export", "--data", folder.path, "--out", out)
    assert result.exit_code == 1, result.output
    line = one_line(result)
    assert f"{hub_display(folder.hub)} seq 3" in line and "id_mismatch" in line, line
    assert "hubnode log check" in line, line
    # Nothing half-written is left to be mistaken for an export.
    assert not out.exists() and not out.with_name(out.name + ".part").exists()


def test_export_of_a_sound_log_still_writes_every_record(runner: CliRunner, tmp_path: Path) -> None:
    folder = asyncio.run(make_hub(tmp_path, 5))
    out = tmp_path / "all.hublog"
    result = invoke(runner, "log", "export", "--data", folder.path, "--out", out)
    assert result.exit_code == 0, result.output
    with open(out, "rb") as f:
        assert len(list(read_hublog(f))) == 5


def test_check_passes_a_sound_log(runner: CliRunner, tmp_path: Path) -> None:
    folder = asyncio.run(make_hub(tmp_path, 3))
    asyncio.run(add_peer(folder, 4))
    result = invoke(runner, "log", "check", "--data", folder.path)
    assert result.exit_code == 0, result.output
    assert "7 records of 2 hubs" in result.stdout and "ok" in result.stdout
    assert result.stderr == ""


def test_check_names_a_damaged_record_with_exit_1(runner: CliRunner, tmp_path: Path) -> None:
    folder = asyncio.run(make_hub(tmp_path, 3))
    peer = asyncio.run(add_peer(folder, 4))
    flip_signature_byte(folder.log_path, peer.hub, 2)
    result = invoke(runner, "log", "check", "--data", folder.path)
    assert result.exit_code == 1, result.output
    line = one_line(result)
    # The hub by name and id, the seq, and the reason the full verification gives.
    assert f"{hub_display(peer.hub)} (Hub P) seq 2" in line, line
    assert "bad_signature" in line, line
    as_json = json.loads(invoke(runner, "log", "check", "--data", folder.path, "--json").stdout)
    assert as_json["ok"] is False
    assert [(b["hub"], b["seq"], b["reason"]) for b in as_json["bad_records"]] == [
        (hub_display(peer.hub), 2, "bad_signature")
    ]


# -- damage below the records: SQLite's own pages ----------------------------------------


def run_hubnode(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HUBNODE), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "250"},
    )


def test_a_smashed_index_page_gives_one_line_not_a_traceback(tmp_path: Path) -> None:
    folder = asyncio.run(make_hub(tmp_path, 5))
    smash_index(folder.log_path)
    body = '{"area": "Darlington"}'
    for args in (
        ("log", "append", "--data", folder.path, "--kind", "hub.profile_updated", "--json", body),
        ("log", "check", "--data", folder.path),
    ):
        done = run_hubnode(*args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert "damaged" in lines[0] and str(folder.log_path) in lines[0], lines[0]
        assert "docs/operating.md" in lines[0] or "hubnode log" in lines[0], lines[0]


# -- repairing: sound copies from any holder, every event kept in its place ----------------


def stored_rows(log_path: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(log_path)) as db:
        return db.execute("SELECT * FROM events NOT INDEXED ORDER BY pos").fetchall()


def backup(folder: HubFolder, to: Path) -> Path:
    """A backup as docs/operating.md takes it: SQLite's online backup plus the config."""
    to.mkdir()
    shutil.copy(folder.path / "hubnode.toml", to)
    with (
        contextlib.closing(sqlite3.connect(folder.log_path)) as src,
        contextlib.closing(sqlite3.connect(to / "log.sqlite3")) as dst,
    ):
        src.backup(dst)
    return to


def repaired(runner: CliRunner, folder: HubFolder, *sources: Path) -> str:
    args = [a for s in sources for a in ("--from", s)]
    result = invoke(runner, "log", "repair", "--data", folder.path, *args)
    assert result.exit_code == 0, result.output
    check = invoke(runner, "log", "check", "--data", folder.path)
    assert check.exit_code == 0, check.output
    return result.stdout


def test_repair_takes_a_damaged_record_from_any_holders_export(
    runner: CliRunner, tmp_path: Path
) -> None:
    folder = asyncio.run(make_hub(tmp_path, 3))
    peer = asyncio.run(add_peer(folder, 4))
    # Another hub holding the peer's events serves as well as the peer itself would.
    holder = HubFolder.init(tmp_path / "holder", name="Hub H", network=NET)
    sync(folder.path, holder.path)
    copy = tmp_path / "peer.hublog"
    exported = invoke(
        runner, "log", "export", "--data", holder.path, "--hub", hub_display(peer.hub), "-o", copy
    )
    assert exported.exit_code == 0, exported.output
    before = stored_rows(folder.log_path)
    flip_signature_byte(folder.log_path, peer.hub, 2)

    said = repaired(runner, folder, copy)

    assert "1 replaced by sound copies" in said, said
    assert stored_rows(folder.log_path) == before  # the same bytes, each in its own place
    kept = list(folder.path.glob("log.sqlite3.damaged-*"))
    assert len(kept) == 1 and str(kept[0]) in said


def test_repair_takes_an_own_record_from_an_older_backup(runner: CliRunner, tmp_path: Path) -> None:
    folder = asyncio.run(make_hub(tmp_path, 4))
    old = backup(folder, tmp_path / "backup")

    async def more() -> None:
        async with await folder.open_log() as log:
            await log.append("hub.profile_updated", update(5))

    asyncio.run(more())
    before = stored_rows(folder.log_path)
    flip_signature_byte(folder.log_path, folder.hub, 3)

    said = repaired(runner, folder, old)

    assert "1 replaced by sound copies" in said, said
    assert stored_rows(folder.log_path) == before


def damage_id(log_path: Path, hub: bytes, seq: int) -> None:
    """Overwrite the id stored beside ``hub``'s event ``seq`` (its bytes stay sound)."""
    with contextlib.closing(sqlite3.connect(log_path)) as db, db:
        db.execute("UPDATE events SET id = ? WHERE hub = ? AND seq = ?", (b"\x07" * 32, hub, seq))


def test_a_damaged_id_is_caught_and_rewritten_from_the_records_own_bytes(
    runner: CliRunner, tmp_path: Path
) -> None:
    folder = asyncio.run(make_hub(tmp_path, 4))
    before = stored_rows(folder.log_path)
    damage_id(folder.log_path, folder.hub, 2)
    export = invoke(runner, "log", "export", "--data", folder.path, "-o", tmp_path / "x.hublog")
    assert export.exit_code == 1 and "seq 2 is damaged (id_mismatch" in one_line(export)
    check = invoke(runner, "log", "check", "--data", folder.path)
    assert check.exit_code == 1 and "the id column is damaged" in one_line(check)

    said = repaired(runner, folder)  # nothing to fetch: the bytes are sound and signed

    assert "1 with what was stored beside them rewritten" in said, said
    assert stored_rows(folder.log_path) == before


def append_profile(runner: CliRunner, folder: HubFolder) -> Result:
    """``hubnode log append`` of a profile update to ``folder``."""
    return invoke(runner, "log", "append", "--data", folder.path,
                  "--kind", "hub.profile_updated", "--json", '{"area": "Darlington"}')  # fmt: skip


def test_append_refuses_to_link_to_a_head_whose_stored_id_is_damaged(
    runner: CliRunner, tmp_path: Path
) -> None:
    folder = asyncio.run(make_hub(tmp_path, 3))
    damage_id(folder.log_path, folder.hub, 3)
    result = append_profile(runner, folder)
    assert result.exit_code == 1
    assert f"{hub_display(folder.hub)} seq 3 is damaged" in one_line(result)
    assert len(stored_rows(folder.log_path)) == 3


async def test_append_after_a_head_with_damaged_bytes_still_links_to_its_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = await make_hub(tmp_path, 3)
    (head_id,) = [r[3] for r in stored_rows(folder.log_path) if r[2] == 3]
    flip_signature_byte(folder.log_path, folder.hub, 3)
    async with await folder.open_log() as log:
        done = await log.append("hub.profile_updated", update(4))
    assert decode_record(done.raw)[1].prev == head_id
    assert len(errors_naming(caplog, folder.hub, 3)) == 1, caplog.text


def test_repair_rebuilds_a_log_with_a_smashed_index(runner: CliRunner, tmp_path: Path) -> None:
    folder = asyncio.run(make_hub(tmp_path, 5))
    before = stored_rows(folder.log_path)
    smash_index(folder.log_path)

    said = repaired(runner, folder)

    assert "5 records rebuilt" in said, said
    assert stored_rows(folder.log_path) == before
    appended = append_profile(runner, folder)
    assert appended.exit_code == 0 and "seq 6" in appended.stdout, appended.output
    again = invoke(runner, "log", "repair", "--data", folder.path)
    assert again.exit_code == 0 and "sound, nothing to repair" in again.stdout, again.output


def test_repair_without_a_sound_copy_changes_nothing(runner: CliRunner, tmp_path: Path) -> None:
    folder = asyncio.run(make_hub(tmp_path, 3))
    peer = asyncio.run(add_peer(folder, 3))
    flip_signature_byte(folder.log_path, peer.hub, 3)
    file_before = folder.log_path.read_bytes()

    result = invoke(runner, "log", "repair", "--data", folder.path)

    assert result.exit_code == 1
    line = one_line(result)
    assert f"no sound copy of {hub_display(peer.hub)} seq 3" in line, line
    assert f"hubnode log export --hub {hub_display(peer.hub)}" in line, line
    assert folder.log_path.read_bytes() == file_before
    assert sorted(p.name for p in folder.path.iterdir()) == ["hubnode.toml", "keys", "log.sqlite3"]


def test_repair_refuses_while_the_node_runs(runner: CliRunner, tmp_path: Path) -> None:
    folder = asyncio.run(make_hub(tmp_path, 2))
    status = status_path(folder)
    status.parent.mkdir(parents=True)
    status.write_text(json.dumps({"running": True, "pid": os.getpid(), "updated_at": time.time()}))
    result = invoke(runner, "log", "repair", "--data", folder.path)
    assert result.exit_code == 2
    assert "is running" in one_line(result)


async def test_a_damaged_fork_proof_twin_is_named_and_taken_from_a_copy(tmp_path: Path) -> None:
    folder = await make_hub(tmp_path, 1)
    writer = ChainWriter(NET)
    records = [writer.next("hub.registered", registered("Hub F"))]
    twin = writer.fork()
    records += [writer.next("hub.profile_updated", update(i)) for i in (2, 3)]
    other = twin.next("hub.profile_updated", update(20))
    folder.add_trusted(writer.hub, "Hub F")
    async with await folder.open_log(with_key=False) as log:
        await log.ingest(records)
        (outcome,) = await log.ingest([other])
    assert outcome.status is Status.FORK
    copy = tmp_path / "f.hublog"
    with open(copy, "wb") as f:
        write = HublogWriter(f)
        for raw in [*records, other]:
            write.write(raw)
    before = stored_rows(folder.log_path)
    with contextlib.closing(sqlite3.connect(folder.log_path)) as db, db:
        (raw_b,) = db.execute("SELECT raw_b FROM fork_proofs").fetchone()
        db.execute("UPDATE fork_proofs SET raw_b = ?", (raw_b[:-1] + bytes([raw_b[-1] ^ 1]),))

    async with await folder.open_log(with_key=False) as log:
        with pytest.raises(DamagedRecord, match=r"seq 2 is damaged.*fork proof"):
            [raw async for raw in log.export_records()]
        report = await log.check()
    assert [(b.hub, b.seq, b.reason, b.proof) for b in report.bad] == [
        (writer.hub, 2, "bad_signature", True)
    ]

    done = await repair_log(folder.log_path, NET, [lambda: hublog_records(copy)])

    assert done.twins_replaced == 1 and done.kept is not None
    assert stored_rows(folder.log_path) == before
    async with await folder.open_log(with_key=False) as log:
        assert (await log.check()).ok
        assert {p.raw_b for p in await log.forks()} == {raw_b}


async def hublog_records(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        for _, raw in read_hublog(f):
            yield raw


def test_reads_keep_at_most_so_many_damaged_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damage = Damage(tmp_path / "log.sqlite3")
    for seq in range(1, MAX_NOTED + 6):
        damage.note(BadRecord(b"\x01" * 32, seq, "id_mismatch", "test"))
    damage.note(BadRecord(b"\x01" * 32, 1, "id_mismatch", "test"))  # seen: not logged again
    assert len(list(damage)) == MAX_NOTED
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == MAX_NOTED + 1
    assert "more than 1000 damaged records" in errors[-1].getMessage()


# -- real nodes -----------------------------------------------------------------------------


@pytest.mark.timeout(90)
async def test_real_nodes_never_serve_a_damaged_record_and_fetch_it_from_a_sound_holder(
    cluster: Cluster,
) -> None:
    await cluster.start_server()
    a, b, c = cluster.hubs("a", "b", "c")
    await cluster.append(a, 5)
    await cluster.close_logs(a)
    await asyncio.to_thread(sync, a.path, c.path)  # c holds a sound copy of a's events
    sound = stored_rows(a.log_path)
    flip_signature_byte(a.log_path, a.hub, 3)
    for folder in (a, b, c):
        await cluster.start(folder)

    await cluster.wait_holds(b, {a: 5}, within=30)

    # b got seq 3 from c, sound: its bytes are those a stored before the damage.
    assert [r[6] for r in stored_rows(b.log_path) if r[1] == a.hub] == [r[6] for r in sound]
    assert cluster.node(b).counters().get("rejected") == {}, cluster.logs()
    node_a = cluster.node(a)
    status = await wait_until(
        lambda: node_a.current_status().get("bad_records"), 10, "a's status to name the damage"
    )
    assert [(s["hub"], s["seq"], s["reason"]) for s in status] == [
        (hub_display(a.hub), 3, "id_mismatch")
    ]
    assert node_a.tail(100_000).count("DAMAGED RECORD") == 1, node_a.tail()
