"""``hubnode demo``: hubs as separate processes federate over one NATS cluster, share work,
and carry two people's pathways (who can read whom, an erasure confirmed by every holder).

Real processes throughout: the installed console script runs the demo, which starts a
``hubnode run`` node per hub, each with its own nats-server. Every process the demo starts
names its hub's data folder on its command line, so ``/proc`` shows what ran and what is
left over. The demo keeps its hubs' data folders (``--keep``), so the test rebuilds each
hub's views from its log on its own and checks them against what the demo printed.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hubnode import demo
from hubnode.cli import app
from hubnode.config import HubFolder
from hubnode.privacy.keyring import Keyring
from hubnode.projections import ProjectionRunner, installed_projections

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/cmdline").exists(), reason="finds processes through /proc (Linux)"
)

HUBNODE = Path(sys.executable).parent / "hubnode"
HUBS, EVENTS = 3, 30
SHARED = 16
"""The shared work: 5 events (2 services, an offer, a request, a tender), then 4 (a transfer
proposed, a cluster formed, 2 ratings), 3 (the transfer confirmed, 2 joins), 4 (3 lots
assigned, a bid)."""
PATHWAY = 18
"""The pathway story: hub 1 logs 2 enquiries with their consent, makes 2 referrals, erases
person 2, records a follow-up with an advocacy case and closes the case (10); hub 2 accepts
and completes with an outcome (3), hub 3 accepts (1); hubs 1 and 3, which held person 2's
key, each rotate their seal key and confirm the erasure (4)."""
HELD = HUBS * (1 + EVENTS) + HUBS - 1 + SHARED + PATHWAY
"""Each hub registers and appends EVENTS updates; hub 1 also admits the other hubs."""
PROJECTIONS = ["network", "directory", "skills", "tenders", "feedback", "pathway"]


def processes_naming(path: Path) -> dict[int, str]:
    """Live processes whose command line contains ``path``: pid → command line."""
    needle = str(path).encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()  # empty for a zombie
        except OSError:
            continue  # exited while we looked
        if needle in cmdline:
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


def tables(text: str) -> list[list[list[str]]]:
    """The body cells of each rich table in ``text``: tables, rows, cells."""
    found: list[list[list[str]]] = []
    in_table = False
    for line in text.splitlines():
        if line.startswith("│"):
            if not in_table:
                found.append([])
            found[-1].append([cell.strip() for cell in line.split("│")[1:-1]])
        in_table = line.startswith("│")
    return found


async def run_demo_watching(root: Path, *args: str) -> tuple[int, str, str, dict[int, str]]:
    """Run ``hubnode demo --keep root ARGS``; also every process seen naming ``root``."""
    proc = await asyncio.create_subprocess_exec(
        str(HUBNODE),
        "demo",
        "--keep",
        str(root),
        *args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    output = asyncio.ensure_future(proc.communicate())
    seen: dict[int, str] = {}
    try:
        async with asyncio.timeout(60):
            while not output.done():
                seen.update(processes_naming(root))
                await asyncio.wait([output], timeout=0.05)
    finally:
        if proc.returncode is None:
            proc.kill()
    stdout, stderr = await output
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode(), seen


async def test_demo_federates_hub_processes_over_a_nats_cluster_and_stops_them(
    tmp_path: Path,
) -> None:
    root = tmp_path / "demo"
    code, out, err, seen = await run_demo_watching(root, "--hubs", str(HUBS), "--events", "30")
    assert code == 0, out + err

    # One `hubnode run` and one nats-server per hub, each a separate process.
    nodes = {pid for pid, cmd in seen.items() if " run --data " in cmd}
    servers = {pid for pid, cmd in seen.items() if "nats-server" in cmd}
    assert len(nodes) == HUBS and len(servers) == HUBS, seen
    assert processes_naming(root) == {}, "the demo left processes running"

    # hub, hub id, events held, same heads, forks: every hub holds everything, no fork.
    rows, hashes = tables(out)
    assert [row[0] for row in rows] == [p.name for p in demo.PROFILES[:HUBS]]
    assert all(re.fullmatch(r"hub:[a-z2-7]{10}…", row[1]) for row in rows)
    assert [row[2:] for row in rows] == [[str(HELD), "✔", "0"]] * HUBS
    assert f"every hub holds all {HELD} events" in out
    assert f"stopped {HUBS} nodes (SIGTERM)" in out

    # Every hub's views hash the same, and so do views built afresh from each kept log.
    assert "views, built from its own log (projection hashes): identical on every hub" in out
    assert [row[0] for row in hashes] == [p.name for p in demo.PROFILES[:HUBS]]
    assert all(re.fullmatch(r"[0-9a-f]{12}…", cell) for row in hashes for cell in row[1:])
    assert all(row[1:] == hashes[0][1:] for row in hashes)
    for n, row in enumerate(hashes, 1):
        folder = HubFolder.open(root / f"hub{n}")
        fresh = ProjectionRunner(
            folder.log_path, tmp_path / f"views{n}.sqlite", installed_projections()
        )
        fresh.catch_up()
        assert [fresh.hash(name)[:12] + "…" for name in PROJECTIONS] == row[1:]
        fresh.close()

    # A few lines of each view, read at hub 3, which published neither service.
    advice, navigators, volunteers = (p.name for p in demo.PROFILES[:3])
    for line in (
        "what the views show, read at Volunteer Centre (hub 3), which published no service:",
        "directory search --area DL3:",
        f"Carers' café — {navigators} (carers, community); free; not rated yet",
        f"Debt and benefits advice — {advice} (debt, benefits, advice); free; "
        "rated 4.50 (2 ratings)",
        f"skills match: 'Help with benefit forms' offered by {advice} ↔ "
        f"'Help for carers with PIP forms' requested by {navigators} "
        "(tags form-filling; districts DL3)",
        f"time credits: 3 h from {navigators} to {advice}, confirmed",
        f"balances: {advice} +3 h, {navigators} -3 h",
        f"'Community support and advice, 2027-2029' for Darlington Borough Council, "
        f"240,000 GBP, shared by {volunteers}",  # the last of the 3 hubs shared it
        f"cluster dl-support led by {advice}: {advice}, ",
        f"lot-1 'Advice and debt casework' → {advice}",
        f"lot-2 'Support for unpaid carers' → {navigators}",
        f"lot-3 'Volunteer transport' → {volunteers}",
        "bid for lots lot-1, lot-2, lot-3: 232,000 GBP",
        f"feedback: Debt and benefits advice of {advice}: 4.50 (2 ratings)",
    ):
        assert line in out, line
    (members,) = re.findall(r"cluster dl-support led by [^:]+: (.*)", out)
    assert sorted(members.split(", ")) == sorted([advice, navigators, volunteers])

    # The pathway story, through the same actions as the commands: who can read whom.
    for line in (
        f"{advice} logged person 1 (a carer; she agreed {navigators} may hold her details)",
        f"{navigators} and {volunteers} opened their key boxes",
        f"{navigators} accepted person 1's referral and {volunteers} person 2's",
        f"{navigators} completed person 1's referral (outcome: a place at the weekly café)",
        f"{advice} followed person 1 up: not satisfied",
        f"{advice} opened an advocacy case",
        f"{advice} closed the advocacy case as resolved",
    ):
        assert line in out, line
    (person1, person2) = re.findall(r"person \d \((s-[a-z2-7]{20})\)", out)[:2]
    readers = [
        [cell.strip() for cell in line.split("│")]
        for line in out.splitlines()
        if line.startswith("  ") and line.count(" │ ") == 2 and "person 1" not in line
    ]
    destroyed = r"erased — key destroyed at \d\d:\d\d:\d\d UTC"
    assert [row[0] for row in readers] == [advice, navigators, volunteers]
    (a1, a2), (b1, b2), (c1, c2) = (row[1:] for row in readers)
    assert a1 == b1 == "reads the details: Maureen Atkinson"  # the consent named hub 2
    assert c1 == "sealed — no key"
    assert re.fullmatch(destroyed, a2) and re.fullmatch(destroyed, c2)  # held person 2's key
    assert b2 == "erased — never held the key"
    (confirmed,) = re.findall(
        rf"person 2 erased by {advice}: every hub that held the key confirmed destroying it — "
        rf"(.*); {navigators} never held it",
        out,
    )
    assert sorted(re.sub(r" \(seq \d+\)", "", confirmed).split(", ")) == [advice, volunteers]
    # The kept keyrings agree: only the consented hubs hold person 1's key; nobody person 2's.
    owner = HubFolder.open(root / "hub1").hub
    for n, reads, held in ((1, True, True), (2, True, False), (3, False, True)):
        with Keyring.open(HubFolder.open(root / f"hub{n}")) as ring:
            assert ring.has_key(owner, person1) is reads
            assert not ring.has_key(owner, person2)
            if held:  # confirmed: the tombstone says when the key was destroyed
                assert ring.destroyed_at(owner, person2) is not None

    assert f"hub1.hublog: {HELD} records of {HUBS} hubs" in out and "— verified" in out
    assert "one flipped bit in tampered.hublog: audit FAILED" in out
    assert re.search(r"first bad record: hub:[a-z2-7]{52} seq \d+ at byte offset \d+", out)
    audit = CliRunner().invoke
    assert audit(app, ["audit", "verify", str(root / "hub1.hublog")]).exit_code == 0
    assert audit(app, ["audit", "verify", str(root / "tampered.hublog")]).exit_code == 1

    for n in range(1, HUBS + 1):
        hub = root / f"hub{n}"
        node_log = (hub / "node.log").read_text()
        assert "embedded nats-server listening" in node_log and "stopped" in node_log
        assert "Traceback" not in node_log
        server_log = (hub / "run" / "nats" / "nats-server.log").read_text()
        assert "Route connection created" in server_log  # joined the cluster
        assert "Server Exiting" in server_log  # stopped by its node, not killed


def test_demo_removes_its_temporary_folders(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--hubs", "3", "--events", "5"])
    assert result.exit_code == 0, result.output
    match = re.search(r"data folders in (\S+) \(removed at the end", result.stdout)
    assert match, result.stdout
    root = Path(match.group(1))
    assert f"removed {root}" in result.stdout
    assert not root.exists()
    assert processes_naming(root) == {}


def test_demo_fails_clearly_and_stops_every_node_when_hubs_do_not_converge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Trust takes a few gossip rounds; 50 ms is never enough.
    monkeypatch.setattr(demo, "TRUST_TIMEOUT", 0.05)
    root = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--hubs", "3", "--events", "5", "--keep", root])
    assert result.exit_code == 1
    assert "no trust between all hubs within 0 s" in result.stderr
    # The error shows what each hub holds and the end of each node's log.
    for n in (1, 2):
        assert f"hub{n} {demo.PROFILES[n - 1].name} holds" in result.stderr
        assert f"{root / f'hub{n}' / 'node.log'} ends:" in result.stderr
    assert "embedded nats-server listening" in result.stderr
    assert processes_naming(root) == {}
    assert "stopped" in (root / "hub1" / "node.log").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hubs", "2"], "'--hubs': Input should be greater than or equal to 3"),
        (["--hubs", "9"], "'--hubs': Input should be less than or equal to 8"),
        (["--events", "0"], "'--events': Input should be greater than or equal to 1"),
    ],
)
def test_demo_refuses_sizes_it_cannot_show(args: list[str], message: str) -> None:
    result = CliRunner(env={"COLUMNS": "250"}).invoke(app, ["demo", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_demo_refuses_a_keep_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("mine")
    result = CliRunner().invoke(app, ["demo", "--keep", str(tmp_path)])
    assert result.exit_code == 1
    assert "is not an empty folder; pass a new one to --keep" in result.stderr
    assert (tmp_path / "something").read_text() == "mine"
