"""The ``hubnode`` command line, driven through typer's CliRunner (and a few real processes).

CliRunner is not a terminal, so these runs also show what a script piping the output sees.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner, Result

from hubnode import HubFolder, SigningKey, Status
from hubnode.cli import app
from hubnode.testing import ChainWriter

from .conftest import registered, update

NET = "test-net"
HUB_ID = re.compile(r"hub:[a-z2-7]{52}")
HUBNODE = Path(sys.executable).parent / "hubnode"
BAR_CHARS = ("━", "█", "\r", "\x1b[")
"""What a rich progress bar writes; none of it may reach a pipe."""

REGISTERED = '{"name":"Hub A","roles":["gateway"],"area":"Darlington","contact":"a@example.org"}'


@pytest.fixture
def runner() -> CliRunner:
    # A wide, fixed width so tables never elide ids; no data folder from the environment.
    return CliRunner(env={"HUBNODE_DATA": None, "COLUMNS": "250", "NO_COLOR": "1"})


def invoke(runner: CliRunner, *args: str | Path) -> Result:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def hub(runner: CliRunner, tmp_path: Path) -> tuple[Path, str]:
    """An initialised data folder and its hub id."""
    data = tmp_path / "hub"
    result = invoke(runner, "init", "--data", data, "--name", "Hub A", "--network", NET)
    assert result.exit_code == 0, result.output
    return data, result.stdout.strip()


def append(runner: CliRunner, data: Path, kind: str, body: str) -> Result:
    return invoke(runner, "log", "append", "--data", data, "--kind", kind, "--json", body)


def ingest(data: Path, records: list[bytes]) -> list[Status]:
    """Feed records into a data folder's log, as a peer's gossip would."""

    async def run() -> list[Status]:
        async with await HubFolder.open(data).open_log(with_key=False) as log:
            return [o.status for o in await log.ingest(records)]

    return asyncio.run(run())


def count(data: Path) -> int:
    async def run() -> int:
        async with await HubFolder.open(data).open_log(with_key=False) as log:
            return await log.count()

    return asyncio.run(run())


def display(hub: bytes) -> str:
    return "hub:" + base64.b32encode(hub).decode().rstrip("=").lower()


def frames(path: Path) -> list[tuple[int, bytes]]:
    """(offset, record) of each frame, read here without hubnode's reader."""
    data = path.read_bytes()
    assert data[:8] == b"HUBLOG1\n"
    out, offset = [], 8
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        out.append((offset, data[offset + 4 : offset + 4 + length]))
        offset += 4 + length
    return out


def table_rows(text: str) -> list[list[str]]:
    """The body cells of the rich tables in ``text``."""
    return [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in text.splitlines()
        if line.startswith("│")
    ]


def quiet_stderr(result: Result, expected: str = "") -> bool:
    """Nothing but ``expected`` on stderr: no progress bar, not even the blank line a
    transient rich bar leaves on a non-terminal."""
    return result.stderr == expected and not any(c in result.stderr for c in BAR_CHARS)


# -- init and id --------------------------------------------------------------------------


def test_init_prints_the_hub_id_of_the_key_it_wrote(hub: tuple[Path, str]) -> None:
    data, hub_id = hub
    assert HUB_ID.fullmatch(hub_id)
    pem = (data / "keys" / "hub.pem").read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    assert hub_id == display(key.public_key().public_bytes_raw())


def test_init_writes_the_key_with_mode_0600(hub: tuple[Path, str]) -> None:
    data, _ = hub
    assert stat.S_IMODE((data / "keys" / "hub.pem").stat().st_mode) == 0o600


