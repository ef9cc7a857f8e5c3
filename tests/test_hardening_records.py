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
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from hubnode import HubFolder, Status
from hubnode.cli import app
from hubnode.events.envelope import decode_record
from hubnode.events.ids import hub_display, parse_hub
from hubnode.hublog import read_hublog
from hubnode.node import Node, status_path
from hubnode.protocol import messages as m
from hubnode.protocol.transport import Gossip
from hubnode.testing import ChainWriter
from hubnode.trust import TrustSet

from .conftest import NET, registered, update

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
