"""Tenders: kinds, the rules the projection enforces, convergence, commands, OCDS export."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from typer.testing import CliRunner, Result

from hubnode import HubFolder, SigningKey
from hubnode.cli import app
from hubnode.commands.ocds import ocds_compiled, ocds_release
from hubnode.errors import InvalidEvent
from hubnode.events.ids import hub_display
from hubnode.events.kinds import KINDS
from hubnode.events.tenders import (
    AwardRecorded,
    BidSubmitted,
    ClusterFormed,
    ClusterJoined,
    Lot,
    LotAssigned,
    Period,
    TenderShared,
    TenderUpdated,
    Value,
)
from hubnode.projections.tenders import TendersProjection
from hubnode.testing import ChainWriter, ProjectionHarness, hashes_by_batch_size

from .conftest import shared_fixture, sync

NET = "test-net"
T1 = "ocds-hubnode-aaaa-1"
T2 = "ocds-hubnode-aaaa-2"


# -- kinds ------------------------------------------------------------------------------


def shared_json(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ocid": T1,
        "title": "Home care",
        "buyer": "Darlington Borough Council",
        "value": {"amount": 120000, "currency": "GBP"},
        "period": {"start": "2030-01-01", "end": "2030-02-01"},
        "lots": [{"id": "L1", "title": "North"}, {"id": "L2", "title": "South"}],
        "categories": ["care"],
        "area": ["DL1"],
    }
    body.update(changes)
    return body


def decode(kind: str, fields: dict[str, Any]) -> Any:
    return KINDS.body_from_json(kind, json.dumps(fields))


def test_a_tender_body_round_trips_through_the_log_encoding() -> None:
    body = decode("tender.shared", shared_json())
    assert isinstance(body, TenderShared)
    assert KINDS.decode_body("tender.shared", KINDS.encode_body("tender.shared", body)) == body
    assert body.status == "active" and body.documents == ()


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"value": {"amount": -1, "currency": "GBP"}}, "amount"),
        ({"value": {"amount": 1, "currency": "gbp"}}, "currency"),
        ({"value": {"amount": 1, "currency": "POUNDS"}}, "currency"),
        ({"period": {"start": "2030-02-01", "end": "2030-01-01"}}, "before its start"),
        ({"lots": [{"id": "L1", "title": "a"}, {"id": "L1", "title": "b"}]}, "lot ids"),
        ({"ocid": "hubnode-1"}, "ocid"),
        ({"area": ["darlington"]}, "area"),
        ({"documents": [{"title": "spec", "url": "ftp://x"}]}, "url"),
        ({"title": ""}, "title"),
    ],
)
def test_bad_tender_bodies_are_rejected_naming_the_field(
    changes: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidEvent, match=says):
        decode("tender.shared", shared_json(**changes))


def test_an_update_must_change_something() -> None:
    with pytest.raises(InvalidEvent, match="at least one"):
        decode("tender.updated", {"ocid": T1})
    assert decode("tender.updated", {"ocid": T1, "status": "cancelled"}).status == "cancelled"


def test_an_award_names_a_cluster_or_a_supplier_not_both() -> None:
    lead = hub_display(b"\x01" * 32)
    value = {"amount": 5, "currency": "GBP"}
    with pytest.raises(InvalidEvent, match="either"):
        decode(
            "award.recorded",
            {"tender": T1, "lead": lead, "cluster": "c1", "supplier": "X", "value": value},
        )
    with pytest.raises(InvalidEvent, match="both lead and cluster"):
        decode("award.recorded", {"tender": T1, "cluster": "c1", "value": value})
    ok = decode("award.recorded", {"tender": T1, "supplier": "Acme", "value": value})
    assert ok.supplier == "Acme"


def test_cluster_refs_need_canonical_hub_ids() -> None:
    with pytest.raises(InvalidEvent, match="lead"):
        decode("cluster.joined", {"lead": "hub:" + "a" * 51 + "b", "cluster": "c1"})
    with pytest.raises(InvalidEvent, match="lots"):
        decode(
            "bid.submitted",
            {
                "lead": hub_display(b"\x01" * 32),
                "cluster": "c1",
                "lots": [],
                "value": {"amount": 1, "currency": "GBP"},
            },
        )


# -- a history across hubs ----------------------------------------------------------------

GBP = Value(amount=1000, currency="GBP")


def tender(ocid: str = T1, lots: Sequence[str] = ("L1", "L2", "L3")) -> TenderShared:
    return TenderShared(
        ocid=ocid,
        title="Home care",
        buyer="Darlington Borough Council",
        value=Value(amount=120000, currency="GBP"),
        period=Period(start=date(2030, 1, 1), end=date(2030, 3, 1)),
        lots=tuple(Lot(id=x, title=f"lot {x}") for x in lots),
        categories=("care",),
        area=("DL1",),
    )


def ref(w: ChainWriter) -> str:
    return hub_display(w.hub)


def history() -> tuple[list[list[bytes]], list[ChainWriter]]:
    """A (sharer), B (lead), C (member), D (outsider): valid and rule-breaking events."""
    # A's hub id sorts below C's: both share T1, and the lowest (hub, seq) owns an ocid.
    low, high = sorted((SigningKey.generate() for _ in range(2)), key=lambda k: k.public)
    a, b, c, d = ChainWriter(NET, low), ChainWriter(NET), ChainWriter(NET, high), ChainWriter(NET)
    hist = [
        [
            a.next("tender.shared", tender()),
            a.next("tender.updated", TenderUpdated(ocid=T1, lots=tender(lots=("L1", "L2")).lots)),
            a.next(
                "award.recorded",
                AwardRecorded(tender=T1, lead=ref(b), cluster="c1", lots=("L1",), value=GBP),
            ),
            a.next(
                "award.recorded",
                AwardRecorded(tender=T1, lead=ref(b), cluster="nope", value=GBP),
            ),
            a.next("tender.shared", tender(T2)),
        ],
        [
            b.next("cluster.formed", ClusterFormed(cluster="c1", tender=T1, lots=("L1", "L2"))),
            b.next("lot.assigned", LotAssigned(lead=ref(b), cluster="c1", lot="L1", member=ref(c))),
            b.next("lot.assigned", LotAssigned(lead=ref(b), cluster="c1", lot="L2", member=ref(b))),
            b.next("lot.assigned", LotAssigned(lead=ref(b), cluster="c1", lot="L3", member=ref(c))),
            b.next("lot.assigned", LotAssigned(lead=ref(b), cluster="c1", lot="L2", member=ref(d))),
            b.next(
                "bid.submitted",
                BidSubmitted(lead=ref(b), cluster="c1", lots=("L1", "L2"), value=GBP),
            ),
            b.next("cluster.formed", ClusterFormed(cluster="c1", tender=T2)),
            b.next("cluster.formed", ClusterFormed(cluster="c2", tender=T1, lots=("L3",))),
        ],
        [
            c.next("cluster.joined", ClusterJoined(lead=ref(b), cluster="c1")),
            c.next("cluster.joined", ClusterJoined(lead=ref(b), cluster="c1")),
            c.next("lot.assigned", LotAssigned(lead=ref(b), cluster="c1", lot="L2", member=ref(c))),
            c.next("tender.updated", TenderUpdated(ocid=T1, title="Hijacked")),
            c.next("tender.shared", tender()),
            c.next("award.recorded", AwardRecorded(tender=T1, supplier="C Ltd", value=GBP)),
        ],
        [
            d.next("cluster.joined", ClusterJoined(lead=ref(b), cluster="c9")),
            d.next(
                "bid.submitted",
                BidSubmitted(lead=ref(b), cluster="c1", lots=("L1",), value=GBP),
            ),
        ],
    ]
    return hist, [a, b, c, d]


HISTORY, (A, B, C, D) = history()


def harness(batch: int | None = None) -> ProjectionHarness:
    return ProjectionHarness(TendersProjection, net=NET, batch=batch)


def all_records() -> list[bytes]:
    return [r for hub in HISTORY for r in hub]


def reasons_by_author(h: ProjectionHarness) -> dict[tuple[str, int], str]:
    names = {A.hub: "A", B.hub: "B", C.hub: "C", D.hub: "D"}
    return {(names[hub], seq): reason for (hub, seq), reason in h.ignored("tenders").items()}


def test_the_rules_ignore_what_breaks_them_with_a_reason() -> None:
    with harness() as h:
        h.feed(all_records())
        r = reasons_by_author(h)
        # A owns T1: C's share, update and award are ignored.
        assert "was already shared by " + ref(A) in r[("C", 5)]
        assert "may update it" in r[("C", 4)]
        assert "may record its award" in r[("C", 6)]
        assert h.query("tenders", "SELECT title FROM {tenders} WHERE ocid = ?", (T1,)) == [
            ("Home care",)
        ]
        assert "already joined" in r[("C", 2)]
        assert "only the lead" in r[("C", 3)] and "assign lots" in r[("C", 3)]
        assert "has not been formed" in r[("D", 1)]
        assert "only the lead" in r[("D", 2)] and "bid" in r[("D", 2)]
        assert "not in tender" in r[("B", 4)]  # L3 was removed by A's update
        assert "has not joined" in r[("B", 5)]  # D never joined
        assert "already used by this lead" in r[("B", 7)]
        assert "not in tender" in r[("B", 8)]  # c2 seeks L3
        assert "is not a cluster for" in r[("A", 4)]
        assert ("A", 3) not in r
        assert ("C", 1) not in r and ("B", 1) not in r and ("B", 6) not in r


def test_the_view_holds_the_cluster_its_members_lots_bids_and_award() -> None:
    with harness() as h:
        h.feed(all_records())
        lots = h.query("tenders", "SELECT lot FROM {lots} WHERE ocid = ? ORDER BY position", (T1,))
        assert lots == [("L1",), ("L2",)]
        members = h.query("tenders", "SELECT member FROM {members} WHERE cluster = 'c1'")
        assert sorted(members) == sorted([(ref(B),), (ref(C),)])
        assigned = h.query("tenders", "SELECT lot, member FROM {assignments} ORDER BY lot")
        assert assigned == [("L1", ref(C)), ("L2", ref(B))]
        assert h.query("tenders", "SELECT lead, seq, lots FROM {bids}") == [
            (ref(B), 6, '["L1","L2"]')
        ]
        assert h.query("tenders", "SELECT ocid, cluster FROM {clusters}") == [(T1, "c1")]


def test_a_join_before_the_formation_counts_once_the_formation_arrives() -> None:
    with harness() as h:
        h.feed(HISTORY[2][:1])  # C joins c1 before anyone here has seen it formed
        assert "has not been formed" in h.ignored("tenders")[(C.hub, 1)]
        h.feed(HISTORY[1][:1])  # B forms c1, but the tender is not here yet
        reasons = h.ignored("tenders")
        assert "has not been shared" in reasons[(B.hub, 1)]
        assert "is ignored: tender" in reasons[(C.hub, 1)]
        h.feed(HISTORY[0][:1])  # A shares T1: everything falls into place
        assert h.ignored("tenders") == {}
        members = h.query("tenders", "SELECT member FROM {members} WHERE cluster = 'c1'")
        assert (ref(C),) in members


def test_the_lowest_hub_owns_an_ocid_even_when_its_share_arrives_last() -> None:
    with harness() as h:
        h.feed(HISTORY[2])  # C shares T1 (and awards it): C owns it for now
        assert h.query("tenders", "SELECT hub FROM {tenders}") == [(ref(C),)]
        assert h.query("tenders", "SELECT supplier FROM {awards}") == [("C Ltd",)]
        h.feed(HISTORY[0][:1])
        assert h.query("tenders", "SELECT hub FROM {tenders}") == [(ref(A),)]
        assert h.query("tenders", "SELECT * FROM {awards}") == []
        assert {(C.hub, 5), (C.hub, 6)} <= set(h.ignored("tenders"))


def test_a_non_lead_cannot_assign_lots_whatever_it_claims() -> None:
    with harness() as h:
        h.feed(HISTORY[0][:1] + HISTORY[1][:1] + HISTORY[2][:3])
        assert h.query("tenders", "SELECT * FROM {assignments}") == []
        assert "only the lead" in h.ignored("tenders")[(C.hub, 3)]


def order_to_records(order: Sequence[int]) -> list[bytes]:
    nexts = [0] * len(HISTORY)
    records = []
    for hub in order:
        records.append(HISTORY[hub][nexts[hub]])
        nexts[hub] += 1
    return records


def hash_of(records: list[bytes], cut: int, batch: int | None = None) -> str:
    with harness(batch) as h:
        h.feed(records[:cut])
        h.feed(records[cut:])
        return h.hash("tenders")


REFERENCE = hash_of(all_records(), 0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=st.permutations([i for i, hub in enumerate(HISTORY) for _ in hub]),
    cut=st.integers(0, sum(map(len, HISTORY))),
    batch=st.integers(1, 25),
)
def test_hubs_holding_the_same_events_compute_the_same_tenders_hash(
    order: list[int], cut: int, batch: int
) -> None:
    # Each hub's events in seq order, hubs mixed any way: a causally valid interleaving;
    # groups are derived once per batch, and batch boundaries fall anywhere.
    assert hash_of(order_to_records(order), cut, batch) == REFERENCE


@pytest.mark.parametrize("batch", [1, 3, None])
@pytest.mark.parametrize("reverse", [False, True])
def test_each_fact_keeps_a_copy_of_its_ignore_reason(reverse: bool, batch: int | None) -> None:
    # A derivation rewrites only the reasons that changed, comparing with these copies.
    hubs = list(reversed(HISTORY)) if reverse else HISTORY
    with harness(batch) as h:
        h.feed([r for hub in hubs for r in hub])
        copies = h.query(
            "tenders",
            "SELECT hub, seq, reason FROM {tender_facts} WHERE reason IS NOT NULL "
            "UNION ALL SELECT hub, seq, reason FROM {cluster_facts} WHERE reason IS NOT NULL",
        )
        assert {(hub, seq): reason for hub, seq, reason in copies} == h.ignored("tenders")
        assert len(copies) == len(h.ignored("tenders")) > 10


def test_the_tenders_view_is_the_same_whatever_the_batch_size() -> None:
    by_size = hashes_by_batch_size([TendersProjection], all_records(), net=NET)
    assert all(h == {"tenders": REFERENCE} for h in by_size.values()), by_size


def test_the_tenders_hash_differs_when_a_fact_differs() -> None:
    records = all_records()
    without_join = [r for r in records if r != HISTORY[2][0]]
    assert hash_of(without_join, 0) != REFERENCE


# -- OCDS schema --------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch."""
    if not isinstance(patch, dict):
        return patch
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def ocds_validator() -> Draft4Validator:
    """The OCDS 1.1 release package schema with the lots extension, refs resolved locally."""
    schemas = shared_fixture("ocds-1.1", "schema")
    release = json.loads((schemas / "release-schema.json").read_text())
    lots = json.loads(shared_fixture("ocds-lots-extension", "release-schema.json").read_text())
    package = json.loads((schemas / "release-package-schema.json").read_text())
    registry: Registry[Any] = Registry().with_resources(
        (s["id"], Resource.from_contents(s, default_specification=DRAFT4))
        for s in (merge_patch(release, lots), package)
    )
    return Draft4Validator(
        package, registry=registry, format_checker=Draft4Validator.FORMAT_CHECKER
    )


