"""Skills exchange and time credits: kinds, the ``skills`` view, the ledger and the CLI."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from hubnode import HubFolder
from hubnode.cli import app
from hubnode.errors import InvalidEvent
from hubnode.events.ids import hub_display
from hubnode.events.kinds import KINDS
from hubnode.events.skills import (
    SkillOffered,
    SkillRequested,
    SkillWithdrawn,
    TransferConfirmed,
    TransferProposed,
    TransferReversed,
)
from hubnode.projections import ProjectionRunner
from hubnode.projections.skills import SkillsProjection
from hubnode.testing import ChainWriter

from .conftest import build_view, sync

NET = "test-net"


# -- building views ---------------------------------------------------------------------


def build(tmp: Path, records: Sequence[bytes]) -> ProjectionRunner:
    """A log holding ``records`` (ingested in that order) and a caught-up view."""
    runner = build_view(tmp, records, SkillsProjection)
    assert [s.status for s in runner.status()] == ["serving"]
    return runner


def interleave(chains: Sequence[Sequence[bytes]], order: Sequence[int]) -> list[bytes]:
    """Merge ``chains`` taking the next record of chain ``i`` for each ``i`` in ``order``."""
    cursors = [iter(c) for c in chains]
    return [next(cursors[i]) for i in order]


def labels(chains: Sequence[Sequence[bytes]]) -> list[int]:
    return [i for i, chain in enumerate(chains) for _ in chain]


def hid(w: ChainWriter) -> str:
    return hub_display(w.hub)


def offer(oid: str, tags: tuple[str, ...], area: tuple[str, ...]) -> SkillOffered:
    return SkillOffered(offer_id=oid, tags=tags, title=f"offer {oid}", area=area)


def request(rid: str, tags: tuple[str, ...], area: tuple[str, ...]) -> SkillRequested:
    return SkillRequested(request_id=rid, tags=tags, title=f"request {rid}", area=area)


def propose(tid: str, payer: ChainWriter, payee: ChainWriter, seconds: int) -> TransferProposed:
    return TransferProposed(
        transfer_id=tid, from_hub=hid(payer), to_hub=hid(payee), seconds=seconds
    )


def confirm(proposer: ChainWriter, tid: str) -> TransferConfirmed:
    return TransferConfirmed(proposer=hid(proposer), transfer_id=tid)


def reverse(proposer: ChainWriter, tid: str, why: str = "mistake") -> TransferReversed:
    return TransferReversed(proposer=hid(proposer), transfer_id=tid, reason=why)


def transfers(runner: ProjectionRunner) -> dict[str, str]:
    rows = runner.query("skills", "SELECT transfer_id, state FROM {transfers}")
    return dict(rows)


def balances(runner: ProjectionRunner) -> dict[bytes, tuple[int, bool]]:
    rows = runner.query("skills", "SELECT hub, seconds, negative FROM {balances}")
    return {h: (s, bool(n)) for h, s, n in rows}


def ignored(runner: ProjectionRunner) -> dict[tuple[bytes, int], str]:
    rows = runner.query("skills", "SELECT hub, seq, reason FROM {_ignored}")
    return {(h, s): r for h, s, r in rows}


class History:
    """Three hubs offering, requesting and trading time, with every rule broken once."""

    def __init__(self) -> None:
        a, b, c = (ChainWriter(NET) for _ in range(3))
        self.a, self.b, self.c = a, b, c
        self.chains: list[list[bytes]] = [
            [
                a.next("skill.offered", offer("o1", ("gardening", "diy"), ("DL1", "DL3"))),  # 1
                a.next("skill.requested", request("r3", ("gardening",), ("DL1",))),  # 2
                a.next("time.transfer_proposed", propose("t1", a, b, 3600)),  # 3
                a.next("time.transfer_proposed", propose("t3", a, c, 600)),  # 4
                a.next("time.transfer_confirmed", confirm(c, "t4")),  # 5
                a.next("time.transfer_reversed", reverse(a, "t3")),  # 6: not confirmed
                a.next("time.transfer_proposed", propose("t1", a, b, 60)),  # 7: id reused
                a.next("time.transfer_confirmed", confirm(a, "t1")),  # 8: own proposal
                a.next("time.transfer_confirmed", confirm(b, "t2")),  # 9: third hub
                a.next("skill.offered", offer("o1", ("music",), ("DL1",))),  # 10: id reused
                a.next("skill.withdrawn", SkillWithdrawn(request_id="r3")),  # 11
                a.next("time.transfer_reversed", reverse(c, "t4", "again")),  # 12: C's too
            ],
            [
                b.next("skill.requested", request("r1", ("gardening",), ("DL3", "DL9"))),  # 1
                b.next("time.transfer_confirmed", confirm(a, "t1")),  # 2
                b.next("time.transfer_proposed", propose("t2", c, b, 1800)),  # 3
                b.next("skill.offered", offer("o2", ("gardening",), ("DL1",))),  # 4
                b.next("time.transfer_confirmed", confirm(a, "t5")),  # 5: unknown transfer
                b.next("time.transfer_reversed", reverse(c, "t4")),  # 6: not a party
                b.next("skill.withdrawn", SkillWithdrawn(offer_id="nope")),  # 7: unknown
            ],
            [
                c.next("skill.requested", request("r2", ("diy",), ("DL9",))),  # 1: no district
                c.next("time.transfer_confirmed", confirm(b, "t2")),  # 2
                c.next("time.transfer_confirmed", confirm(b, "t2")),  # 3: twice
                c.next("time.transfer_proposed", propose("t4", c, a, 7200)),  # 4
                c.next("time.transfer_reversed", reverse(c, "t4", "not delivered")),  # 5
                c.next("time.transfer_proposed", propose("t6", a, b, 5)),  # 6: not a party
            ],
        ]

    def records(self, order: Sequence[int] | None = None) -> list[bytes]:
        return interleave(self.chains, order or labels(self.chains))


# -- kinds ------------------------------------------------------------------------------

HUB_A = hub_display(b"\x01" * 32)
HUB_B = hub_display(b"\x02" * 32)
GOOD: dict[str, dict[str, Any]] = {
    "skill.offered": {
        "offer_id": "o-1",
        "tags": ["gardening", "form-filling"],
        "title": "Help",
        "area": ["DL1", "DL14"],
        "hours_per_week": 2.5,
    },
    "skill.requested": {
        "request_id": "r-1",
        "tags": ["minibus"],
        "title": "Driver",
        "description": "Tuesdays",
        "area": ["EC1A"],
        "needed_by": "2026-03-01",
    },
    "skill.withdrawn": {"offer_id": "o-1"},
    "time.transfer_proposed": {
        "transfer_id": "t-1",
        "from_hub": HUB_A,
        "to_hub": HUB_B,
        "seconds": 3600,
        "memo": "gardening",
        "offer": {"hub": HUB_B, "id": "o-1"},
    },
    "time.transfer_confirmed": {"proposer": HUB_A, "transfer_id": "t-1"},
    "time.transfer_reversed": {"proposer": HUB_A, "transfer_id": "t-1", "reason": "error"},
}


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_good_bodies_round_trip(kind: str) -> None:
    body = KINDS.body_from_json(kind, json.dumps(GOOD[kind]))
    assert KINDS.decode_body(kind, KINDS.encode_body(kind, body)) == body


BAD_HUB = "hub:" + "a" * 51 + "b"  # matches the pattern, but the last character has stray bits


@pytest.mark.parametrize(
    ("kind", "change", "says"),
    [
        ("skill.offered", {"tags": []}, "tags"),
        ("skill.offered", {"tags": ["Gardening"]}, "tags[0]"),
        ("skill.offered", {"tags": ["garden ing"]}, "tags[0]"),
        ("skill.offered", {"tags": ["diy", "diy"]}, "must not repeat"),
        ("skill.offered", {"area": []}, "area"),
        ("skill.offered", {"area": ["dl1"]}, "area[0]"),
        ("skill.offered", {"area": ["Darlington"]}, "area[0]"),
        ("skill.offered", {"hours_per_week": 0}, "hours_per_week"),
        ("skill.offered", {"offer_id": "has space"}, "offer_id"),
        ("skill.offered", {"title": ""}, "title"),
        ("skill.requested", {"needed_by": "2026-02-30"}, "needed_by"),
        ("skill.withdrawn", {"request_id": "r-1"}, "exactly one"),
        ("time.transfer_proposed", {"seconds": 0}, "seconds"),
        ("time.transfer_proposed", {"seconds": -60}, "seconds"),
        ("time.transfer_proposed", {"seconds": 1.5}, "seconds"),
        ("time.transfer_proposed", {"to_hub": HUB_A}, "two different hubs"),
        ("time.transfer_proposed", {"from_hub": BAD_HUB}, "$.from_hub"),
        ("time.transfer_proposed", {"offer": {"hub": HUB_B}}, "id"),
        ("time.transfer_confirmed", {"proposer": "hub:nope"}, "proposer"),
        ("time.transfer_reversed", {"reason": ""}, "reason"),
    ],
)
def test_bad_bodies_are_rejected_naming_the_field(
    kind: str, change: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidEvent) as info:
        KINDS.body_from_json(kind, json.dumps({**GOOD[kind], **change}))
    assert says in str(info.value)
    # A peer's record carrying the same body is rejected by the log too.
    with pytest.raises(InvalidEvent):
        KINDS.decode_body(kind, msgspec.msgpack.encode({**GOOD[kind], **change}))


def test_withdrawal_names_exactly_one_item() -> None:
    for fields in ({}, {"offer_id": "o", "request_id": "r"}):
        with pytest.raises(InvalidEvent, match="exactly one"):
            KINDS.decode_body("skill.withdrawn", msgspec.msgpack.encode(fields))


def test_bodies_from_newer_hubs_with_extra_fields_are_read() -> None:
    newer = {**GOOD["time.transfer_proposed"], "currency": "minutes"}
    body = KINDS.decode_body("time.transfer_proposed", msgspec.msgpack.encode(newer))
    assert isinstance(body, TransferProposed) and body.seconds == 3600


# -- the view ---------------------------------------------------------------------------


def test_history_builds_offers_matches_ledger_and_ignores(tmp_path: Path) -> None:
    h = History()
    a, b, c = h.a.hub, h.b.hub, h.c.hub
    runner = build(tmp_path, h.records())

    assert transfers(runner) == {
        "t1": "confirmed",
        "t2": "confirmed",
        "t3": "proposed",
        "t4": "reversed",
    }
    assert balances(runner) == {
        a: (-3600, True),
        b: (3600 + 1800, False),
        c: (-1800, True),
    }
    matches = runner.query(
        "skills",
        "SELECT offer_hub, offer_id, request_hub, request_id, tags, districts FROM {matches}",
    )
    # o1 (A) ↔ r1 (B) share gardening and DL3; o2 (B) ↔ r3 (A) went when r3 was withdrawn;
    # r2 (C) shares diy with o1 but no district.
    assert matches == [(a, "o1", b, "r1", '["gardening"]', '["DL3"]')]
    offers = runner.query("skills", "SELECT hub, offer_id, title, status FROM {offers}")
    assert sorted(offers) == sorted([(a, "o1", "offer o1", "open"), (b, "o2", "offer o2", "open")])
    assert runner.query("skills", "SELECT status FROM {requests} WHERE request_id = 'r3'") == [
        ("withdrawn",)
    ]

    reasons = ignored(runner)
    expected = {
        (a, 6): "is not confirmed",
        (a, 7): "transfer id 't1' is already used",
        (a, 8): "the proposer cannot confirm its own proposal",
        (a, 9): "only the other party",
        (a, 10): "offer id 'o1' is already used",
        # Both parties reversed t4: the lowest (hub, seq) counts, the other is ignored.
        max((a, 12), (c, 5)): "already reversed",
        (b, 5): "unknown transfer",
        (b, 6): "is not a party",
        (b, 7): "no offer 'nope'",
        (c, 3): "already confirmed",
        (c, 6): "the proposer must be from_hub or to_hub",
    }
    assert set(reasons) == set(expected)
    for key, fragment in expected.items():
        assert fragment in reasons[key], (key, reasons[key])


def test_a_withdrawn_item_leaves_the_matching_index_and_matches_nothing_new(
    tmp_path: Path,
) -> None:
    a, b = ChainWriter(NET), ChainWriter(NET)
    runner = build(
        tmp_path,
        [
            a.next("skill.offered", offer("o1", ("gardening", "diy"), ("DL1", "DL3"))),
            a.next("skill.offered", offer("o2", ("gardening",), ("DL3",))),
            a.next("skill.withdrawn", SkillWithdrawn(offer_id="o1")),
            b.next("skill.requested", request("r1", ("diy", "gardening"), ("DL1", "DL3"))),
        ],
    )
    keys = runner.query("skills", "SELECT item, tag, district, hub, item_id FROM {match_keys}")
    assert sorted(keys) == sorted(
        [("offer", "gardening", "DL3", a.hub, "o2")]
        + [("request", t, d, b.hub, "r1") for t in ("diy", "gardening") for d in ("DL1", "DL3")]
    )
    matches = runner.query("skills", "SELECT * FROM {matches}")
    assert matches == [(a.hub, "o2", b.hub, "r1", '["gardening"]', '["DL3"]')]


def test_confirmation_before_proposal_counts_once_the_proposal_arrives(tmp_path: Path) -> None:
    a, b = ChainWriter(NET), ChainWriter(NET)
    proposal = a.next("time.transfer_proposed", propose("t", a, b, 900))
    confirmation = b.next("time.transfer_confirmed", confirm(a, "t"))
    (tmp_path / "x").mkdir()
    runner = build(tmp_path / "x", [confirmation])
    assert "unknown transfer" in ignored(runner)[b.hub, 1]
    assert transfers(runner) == {}
    runner.close()
    (tmp_path / "y").mkdir()
    runner = build(tmp_path / "y", [confirmation, proposal])
    assert transfers(runner) == {"t": "confirmed"}
    assert ignored(runner) == {}
    assert balances(runner) == {a.hub: (-900, True), b.hub: (900, False)}


def test_reversal_before_confirmation_takes_effect_when_confirmed(tmp_path: Path) -> None:
    a, b = ChainWriter(NET), ChainWriter(NET)
    chain_a = [
        a.next("time.transfer_proposed", propose("t", b, a, 60)),
        a.next("time.transfer_reversed", reverse(a, "t")),
    ]
    confirmation = b.next("time.transfer_confirmed", confirm(a, "t"))
    runner = build(tmp_path, chain_a)
    assert transfers(runner) == {"t": "proposed"}
    assert "is not confirmed" in ignored(runner)[a.hub, 2]
    runner.close()
    (tmp_path / "later").mkdir()
    runner = build(tmp_path / "later", [*chain_a, confirmation])
    assert transfers(runner) == {"t": "reversed"}
    assert ignored(runner) == {}
    assert balances(runner) == {a.hub: (0, False), b.hub: (0, False)}


def test_a_reversal_signed_before_its_author_confirmed_does_not_count(tmp_path: Path) -> None:
    a, b = ChainWriter(NET), ChainWriter(NET)
    records = [
        a.next("time.transfer_proposed", propose("t", a, b, 60)),
        b.next("time.transfer_reversed", reverse(a, "t")),
        b.next("time.transfer_confirmed", confirm(a, "t")),
    ]
    runner = build(tmp_path, records)
    assert transfers(runner) == {"t": "confirmed"}
    assert "before its author's own consent" in ignored(runner)[b.hub, 1]


def test_same_events_in_any_order_give_the_same_view(tmp_path: Path) -> None:
    h = History()
    orders = [
        labels(h.chains),
        list(reversed(labels(h.chains))),
        [i for pair in zip([2] * 6, [1] * 7, [0] * 12, strict=False) for i in pair] + [0] * 6 + [1],
    ]
    hashes = set()
    for n, order in enumerate(orders):
        (tmp_path / str(n)).mkdir()
        runner = build(tmp_path / str(n), h.records(order))
        hashes.add(runner.hash("skills"))
        runner.close()
    assert len(hashes) == 1


HISTORY = History()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.permutations(labels(HISTORY.chains)), st.permutations(labels(HISTORY.chains)))
def test_random_interleavings_of_the_history_hash_equal(
    first: list[int], second: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        hashes = []
        for n, order in enumerate((first, second)):
            (Path(tmp) / str(n)).mkdir()
            runner = build(Path(tmp) / str(n), HISTORY.records(order))
            hashes.append(runner.hash("skills"))
            runner.close()
    assert hashes[0] == hashes[1]


# Random ledgers: each op is (actor, op, transfer number, other hub, actor pays, seconds).
OPS = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.sampled_from(["propose", "confirm", "reverse"]),
        st.integers(0, 3),
        st.integers(0, 2),
        st.booleans(),
        st.integers(1, 10_000),
    ),
    min_size=1,
    max_size=30,
)


def ledger_chains(ops: list[tuple[int, str, int, int, bool, int]]) -> list[list[bytes]]:
    hubs = [ChainWriter(NET) for _ in range(3)]
    chains: list[list[bytes]] = [[], [], []]
    for actor, op, k, other, pays, seconds in ops:
        me, them = hubs[actor], hubs[(actor + 1 + other % 2) % 3]
        target = hubs[other]
        if op == "propose":
            body: Any = propose(f"t{k}", *((me, them) if pays else (them, me)), seconds)
            chains[actor].append(me.next("time.transfer_proposed", body))
        elif op == "confirm":
            chains[actor].append(me.next("time.transfer_confirmed", confirm(target, f"t{k}")))
        else:
            chains[actor].append(me.next("time.transfer_reversed", reverse(target, f"t{k}")))
    return chains


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS, st.data())
def test_ledger_invariants_hold_and_converge(
    ops: list[tuple[int, str, int, int, bool, int]], data: st.DataObject
) -> None:
    chains = ledger_chains(ops)
    first = data.draw(st.permutations(labels(chains)))
    second = data.draw(st.permutations(labels(chains)))
    with tempfile.TemporaryDirectory() as tmp:
        views = []
        for n, order in enumerate((first, second)):
            (Path(tmp) / str(n)).mkdir()
            runner = build(Path(tmp) / str(n), interleave(chains, order))
            views.append(
                (
                    runner.hash("skills"),
                    balances(runner),
                    runner.query(
                        "skills",
                        "SELECT from_hub, to_hub, seconds, state, confirmed_seq FROM {transfers}",
                    ),
                    runner.query(
                        "skills", "SELECT hub, seq, proposer, transfer_id FROM {confirmations}"
                    ),
                )
            )
            runner.close()
    assert views[0][0] == views[1][0]
    _, held, rows, confirmations = views[0]
    # Double entry: balances sum to zero and are exactly the confirmed transfers.
    assert sum(s for s, _ in held.values()) == 0
    expected: dict[bytes, int] = {}
    for from_hub, to_hub, seconds, state, _ in rows:
        expected.setdefault(from_hub, 0)
        expected.setdefault(to_hub, 0)
        if state == "confirmed":
            expected[from_hub] -= seconds
            expected[to_hub] += seconds
    assert {h: s for h, (s, _) in held.items()} == expected
    assert all(negative == (s < 0) for s, negative in held.values())
    # A transfer past "proposed" carries a confirmation by a party that is not its proposer.
    confirmers = {(seq, hub) for hub, seq, _, _ in confirmations}
    for from_hub, to_hub, _, state, confirmed_seq in rows:
        if state == "proposed":
            assert confirmed_seq is None
        else:
            assert any(
                seq == confirmed_seq and hub in (from_hub, to_hub) for seq, hub in confirmers
            )


# -- the command line -------------------------------------------------------------------


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner(env={"HUBNODE_DATA": None, "COLUMNS": "250", "NO_COLOR": "1"})


def run(cli: CliRunner, *args: str | Path) -> Result:
    return cli.invoke(app, [str(a) for a in args])


def make_hub(cli: CliRunner, path: Path, name: str) -> str:
    result = run(cli, "init", "--data", path, "--name", name, "--network", NET)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def count(data: Path) -> int:
    async def go() -> int:
        async with await HubFolder.open(data).open_log(with_key=False) as log:
            return await log.count()

    return asyncio.run(go())


def refused(cli: CliRunner, data: Path, *args: str, says: str) -> None:
    """The command exits 2 with one line containing ``says`` and appends nothing."""
    before = count(data)
    result = run(cli, *args, "--data", data)
    assert result.exit_code == 2, result.output
    assert says in result.output, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert count(data) == before


def allow_overdraft(data: Path, seconds: int) -> None:
    folder = HubFolder.open(data)
    folder.config = msgspec.structs.replace(folder.config, time_overdraft_seconds=seconds)
    folder.save_config()


def test_cli_offer_request_match_withdraw(cli: CliRunner, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    hub_a, hub_b = make_hub(cli, a, "A"), make_hub(cli, b, "B")
    ok = run(
        cli,
        "skills",
        "offer",
        "--data",
        a,
        "--tag",
        "gardening,diy",
        "--title",
        "Garden help",
        "--area",
        "DL1",
        "--area",
        "DL3",
        "--hours",
        "4",
        "--id",
        "o1",
    )
    assert ok.exit_code == 0 and "offered o1" in ok.stdout, ok.output
    ok = run(
        cli,
        "skills",
        "request",
        "--data",
        b,
        "--tag",
        " Gardening ",
        "--title",
        "Hedge",
        "--area",
        "dl3",
        "--needed-by",
        "2026-05-01",
        "--id",
        "r1",
    )
    assert ok.exit_code == 0, ok.output
    refused(
        cli,
        a,
        "skills",
        "offer",
        "--tag",
        "x",
        "--title",
        "t",
        "--area",
        "DL1",
        "--id",
        "o1",
        says="already has an offer",
    )
    refused(
        cli,
        a,
        "skills",
        "offer",
        "--tag",
        "no_underscores",
        "--title",
        "t",
        "--area",
        "DL1",
        says="--tag",
    )
    refused(
        cli, a, "skills", "offer", "--tag", "x", "--title", "t", "--area", "DL 1", says="--area"
    )
    refused(cli, a, "skills", "offer", "--tag", "x", "--title", "", "--area", "DL1", says="title")
    refused(
        cli,
        a,
        "skills",
        "request",
        "--tag",
        "x",
        "--title",
        "t",
        "--area",
        "DL1",
        "--needed-by",
        "1 May",
        says="--needed-by",
    )

    sync(b, a)
    found = run(cli, "skills", "matches", "--data", a, "--json")
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout) == [
        {
            "offer": f"{hub_a}/o1",
            "offer_title": "Garden help",
            "request": f"{hub_b}/r1",
            "request_title": "Hedge",
            "needed_by": "2026-05-01",
            "tags": ["gardening"],
            "districts": ["DL3"],
        }
    ]
    table = run(cli, "skills", "matches", "--data", a)
    assert "Garden help" in table.stdout and "Hedge" in table.stdout

    refused(cli, a, "skills", "withdraw", says="exactly one")
    refused(cli, a, "skills", "withdraw", "--request", "r1", says="no request")
    assert run(cli, "skills", "withdraw", "--data", a, "--offer", "o1").exit_code == 0
    refused(cli, a, "skills", "withdraw", "--offer", "o1", says="already withdrawn")
    assert json.loads(run(cli, "skills", "matches", "--data", a, "--json").stdout) == []


def test_cli_time_transfer_flow(cli: CliRunner, tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    hub_a, hub_b, hub_c = make_hub(cli, a, "A"), make_hub(cli, b, "B"), make_hub(cli, c, "C")

    refused(cli, a, "time", "propose", "--from", hub_b, "--seconds", "0", says="positive")
    refused(cli, a, "time", "propose", "--from", hub_b, "--seconds", "-60", says="--seconds -60")
    refused(cli, a, "time", "propose", "--from", hub_a, "--seconds", "60", says="this hub itself")
    refused(cli, a, "time", "propose", "--seconds", "60", says="exactly one of --to")
    refused(cli, a, "time", "propose", "--from", "hub:x", "--seconds", "60", says="--from")
    # A has nothing and no overdraft: it cannot pay.
    refused(cli, a, "time", "propose", "--to", hub_b, "--seconds", "60", says="overdraft")

    ok = run(
        cli,
        "time",
        "propose",
        "--data",
        a,
        "--from",
        hub_b,
        "--hours",
        "1",
        "--memo",
        "gardening",
        "--id",
        "t1",
    )
    assert ok.exit_code == 0, ok.output
    refused(
        cli,
        a,
        "time",
        "propose",
        "--from",
        hub_b,
        "--seconds",
        "5",
        "--id",
        "t1",
        says="already proposed",
    )
    refused(cli, a, "time", "confirm", f"{hub_a}/t1", says="own proposal")
    refused(cli, b, "time", "confirm", f"{hub_a}/t1", says="unknown transfer")
    sync(a, b)
    sync(a, c)
    refused(cli, c, "time", "confirm", f"{hub_a}/t1", says="is between")
    # B pays and has no overdraft yet; then it allows two hours.
    refused(cli, b, "time", "confirm", f"{hub_a}/t1", says="time_overdraft_seconds")
    allow_overdraft(b, 7200)
    ok = run(cli, "time", "confirm", "--data", b, f"{hub_a}/t1")
    assert ok.exit_code == 0, ok.output
    refused(cli, b, "time", "confirm", f"{hub_a}/t1", says="already confirmed")

    shown = json.loads(run(cli, "time", "balance", "--data", b, "--json").stdout)
    assert shown["seconds"] == -3600 and shown["available"] == 3600
    assert {x["hub"]: (x["seconds"], x["negative"]) for x in shown["balances"]} == {
        hub_a: (3600, False),
        hub_b: (-3600, True),
    }
    sync(b, a)
    shown = json.loads(run(cli, "time", "balance", "--data", a, "--json").stdout)
    assert shown["seconds"] == 3600
    assert shown["transfers"][0]["state"] == "confirmed"

    # A pays 3000 of its 3600 to B; a further 1000 would overdraw A while that awaits B.
    ok = run(cli, "time", "propose", "--data", a, "--to", hub_b, "--seconds", "3000", "--id", "t2")
    assert ok.exit_code == 0, ok.output
    refused(cli, a, "time", "propose", "--to", hub_b, "--seconds", "1000", says="overdraft")
    refused(cli, a, "time", "reverse", f"{hub_a}/t2", "--reason", "x", says="not confirmed")
    refused(cli, a, "time", "reverse", f"{hub_a}/t1", "--reason", " ", says="--reason")
    refused(cli, c, "time", "reverse", f"{hub_a}/t1", "--reason", "x", says="two parties")
    ok = run(cli, "time", "reverse", "--data", a, f"{hub_a}/t1", "--reason", "never happened")
    assert ok.exit_code == 0, ok.output
    refused(cli, a, "time", "reverse", f"{hub_a}/t1", "--reason", "x", says="already reversed")
    shown = json.loads(run(cli, "time", "balance", "--data", a, "--json").stdout)
    assert shown["seconds"] == 0
    table = run(cli, "time", "balance", "--data", a)
    assert table.exit_code == 0 and "reversed" in table.stdout and "awaiting" in table.stdout

    # Every hub holding the same events computes the same view.
    sync(a, b)
    sync(b, c)
    sync(a, c)
    hashes = {
        json.loads(run(cli, "projections", "hash", "--data", d, "--json").stdout)["skills"]
        for d in (a, b, c)
    }
    assert len(hashes) == 1
    refused(cli, c, "time", "reverse", f"{hub_b}/t9", "--reason", "x", says="unknown transfer")
    assert hub_c.startswith("hub:")