def test_init_never_prints_the_key(runner: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "hub"
    result = invoke(runner, "init", "--data", data, "--name", "Hub A", "--network", NET)
    pem = (data / "keys" / "hub.pem").read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    private = key.private_bytes_raw()
    for secret in (private.hex(), base64.b64encode(private).decode(), "PRIVATE KEY"):
        assert secret not in result.output
    assert pem.decode().splitlines()[1] not in result.output


def test_init_writes_a_readable_toml_config(runner: CliRunner, tmp_path: Path) -> None:
    data = tmp_path / "hub"
    result = invoke(
        runner, "init", "--data", data, "--name", "Care Navigators North", "--network", NET,
        "--nats-url", "nats://127.0.0.1:4222",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = tomllib.loads((data / "hubnode.toml").read_text())
    assert config["name"] == "Care Navigators North"
    assert config["network"] == NET
    assert config["nats_url"] == "nats://127.0.0.1:4222"
    assert config["trust"] == []
    assert config["hub_id"] == result.stdout.strip()


def test_init_defaults_to_the_embedded_nats_server(hub: tuple[Path, str]) -> None:
    data, _ = hub
    assert tomllib.loads((data / "hubnode.toml").read_text())["nats_url"] == "embedded"


def test_init_refuses_to_overwrite_an_existing_hub(
    runner: CliRunner, hub: tuple[Path, str]
) -> None:
    data, hub_id = hub
    key_before = (data / "keys" / "hub.pem").read_bytes()
    config_before = (data / "hubnode.toml").read_bytes()
    result = invoke(runner, "init", "--data", data, "--name", "Other", "--network", NET)
    assert result.exit_code != 0
    assert "already holds a hub" in result.stderr and "refusing to overwrite" in result.stderr
    assert result.stdout == ""
    assert (data / "keys" / "hub.pem").read_bytes() == key_before
    assert (data / "hubnode.toml").read_bytes() == config_before
    assert invoke(runner, "id", "--data", data).stdout.strip() == hub_id


def test_init_rejects_a_bad_network_name_before_writing_a_key(
    runner: CliRunner, tmp_path: Path
) -> None:
    data = tmp_path / "hub"
    result = invoke(runner, "init", "--data", data, "--name", "Hub", "--network", "Bad Net")
    assert result.exit_code == 2  # a usage error, like every other bad input
    assert "network" in result.stderr
    assert not (data / "keys" / "hub.pem").exists()


def test_errors_are_printed_verbatim_not_as_markup(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(runner, "init", "--data", tmp_path / "h", "--name", "H", "--network", "a b")
    assert "[a-z0-9][a-z0-9_-]" in result.stderr  # the rule, not eaten as a rich style tag


def test_a_new_hub_audits_clean_at_once(runner: CliRunner, hub: tuple[Path, str]) -> None:
    data, _ = hub
    result = invoke(runner, "audit", "verify", data)
    assert result.exit_code == 0, result.output
    assert "0 records" in result.stdout and "verified" in result.stdout


def test_id_prints_the_hub_id(runner: CliRunner, hub: tuple[Path, str]) -> None:
    data, hub_id = hub
    result = invoke(runner, "id", "--data", data)
    assert result.exit_code == 0
    assert result.stdout == hub_id + "\n"


def test_id_reads_the_data_folder_from_the_environment(hub: tuple[Path, str]) -> None:
    data, hub_id = hub
    result = CliRunner(env={"HUBNODE_DATA": str(data)}).invoke(app, ["id"])
    assert result.stdout.strip() == hub_id


def test_commands_on_a_missing_data_folder_fail_clearly(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for args in (["id"], ["log", "show"], ["log", "heads"], ["log", "export", "-o", "x.hublog"]):
        result = invoke(runner, *args, "--data", missing)
        assert result.exit_code == 1, args
        assert "is not a hub data folder" in result.stderr
        assert "hubnode init" in result.stderr  # says how to fix it
    assert not missing.exists()


# -- log append ---------------------------------------------------------------------------


def test_append_signs_and_prints_seq_and_id(runner: CliRunner, hub: tuple[Path, str]) -> None:
    data, hub_id = hub
    first = append(runner, data, "hub.registered", REGISTERED)
    second = append(runner, data, "hub.profile_updated", '{"area": "North Darlington"}')
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    m1 = re.fullmatch(r"appended hub\.registered seq 1 id ([0-9a-f]{64})\n", first.stdout)
    m2 = re.fullmatch(r"appended hub\.profile_updated seq 2 id ([0-9a-f]{64})\n", second.stdout)
    assert m1 and m2

    async def stored() -> list[tuple[int, str, str, bytes | None, str, dict[str, object]]]:
        async with await HubFolder.open(data).open_log(with_key=False) as log:
            return [
                (
                    e.seq,
                    display(e.hub),
                    hashlib.sha256(e.raw).hexdigest(),
                    e.prev,
                    e.kind,
                    json.loads(msgspec.json.encode(e.body)),
                )
                for e in await log.events()
            ]

    (s1, h1, id1, prev1, k1, b1), (s2, h2, id2, prev2, k2, b2) = asyncio.run(stored())
    assert (s1, h1, id1, prev1, k1) == (1, hub_id, m1[1], None, "hub.registered")
    assert b1 == json.loads(REGISTERED)
    assert (s2, h2, id2, k2, b2["area"]) == (
        2,
        hub_id,
        m2[1],
        "hub.profile_updated",
        "North Darlington",
    )
    assert prev2 is not None and prev2.hex() == id1


@pytest.mark.parametrize(
    ("kind", "body", "says"),
    [
        ("hub.registered", "{not json", "malformed"),
        ("hub.registered", '{"name": "Hub A"}', "roles"),
        ("hub.registered", REGISTERED.replace('"Hub A"', '""'), "$.name"),
        ("hub.registered", REGISTERED.replace('"gateway"', '"boss"'), "$.roles[0]"),
        ("hub.registered", REGISTERED.replace('"Hub A"', "7"), "$.name"),
        ("hub.admitted", '{"hub": "hub:nope"}', "$.hub"),
        ("hub.profile_updated", "{}", "at least one of name, roles, area, contact"),
        ("hub.profile_updated", "[1, 2]", "Expected `object`"),
        ("hub.closed", "{}", "'hub.closed' is not registered"),
        ("hub.profile_updated", '{"area": "x", "contcat": "y"}', "unknown field 'contcat'"),
    ],
)
def test_append_rejects_a_bad_body_with_exit_2_and_appends_nothing(
    runner: CliRunner, hub: tuple[Path, str], kind: str, body: str, says: str
) -> None:
    data, _ = hub
    result = append(runner, data, kind, body)
    assert result.exit_code == 2, result.output
    assert says in result.stderr
    assert result.stdout == ""
    assert count(data) == 0


def test_append_names_the_known_kinds_for_an_unknown_one(
    runner: CliRunner, hub: tuple[Path, str]
) -> None:
    result = append(runner, hub[0], "hub.closed", "{}")
    assert "unknown_kind" in result.stderr
    assert "hub.registered" in result.stderr and "hub.profile_updated" in result.stderr


def test_append_refuses_after_this_hubs_key_signed_a_fork(
    runner: CliRunner, hub: tuple[Path, str]
) -> None:
    data, hub_id = hub
    assert append(runner, data, "hub.registered", REGISTERED).exit_code == 0
    twin = ChainWriter(NET, HubFolder.open(data).key())  # a cloned key signs its own seq 1
    assert ingest(data, [twin.next("hub.registered", registered("Clone"))]) == [Status.FORK]
    result = append(runner, data, "hub.profile_updated", '{"area": "x"}')
    assert result.exit_code == 1
    assert "forked at seq 1" in result.stderr and hub_id in result.stderr
    assert count(data) == 1


# -- reading the log ----------------------------------------------------------------------


@pytest.fixture
def busy_hub(
    runner: CliRunner, hub: tuple[Path, str]
) -> tuple[Path, str, ChainWriter, list[bytes]]:
    """Own seq 1 and 2 appended, then a peer's seq 1 to 3 ingested."""
    data, hub_id = hub
    assert append(runner, data, "hub.registered", REGISTERED).exit_code == 0
    assert append(runner, data, "hub.profile_updated", '{"area": "Town"}').exit_code == 0
    peer = ChainWriter(NET, SigningKey.generate())
    records = [peer.next("hub.registered", registered("Peer"))]
    records += [peer.next("hub.profile_updated", update(n)) for n in (2, 3)]
    assert ingest(data, records) == [Status.ACCEPTED] * 3
    return data, hub_id, peer, records


def show_json(runner: CliRunner, data: Path, *args: str) -> list[dict[str, object]]:
    result = invoke(runner, "log", "show", "--data", data, "--json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_show_prints_one_line_per_event_in_local_order(
    runner: CliRunner, busy_hub: tuple[Path, str, ChainWriter, list[bytes]]
) -> None:
    data, hub_id, peer, _ = busy_hub
    result = invoke(runner, "log", "show", "--data", data)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    assert hub_id[:14] in lines[0] and "#1" in lines[0] and "hub.registered" in lines[0]
    assert '"area":"Town"' in lines[1]
    assert display(peer.hub)[:14] in lines[4] and "#3" in lines[4]


def test_show_json_prints_one_object_per_line(
    runner: CliRunner, busy_hub: tuple[Path, str, ChainWriter, list[bytes]]
) -> None:
    data, hub_id, peer, records = busy_hub
    events = show_json(runner, data)
    assert [e["pos"] for e in events] == [1, 2, 3, 4, 5]
    assert set(events[0]) == {"pos", "hub", "seq", "id", "prev", "ts", "kind", "body"}
    assert [(e["hub"], e["seq"]) for e in events] == [
        (hub_id, 1), (hub_id, 2), (display(peer.hub), 1), (display(peer.hub), 2),
        (display(peer.hub), 3),
    ]  # fmt: skip
    assert events[0]["prev"] is None and events[1]["prev"] == events[0]["id"]
    assert [e["id"] for e in events[2:]] == [hashlib.sha256(r).hexdigest() for r in records]
    assert events[4]["body"] == {"area": "area 3"}  # an update sends only what it changes


def test_show_filters_by_hub_kind_and_limit(
    runner: CliRunner, busy_hub: tuple[Path, str, ChainWriter, list[bytes]]
) -> None:
    data, hub_id, peer, _ = busy_hub
    peer_id = display(peer.hub)
    assert [e["seq"] for e in show_json(runner, data, "--hub", peer_id)] == [1, 2, 3]
    assert {e["hub"] for e in show_json(runner, data, "--hub", hub_id)} == {hub_id}
    kinds = show_json(runner, data, "--kind", "hub.registered")
    assert [(e["hub"], e["kind"]) for e in kinds] == [
        (hub_id, "hub.registered"),
        (peer_id, "hub.registered"),
    ]
    assert [e["pos"] for e in show_json(runner, data, "--limit", "2")] == [1, 2]
    both = show_json(
        runner, data, "--hub", peer_id, "--kind", "hub.profile_updated", "--limit", "1"
    )
    assert [(e["hub"], e["seq"]) for e in both] == [(peer_id, 2)]
    human = invoke(runner, "log", "show", "--data", data, "--limit", "3")
    assert len(human.stdout.splitlines()) == 3


def test_show_limit_counts_across_pages(runner: CliRunner, hub: tuple[Path, str]) -> None:
    data, _ = hub
    peer = ChainWriter(NET, SigningKey.generate())
    records = [peer.next("hub.registered", registered())]
    records += [peer.next("hub.profile_updated", update(n)) for n in range(2, 603)]
    ingest(data, records)
    assert len(show_json(runner, data)) == 602
    assert [e["seq"] for e in show_json(runner, data, "--limit", "501")][-2:] == [500, 501]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--hub", "hub:notanid"], "is not a hub id"),
        (["--hub", "abc"], "hub ids start with 'hub:'"),
        (["--limit", "0"], "--limit"),
    ],
)
def test_show_rejects_bad_filters_with_exit_2(
    runner: CliRunner, hub: tuple[Path, str], args: list[str], says: str
) -> None:
    result = invoke(runner, "log", "show", "--data", hub[0], *args)
    assert result.exit_code == 2
    assert says in result.stderr


def test_show_of_an_empty_log_prints_nothing(runner: CliRunner, hub: tuple[Path, str]) -> None:
    result = invoke(runner, "log", "show", "--data", hub[0])
    assert (result.exit_code, result.stdout) == (0, "")


def test_kinds_lists_the_registered_kinds(runner: CliRunner) -> None:
    human = invoke(runner, "log", "kinds")
    assert human.exit_code == 0
    for kind in ("hub.registered", "hub.admitted", "hub.profile_updated"):
        assert kind in human.stdout
    rows = json.loads(invoke(runner, "log", "kinds", "--json").stdout)
    by_kind = {row["kind"]: row for row in rows}
    assert by_kind["hub.registered"]["fields"] == ["name", "roles", "area", "contact", "seal_key?"]
    assert by_kind["hub.admitted"]["fields"] == ["hub", "name?", "note?"]
    assert by_kind["hub.profile_updated"]["fields"] == [
        "name?",
        "roles?",
        "area?",
        "contact?",
        "seal_key?",
    ]
    assert {row["version"] for row in rows} == {1}
    assert all(row["about"] for row in rows)


def test_heads_json_maps_each_hub_to_seq_and_id(
    runner: CliRunner, busy_hub: tuple[Path, str, ChainWriter, list[bytes]]
) -> None:
    data, hub_id, peer, records = busy_hub
    result = invoke(runner, "log", "heads", "--data", data, "--json")
    assert result.exit_code == 0
    heads = json.loads(result.stdout)
    own_last = show_json(runner, data, "--hub", hub_id)[-1]
    assert heads == {
        hub_id: {"seq": 2, "id": own_last["id"]},
        display(peer.hub): {"seq": 3, "id": hashlib.sha256(records[-1]).hexdigest()},
    }
    human = invoke(runner, "log", "heads", "--data", data)
    assert hub_id in human.stdout and own_last["id"] in human.stdout


def test_heads_json_of_an_empty_log_is_an_empty_object(
    runner: CliRunner, hub: tuple[Path, str]
) -> None:
    assert json.loads(invoke(runner, "log", "heads", "--data", hub[0], "--json").stdout) == {}


def forked_peer(data: Path) -> tuple[ChainWriter, list[bytes], bytes]:
    """A peer with seq 1 and 2 stored and a second, different seq 2 ingested: a fork proof."""
    peer = ChainWriter(NET, SigningKey.generate())
    records = [peer.next("hub.registered", registered("Peer"))]
    twin = peer.fork()
    records.append(peer.next("hub.profile_updated", update(2)))
    other = twin.next("hub.profile_updated", update(20))
    assert ingest(data, [*records, other]) == [Status.ACCEPTED, Status.ACCEPTED, Status.FORK]
    return peer, records, other


def test_forks_lists_fork_proofs(runner: CliRunner, hub: tuple[Path, str]) -> None:
    data, _ = hub
    assert json.loads(invoke(runner, "log", "forks", "--data", data, "--json").stdout) == []
    assert invoke(runner, "log", "forks", "--data", data).stdout.strip() == "no forks"
    peer, records, other = forked_peer(data)
    [row] = json.loads(invoke(runner, "log", "forks", "--data", data, "--json").stdout)
    assert set(row) == {"hub", "seq", "ids", "detected"}
    assert (row["hub"], row["seq"]) == (display(peer.hub), 2)
    assert sorted(row["ids"]) == sorted(hashlib.sha256(r).hexdigest() for r in (records[1], other))
    human = invoke(runner, "log", "forks", "--data", data).stdout
    assert f"{display(peer.hub)} seq 2" in human


# -- export and audit ---------------------------------------------------------------------


def export(runner: CliRunner, data: Path, out: Path, *args: str) -> Result:
    result = invoke(runner, "log", "export", "--data", data, "--out", out, *args)
    assert result.exit_code == 0, result.output
    return result


def test_export_writes_every_record_and_says_so(
    runner: CliRunner, busy_hub: tuple[Path, str, ChainWriter, list[bytes]], tmp_path: Path
) -> None:
    data, _, peer, records = busy_hub
    out = tmp_path / "all.hublog"
    result = export(runner, data, out)
    written = frames(out)
    assert len(written) == 5
    assert not out.with_name(out.name + ".part").exists()
    assert quiet_stderr(result, f"wrote 5 records ({out.stat().st_size} bytes) to {out}\n")
    one = tmp_path / "peer.hublog"
    export(runner, data, one, "--hub", display(peer.hub))
    assert [raw for _, raw in frames(one)] == records


def test_audit_verifies_an_export_and_reports_each_hub(
    runner: CliRunner, busy_hub: tuple[Path, str, ChainWriter, list[bytes]], tmp_path: Path
) -> None:
    data, hub_id, peer, _ = busy_hub
    out = tmp_path / "all.hublog"
    export(runner, data, out)
    result = invoke(runner, "audit", "verify", out)
    assert result.exit_code == 0, result.output
    assert f"{out}: 5 records, 2 hubs — verified" in result.stdout
    rows = {cells[0]: cells[1:] for cells in table_rows(result.stdout)}
    # hub: events, head seq, head id, forks, status
    assert rows[hub_id][:2] == ["2", "2"] and rows[hub_id][3:] == ["-", "ok"]
    assert rows[display(peer.hub)][:2] == ["3", "3"] and rows[display(peer.hub)][3:] == ["-", "ok"]
    assert set(rows) == {hub_id, display(peer.hub)}
    assert quiet_stderr(result)


def test_export_into_a_missing_folder_is_a_usage_error(
    runner: CliRunner, hub: tuple[Path, str], tmp_path: Path
) -> None:
    out = tmp_path / "no" / "such" / "folder" / "x.hublog"
    result = invoke(runner, "log", "export", "--data", hub[0], "--out", out)
    assert result.exit_code == 2
    assert f"there is no folder {out.parent}" in result.stderr
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback


def test_audit_prints_paths_verbatim(
    runner: CliRunner, busy_hub: tuple[Path, str, ChainWriter, list[bytes]], tmp_path: Path
) -> None:
    folder = tmp_path / "a[red]b"
    folder.mkdir()
    out = folder / "[bold]all.hublog"
    result = export(runner, busy_hub[0], out)
    assert str(out) in result.stderr
    assert f"{out}: 5 records, 2 hubs — verified" in invoke(runner, "audit", "verify", out).stdout


def test_audit_verifies_a_data_folder(
    runner: CliRunner, busy_hub: tuple[Path, str, ChainWriter, list[bytes]]
) -> None:
    data, *_ = busy_hub
    result = invoke(runner, "audit", "verify", data)
    assert result.exit_code == 0, result.output
    assert "5 records, 2 hubs — verified" in result.stdout
    assert quiet_stderr(result)


def test_audit_json_reports_each_source(
    runner: CliRunner, busy_hub: tuple[Path, str, ChainWriter, list[bytes]], tmp_path: Path
) -> None:
    data, hub_id, peer, records = busy_hub
    out = tmp_path / "all.hublog"
    export(runner, data, out)
    result = invoke(runner, "audit", "verify", out, data, "--json")
    assert result.exit_code == 0
    file_report, folder_report = json.loads(result.stdout)
    assert file_report == {
        "source": str(out),
        "ok": True,
        "records": 5,
        "format_error": None,
        "failures": 0,
        "first_failures": [],
        "hubs": file_report["hubs"],
    }
    assert file_report["hubs"][display(peer.hub)] == {
        "events": 3,
        "head_seq": 3,
        "head_id": hashlib.sha256(records[-1]).hexdigest(),
        "forks": [],
        "bad": 0,
    }
    assert file_report["hubs"][hub_id]["head_seq"] == 2
    assert folder_report["source"] == str(data)
    assert folder_report["hubs"] == file_report["hubs"]


def test_audit_names_hub_seq_offset_and_reason_of_a_tampered_record(
    runner: CliRunner, busy_hub: tuple[Path, str, ChainWriter, list[bytes]], tmp_path: Path
) -> None:
    data, *_ = busy_hub
    out = tmp_path / "all.hublog"
    export(runner, data, out)
    offset, raw = frames(out)[-1]
    envelope = msgspec.msgpack.decode(msgspec.msgpack.decode(raw)[0])
    hub, seq = envelope[2], envelope[4]
    tampered = bytearray(out.read_bytes())
    tampered[-1] ^= 0x01  # the last bit of the last record's signature
    out.write_bytes(bytes(tampered))

    result = invoke(runner, "audit", "verify", out)
    assert result.exit_code == 1
    assert "FAILED" in result.stdout
    assert f"{display(hub)} seq {seq} at byte offset {offset}: bad_signature" in result.stdout

    report = json.loads(invoke(runner, "audit", "verify", out, "--json").stdout)[0]
    assert (report["ok"], report["failures"]) == (False, 1)
    assert report["first_failures"][0].startswith(f"{display(hub)} seq {seq} at byte offset")
    assert report["hubs"][display(hub)]["bad"] == 1


def test_audit_fails_a_truncated_file(
    runner: CliRunner, busy_hub: tuple[Path, str, ChainWriter, list[bytes]], tmp_path: Path
) -> None:
    data, *_ = busy_hub
    out = tmp_path / "all.hublog"
    export(runner, data, out)
    out.write_bytes(out.read_bytes()[:-5])
    result = invoke(runner, "audit", "verify", out)
    assert result.exit_code == 1
    assert "truncated" in result.stdout
    not_hublog = tmp_path / "x.hublog"
    not_hublog.write_bytes(b"PK\x03\x04 not a hublog")
    result = invoke(runner, "audit", "verify", not_hublog)
    assert result.exit_code == 1 and "not a .hublog file" in result.stdout


def test_audit_fails_on_forks_unless_allowed(
    runner: CliRunner, hub: tuple[Path, str], tmp_path: Path
) -> None:
    data, _ = hub
    peer, _, _ = forked_peer(data)
    out = tmp_path / "forked.hublog"
    export(runner, data, out)
    assert len(frames(out)) == 3  # the proof's second record travels with the export
    fork_line = f"fork: {display(peer.hub)} signed two events at seq 2"

    strict = invoke(runner, "audit", "verify", out)
    assert strict.exit_code == 1
    assert fork_line in strict.stdout and "FAILED" in strict.stdout

    allowed = invoke(runner, "audit", "verify", out, "--allow-forks")
    assert allowed.exit_code == 0
    assert fork_line in allowed.stdout and "verified" in allowed.stdout
    report = json.loads(invoke(runner, "audit", "verify", out, "--allow-forks", "--json").stdout)
    assert report[0]["ok"] is True and report[0]["hubs"][display(peer.hub)]["forks"] == [2]

    folder = invoke(runner, "audit", "verify", data)
    assert folder.exit_code == 1 and fork_line in folder.stdout


def test_audit_of_a_path_that_does_not_exist_is_a_usage_error(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = invoke(runner, "audit", "verify", tmp_path / "missing.hublog")
    assert result.exit_code == 2
    assert "missing.hublog is neither a .hublog file nor a hub data folder" in result.stderr


def test_audit_of_a_folder_that_is_not_a_hub_fails_clearly(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = invoke(runner, "audit", "verify", tmp_path)
    assert result.exit_code == 1
    assert "is not a hub data folder" in result.stderr


def test_audit_without_sources_is_a_usage_error(runner: CliRunner) -> None:
    assert invoke(runner, "audit", "verify").exit_code == 2


# -- the demo and real processes ----------------------------------------------------------


def test_demo_shows_three_verified_hubs_and_catches_tampering(
    runner: CliRunner, tmp_path: Path
) -> None:
    result = invoke(runner, "demo", "--hubs", "3", "--events", "10", "--keep", tmp_path / "demo")
    assert result.exit_code == 0, result.output
    names = ("Darlington Advice Hub", "Care Navigators North", "Volunteer Centre")
    # The first table: hub, hub id, events held, same heads, forks; then the views' hashes.
    rows, hashes = table_rows(result.stdout)[:3], table_rows(result.stdout)[3:]
    assert [row[0] for row in rows] == list(names)
    assert [row[3:] for row in rows] == [["✔", "0"]] * 3
    assert [row[0] for row in hashes] == list(names)
    assert all(row[1:] == hashes[0][1:] for row in hashes)
    assert "rated 4.50 (2 ratings)" in result.stdout
    assert "one flipped bit in tampered.hublog: audit FAILED" in result.stdout
    assert re.search(
        r"first bad record: hub:[a-z2-7]{52} seq \d+ at byte offset \d+", result.stdout
    )
    assert invoke(runner, "audit", "verify", tmp_path / "demo" / "hub1.hublog").exit_code == 0
    assert invoke(runner, "audit", "verify", tmp_path / "demo" / "tampered.hublog").exit_code == 1


def run_hubnode(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HUBNODE), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


def test_installed_command_shows_help() -> None:
    result = run_hubnode("--help")
    assert result.returncode == 0
    for command in ("init", "id", "demo", "log", "audit"):
        assert command in result.stdout
    assert run_hubnode("audit", "--help").returncode == 0


def test_installed_command_exit_codes(tmp_path: Path) -> None:
    data = tmp_path / "hub"
    init = run_hubnode("init", "--data", data, "--name", "Hub", "--network", NET)
    assert init.returncode == 0 and HUB_ID.fullmatch(init.stdout.strip())
    assert run_hubnode("log", "append", "-d", data, "--kind", "x.y", "--json", "{}").returncode == 2
    appended = run_hubnode(
        "log", "append", "-d", data, "--kind", "hub.registered", "--json", REGISTERED
    )
    assert appended.returncode == 0
    out = tmp_path / "hub.hublog"
    exported = run_hubnode("log", "export", "-d", data, "-o", out)
    assert exported.returncode == 0
    audited = run_hubnode("audit", "verify", out)
    assert audited.returncode == 0
    assert not any(c in audited.stderr + exported.stderr for c in BAR_CHARS)  # piped: no bars
    out.write_bytes(out.read_bytes()[:-1] + bytes([out.read_bytes()[-1] ^ 1]))
    assert run_hubnode("audit", "verify", out).returncode == 1
    assert run_hubnode("audit", "verify", tmp_path / "missing").returncode == 2