def ocds_errors(document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in ocds_validator().iter_errors(document)
    ]


def test_the_validator_accepts_the_official_example_and_enforces_the_lots_extension() -> None:
    example = json.loads(shared_fixture("ocds-1.1", "examples", "tender.json").read_text())
    assert ocds_errors(example) == []
    example["releases"][0]["tender"]["lots"] = [{"title": "a lot without an id"}]
    assert any("'id' is a required property" in e for e in ocds_errors(example))


# -- the command line -------------------------------------------------------------------


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner(env={"HUBNODE_DATA": None, "COLUMNS": "250", "NO_COLOR": "1"})


def run(cli: CliRunner, *args: str | Path) -> Result:
    return cli.invoke(app, [str(a) for a in args])


def ok(cli: CliRunner, *args: str | Path) -> Result:
    result = run(cli, *args)
    assert result.exit_code == 0, result.output
    return result


def refused(cli: CliRunner, *args: str | Path, says: str) -> Result:
    result = run(cli, *args)
    assert result.exit_code == 2, result.output
    assert says in result.output, result.output
    return result


def new_hub(cli: CliRunner, path: Path, name: str) -> tuple[Path, str]:
    result = ok(cli, "init", "--data", path, "--name", name, "--network", NET)
    return path, result.stdout.strip()


def count_events(data: Path) -> int:
    async def count() -> int:
        async with await HubFolder.open(data).open_log(with_key=False) as log:
            return await log.count()

    return asyncio.run(count())


def show(cli: CliRunner, data: Path, ocid: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(
        ok(cli, "tender", "show", ocid, "--data", data, "--json").stdout
    )
    return shown


SHARE = (
    "--title",
    "Home care",
    "--buyer",
    "Darlington Borough Council",
    "--amount",
    "120000",
    "--start",
    "2030-01-01",
    "--end",
    "2030-03-01",
    "--lot",
    "L1:North",
    "--lot",
    "L2:South:50000",
    "--category",
    "care",
    "--area",
    "dl1",
    "--document",
    "Specification=https://example.org/spec.pdf",
)


def test_bad_tender_input_is_refused_with_exit_2_and_nothing_appended(
    cli: CliRunner, tmp_path: Path
) -> None:
    a, _ = new_hub(cli, tmp_path / "a", "Hub A")
    before = count_events(a)
    refused(cli, "tender", "share", "--data", a, *SHARE, "--amount", "-5", says="negative")
    bad_end = [*SHARE[:8], "--end", "2001-01-01"]
    refused(cli, "tender", "share", "--data", a, *bad_end, says="in the past")
    refused(cli, "tender", "share", "--data", a, *SHARE, "--currency", "POUNDS", says="currency")
    refused(cli, "tender", "share", "--data", a, *SHARE, "--lot", "L3", says="ID:TITLE")
    refused(cli, "tender", "share", "--data", a, *SHARE, "--area", "Darlo", says="area")
    assert count_events(a) == before
    ok(cli, "tender", "share", "--data", a, *SHARE, "--ocid", T1)
    refused(cli, "tender", "share", "--data", a, *SHARE, "--ocid", T1, says="already shared")
    refused(cli, "cluster", "form", "--data", a, "--tender", T1, "--lot", "L9", says="L9")
    refused(cli, "tender", "show", "ocds-hubnode-x-404", "--data", a, says="no tender")


def test_share_form_join_assign_bid_award_export_across_three_hubs(
    cli: CliRunner, tmp_path: Path
) -> None:
    a, a_id = new_hub(cli, tmp_path / "a", "Hub A")
    b, b_id = new_hub(cli, tmp_path / "b", "Hub B")
    c, c_id = new_hub(cli, tmp_path / "c", "Hub C")
    ok(cli, "tender", "share", "--data", a, *SHARE)
    ocid = f"ocds-hubnode-{a_id[4:12]}-1"
    listed = json.loads(ok(cli, "tender", "list", "--data", a, "--json").stdout)
    assert [t["ocid"] for t in listed] == [ocid]
    assert ocid in ok(cli, "tender", "list", "--data", a).stdout

    sync(a, b)
    ok(cli, "cluster", "form", "--data", b, "--tender", ocid, "--lot", "L1", "--lot", "L2")
    sync(b, c)
    refused(cli, "cluster", "join", "--data", c, "--lead", b_id, "--cluster", "c9", says="c9")
    ok(cli, "cluster", "join", "--data", c, "--lead", b_id, "--cluster", "c1")
    refused(cli, "cluster", "join", "--data", c, "--lead", b_id, "--cluster", "c1", says="already")
    before = count_events(c)
    refused(
        cli,
        "cluster",
        "assign-lot",
        *("--data", c, "--lead", b_id, "--cluster", "c1", "--lot", "L1", "--member", c_id),
        says="only its lead",
    )
    assert count_events(c) == before

    sync(c, b)
    assign = ("cluster", "assign-lot", "--data", b, "--cluster", "c1")
    refused(cli, *assign, "--lot", "L1", "--member", a_id, says="has not joined")
    refused(cli, *assign, "--lot", "L7", "--member", c_id, says="not in tender")
    ok(cli, *assign, "--lot", "L1", "--member", c_id)
    ok(cli, *assign, "--lot", "L2", "--member", b_id)
    ok(
        cli,
        "bid",
        "submit",
        "--data",
        b,
        "--cluster",
        "c1",
        "--lot",
        "L1",
        "--lot",
        "L2",
        "--amount",
        "110000",
    )

    sync(b, a)
    award = ("award", "record", "--tender", ocid, "--amount", "110000", "--lot", "L1")
    refused(cli, *award, "--data", b, "--supplier", "X", says="only that hub")
    refused(cli, *award, "--data", a, says="either")
    ok(cli, *award, "--data", a, "--cluster", "c1", "--lead", b_id, "--awarded-on", "2030-04-01")
    ok(cli, "tender", "update", ocid, "--data", a, "--status", "complete")
    refused(cli, "tender", "update", ocid, "--data", b, "--title", "x", says="only that hub")

    t = show(cli, a, ocid)
    assert t["status"] == "complete"
    [cluster] = t["clusters"]
    assert cluster["lead"] == b_id and cluster["members"] == [b_id, c_id]
    assert cluster["assignments"] == {"L1": c_id, "L2": b_id}
    assert cluster["bids"][0]["value"] == {"amount": 110000, "currency": "GBP"}
    assert t["awards"][0]["cluster"] == "c1" and t["awards"][0]["lots"] == ["L1"]
    text = ok(cli, "tender", "show", ocid, "--data", a).stdout
    assert "lot L1 -> " + c_id in text and "award to cluster c1" in text

    # Every hub holding the same events computes the same view.
    sync(a, b), sync(a, c), sync(b, c), sync(c, a)
    hashes = {
        json.loads(ok(cli, "projections", "hash", "--data", d, "--json").stdout)["tenders"]
        for d in (a, b, c)
    }
    assert len(hashes) == 1

    out_file = tmp_path / "tenders.json"
    ok(cli, "tender", "export", "--data", b, "--format", "ocds", "--out", out_file)
    package = json.loads(out_file.read_text())
    assert ocds_errors(package) == []
    [release] = package["releases"]
    assert release["ocid"] == ocid and release["tag"] == ["tender", "award"]
    assert [lot["id"] for lot in release["tender"]["lots"]] == ["L1", "L2"]
    assert release["awards"][0]["relatedLots"] == ["L1"]
    assert release["tender"]["documents"][0]["url"] == "https://example.org/spec.pdf"


def test_export_refuses_an_unknown_format_and_an_empty_view(cli: CliRunner, tmp_path: Path) -> None:
    a, _ = new_hub(cli, tmp_path / "a", "Hub A")
    refused(
        cli,
        "tender",
        "export",
        "--data",
        a,
        "--format",
        "csv",
        "--out",
        tmp_path / "x",
        says="ocds",
    )
    result = run(cli, "tender", "export", "--data", a, "--out", tmp_path / "x")
    assert result.exit_code == 1 and "at least one" in result.output


def test_a_watch_shows_new_and_changed_tenders_once(cli: CliRunner, tmp_path: Path) -> None:
    a, _ = new_hub(cli, tmp_path / "a", "Hub A")
    b, _ = new_hub(cli, tmp_path / "b", "Hub B")
    refused(cli, "tender", "watch", "run", "--data", b, "--once", says="no watches")
    refused(cli, "tender", "watch", "add", "--data", b, says="at least one")
    refused(
        cli,
        "tender",
        "watch",
        "add",
        "--data",
        b,
        "--min-value",
        "9",
        "--max-value",
        "1",
        says="below",
    )
    ok(cli, "tender", "watch", "add", "--data", b, "--category", "care", "--area", "DL")
    ok(cli, "tender", "watch", "add", "--data", b, "--min-value", "1000000")
    watches = json.loads(ok(cli, "tender", "watch", "list", "--data", b, "--json").stdout)
    assert [w["id"] for w in watches] == [1, 2]

    ok(cli, "tender", "share", "--data", a, *SHARE, "--ocid", T1)
    ok(cli, "tender", "share", "--data", a, *SHARE[:-6], "--ocid", T2, "--category", "transport")
    sync(a, b)
    first = ok(cli, "tender", "watch", "run", "--data", b, "--once").stdout.splitlines()
    assert (
        len(first) == 1 and first[0].startswith(f"new {T1}: Home care") and "(watch 1)" in first[0]
    )
    assert ok(cli, "tender", "watch", "run", "--data", b, "--once").stdout == ""

    ok(cli, "tender", "update", T1, "--data", a, "--amount", "2000000")
    sync(a, b)
    lines = ok(cli, "tender", "watch", "run", "--data", b, "--once", "--json").stdout.splitlines()
    [changed] = [json.loads(line) for line in lines]
    assert changed["event"] == "changed" and changed["watches"] == [1, 2]
    assert changed["tender"]["value"]["amount"] == 2000000

    ok(cli, "tender", "watch", "remove", "1", "--data", b)
    refused(cli, "tender", "watch", "remove", "1", "--data", b, says="no watch 1")
    assert [
        w["id"]
        for w in json.loads(ok(cli, "tender", "watch", "list", "--data", b, "--json").stdout)
    ] == [2]


# -- OCDS record packages -----------------------------------------------------------------


def ocds_record_errors(document: Any) -> list[str]:
    """Errors against the OCDS 1.1 record package schema (lots extension), refs resolved locally."""
    schemas = shared_fixture("ocds-1.1", "schema")
    release = json.loads((schemas / "release-schema.json").read_text())
    lots = json.loads(shared_fixture("ocds-lots-extension", "release-schema.json").read_text())
    package = json.loads((schemas / "record-package-schema.json").read_text())
    versioned = json.loads((schemas / "versioned-release-validation-schema.json").read_text())
    registry: Registry[Any] = Registry().with_resources(
        (s["id"], Resource.from_contents(s, default_specification=DRAFT4))
        for s in (merge_patch(release, lots), package, versioned)
    )
    validator = Draft4Validator(
        package, registry=registry, format_checker=Draft4Validator.FORMAT_CHECKER
    )
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def test_the_record_validator_checks_embedded_and_compiled_releases_with_lots() -> None:
    example = json.loads(shared_fixture("ocds-1.1", "examples", "tender.json").read_text())
    [release] = example["releases"]
    record = {"ocid": release["ocid"], "releases": [release], "compiledRelease": release}
    package = {k: example[k] for k in ("uri", "version", "publisher", "publishedDate")}
    package["records"] = [record]
    assert ocds_record_errors(package) == []
    record["compiledRelease"] = {**release, "tender": {"lots": [{"title": "no id"}]}}
    assert any("'id' is a required property" in e for e in ocds_record_errors(package))


def test_the_compiled_release_merges_releases_in_date_order() -> None:
    first = {
        "ocid": T1,
        "id": "r1",
        "date": "2030-01-01T00:00:00Z",
        "tag": ["tender"],
        "tender": {
            "title": "Home care",
            "description": "old",
            "lots": [{"id": "L1", "title": "North"}, {"id": "L2", "title": "South"}],
        },
        "parties": [{"id": "p1", "name": "Council", "roles": ["buyer", "payer"]}],
    }
    second = {
        "ocid": T1,
        "id": "r2",
        "date": "2030-02-01T00:00:00Z",
        "tag": ["award"],
        "tender": {"description": None, "lots": [{"id": "L2", "title": "South+"}, {"id": "L3"}]},
        "parties": [{"id": "p1", "roles": ["buyer"]}],
        "awards": [{"id": "a1", "relatedLots": ["L1"]}],
    }
    for releases in ([first, second], [second, first]):  # input order does not matter
        assert ocds_compiled(releases) == {
            "ocid": T1,
            "id": f"{T1}-2030-02-01T00:00:00Z",
            "date": "2030-02-01T00:00:00Z",
            "tag": ["compiled"],
            "tender": {
                "title": "Home care",
                "lots": [
                    {"id": "L1", "title": "North"},
                    {"id": "L2", "title": "South+"},
                    {"id": "L3"},
                ],
            },
            "parties": [{"id": "p1", "name": "Council", "roles": ["buyer"]}],
            "awards": [{"id": "a1", "relatedLots": ["L1"]}],
        }
    assert first["tender"]["description"] == "old"  # the inputs are left as they were


def test_export_writes_a_record_package_whose_compiled_release_is_the_view(
    cli: CliRunner, tmp_path: Path
) -> None:
    a, _ = new_hub(cli, tmp_path / "a", "Hub A")
    out_file = tmp_path / "records.json"
    export = ("tender", "export", "--data", a, "--out", out_file)
    refused(cli, *export, "--package", "bundle", says="--package")
    ok(cli, "tender", "share", "--data", a, *SHARE, "--ocid", T1)
    ok(cli, "tender", "share", "--data", a, *SHARE[:-6], "--ocid", T2)
    award = ("award", "record", "--data", a, "--tender", T1, "--amount", "50000")
    ok(cli, *award, "--lot", "L2", "--supplier", "South Care Ltd", "--awarded-on", "2030-04-01")
    ok(cli, "tender", "update", T1, "--data", a, "--title", "Home care 2030")

    ok(cli, *export, "--package", "record")
    package = json.loads(out_file.read_text())
    assert ocds_record_errors(package) == []
    assert ocds_errors(package) != []  # it is not a release package
    assert [r["ocid"] for r in package["records"]] == [T1, T2]
    for record in package["records"]:
        expected = ocds_release(show(cli, a, record["ocid"]))
        assert record["releases"] == [expected]
        compiled = record["compiledRelease"]
        assert compiled["tag"] == ["compiled"] and compiled["date"] == expected["date"]
        assert compiled["id"] == f"{record['ocid']}-{expected['date']}"
        assert {k: v for k, v in compiled.items() if k not in ("id", "tag")} == {
            k: v for k, v in expected.items() if k not in ("id", "tag")
        }
    compiled = package["records"][0]["compiledRelease"]
    assert compiled["tender"]["title"] == "Home care 2030"
    assert compiled["awards"][0]["relatedLots"] == ["L2"]
    assert compiled["awards"][0]["suppliers"][0]["name"] == "South Care Ltd"
