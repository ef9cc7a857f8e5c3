"""The directory: service kinds, the ``directory`` projection, its commands and HSDS 3.0."""

from __future__ import annotations

import asyncio
import gzip
import json
import tempfile
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from typer.testing import CliRunner, Result

from hubnode import EventLog, SigningKey
from hubnode.cli import app
from hubnode.errors import InvalidEvent
from hubnode.events.directory import (
    CapacityReported,
    CostOption,
    ServicePublished,
    ServiceUpdated,
    ServiceWithdrawn,
)
from hubnode.events.ids import hub_display
from hubnode.events.kinds import KINDS
from hubnode.projections.directory import DirectoryProjection
from hubnode.projections.runner import ProjectionRunner
from hubnode.testing import ChainWriter

from .conftest import NET, shared_fixture

SERVICE = ServicePublished(
    id="debt-advice",
    organisation="Darlington CAB",
    name="Debt advice",
    description="Confidential advice on debts and money.",
    categories=("debt", "advice"),
    costs=(CostOption(kind="free"),),
    areas=("DL1", "DL3"),
)


def published(sid: str = "debt-advice", **changes: Any) -> ServicePublished:
    return msgspec.structs.replace(SERVICE, id=sid, **changes)


# -- kinds ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        ("service.published", {**msgspec.to_builtins(SERVICE), "categories": []}, "length >= 1"),
        ("service.published", {**msgspec.to_builtins(SERVICE), "areas": ["dl1"]}, "$.areas[0]"),
        (
            "service.published",
            {**msgspec.to_builtins(SERVICE), "categories": ["debt", "debt"]},
            "categories must not repeat",
        ),
        (
            "service.published",
            {**msgspec.to_builtins(SERVICE), "costs": [{"kind": "fee", "amount": 5}]},
            "a fee needs an amount and a currency",
        ),
        (
            "service.published",
            {
                **msgspec.to_builtins(SERVICE),
                "schedules": [{"days": ["MO"], "opens": "17:00", "closes": "09:00"}],
            },
            "opens 17:00 must be before closes 09:00",
        ),
        ("service.published", {**msgspec.to_builtins(SERVICE), "id": "no spaces"}, "$.id"),
        ("service.updated", {"id": "debt-advice"}, "must change at least one of"),
        (
            "capacity.reported",
            {"service": "debt-advice", "status": "full", "as_of": "2026-11-20"},
            "$.status",
        ),
        (
            "capacity.reported",
            {"service": "debt-advice", "status": "waitlist", "as_of": "20/11/2026"},
            "$.as_of",
        ),
    ],
)
def test_bad_bodies_are_rejected_with_the_field_named(
    kind: str, body: dict[str, Any], message: str
) -> None:
    raw = msgspec.msgpack.encode(body)
    with pytest.raises(InvalidEvent) as caught:
        KINDS.decode_body(kind, raw)
    assert message in str(caught.value)


def test_a_body_round_trips_and_unset_update_fields_are_not_sent() -> None:
    raw = KINDS.encode_body("service.published", SERVICE)
    assert KINDS.decode_body("service.published", raw) == SERVICE
    update = ServiceUpdated(id="debt-advice", url=None)
    sent = msgspec.msgpack.decode(KINDS.encode_body("service.updated", update))
    assert sent == {"id": "debt-advice", "publisher": None, "url": None}
    assert update.changes() == {"url": None}


def test_a_category_added_by_a_later_version_is_accepted_from_peers() -> None:
    body = {**msgspec.to_builtins(SERVICE), "categories": ["legal-aid"]}
    decoded = KINDS.decode_body("service.published", msgspec.msgpack.encode(body))
    assert isinstance(decoded, ServicePublished) and decoded.categories == ("legal-aid",)


# -- projection ----------------------------------------------------------------------------


def histories() -> list[list[bytes]]:
    """Three hubs: A publishes and updates, B publishes and tries to change A's service."""
    a, b, c = (ChainWriter(NET, SigningKey.generate()) for _ in range(3))
    hub_a = hub_display(a.hub)
    return [
        [
            a.next("service.published", published()),
            a.next("capacity.reported", _capacity("waitlist", 1)),
            a.next("service.updated", ServiceUpdated(id="debt-advice", name="Money advice")),
            a.next("service.published", published("food-bank", categories=("food",))),
            a.next("capacity.reported", _capacity("accepting", 2)),
            a.next("service.withdrawn", ServiceWithdrawn(service="food-bank")),
        ],
        [
            b.next("service.published", published("carers", categories=("carers",))),
            b.next(
                "service.updated",
                ServiceUpdated(id="debt-advice", publisher=hub_a, name="Hijacked"),
            ),
            b.next("service.updated", ServiceUpdated(id="carers", areas=("DL2",))),
        ],
        [
            c.next("service.updated", ServiceUpdated(id="nothing", name="Ghost")),
            c.next("service.published", published("debt-advice", name="C's own debt advice")),
        ],
    ]


def _capacity(status: str, day: int) -> CapacityReported:
    return msgspec.convert(
        {"service": "debt-advice", "status": status, "as_of": f"2026-11-{day:02d}"},
        CapacityReported,
    )


async def _build(folder: Path, records: list[bytes]) -> ProjectionRunner:
    log = await EventLog.open(folder / "log.sqlite3", net=NET, key=SigningKey.generate())
    try:
        outcomes = await log.ingest(records)
        assert len(outcomes) == len(records)
    finally:
        await log.close()
    runner = ProjectionRunner(
        folder / "log.sqlite3", folder / "views.sqlite3", [DirectoryProjection]
    )
    runner.catch_up()
    return runner


def _interleave(chains: list[list[bytes]], order: list[int]) -> list[bytes]:
    """Merge chains taking the next record of chain ``order[i]``: each hub's seq order kept."""
    cursors = [0] * len(chains)
    merged = []
    for hub in order:
        merged.append(chains[hub][cursors[hub]])
        cursors[hub] += 1
    return merged


CHAINS = histories()
SLOTS = [hub for hub, chain in enumerate(CHAINS) for _ in chain]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.permutations(SLOTS))
def test_projection_hash_is_the_same_for_any_interleaving(order: list[int]) -> None:
    async def both() -> tuple[str, str]:
        with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
            first = await _build(Path(one), [r for chain in CHAINS for r in chain])
            second = await _build(Path(two), _interleave(CHAINS, order))
            hashes = first.hash("directory"), second.hash("directory")
            first.close()
            second.close()
            return hashes

    first, second = asyncio.run(both())
    assert first == second


async def test_projection_keeps_each_publishers_services_apart(tmp_path: Path) -> None:
    runner = await _build(tmp_path, [r for chain in CHAINS for r in chain])
    rows = runner.query(
        "directory", "SELECT service, name, withdrawn FROM {services} ORDER BY name, service"
    )
    assert [(s, n, w) for s, n, w in rows] == [
        ("debt-advice", "C's own debt advice", 0),
        ("carers", "Debt advice", 0),
        ("food-bank", "Debt advice", 1),
        ("debt-advice", "Money advice", 0),
    ]
    capacity = runner.query("directory", "SELECT service, status, as_of FROM {capacity}")
    assert capacity == [("debt-advice", "accepting", "2026-11-02")]  # latest by seq
    areas = runner.query(
        "directory", "SELECT district FROM {areas} WHERE service = 'carers' ORDER BY district"
    )
    assert areas == [("DL2",)]
    runner.close()


async def test_a_non_publisher_update_is_ignored_with_a_reason(tmp_path: Path) -> None:
    runner = await _build(tmp_path, [r for chain in CHAINS for r in chain])
    reasons = [r for (r,) in runner.query("directory", "SELECT reason FROM {_ignored}")]
    assert any(r.startswith("only the publisher hub:") and "'debt-advice'" in r for r in reasons)
    assert any("has published no service 'nothing'" in r for r in reasons)
    assert len(reasons) == 2
    runner.close()


async def test_capacity_of_a_withdrawn_service_is_ignored(tmp_path: Path) -> None:
    a = ChainWriter(NET)
    records = [
        a.next("service.published", published()),
        a.next("service.withdrawn", ServiceWithdrawn(service="debt-advice")),
        a.next("capacity.reported", _capacity("accepting", 3)),
    ]
    runner = await _build(tmp_path, records)
    assert runner.query("directory", "SELECT * FROM {capacity}") == []
    (reason,) = runner.query("directory", "SELECT reason FROM {_ignored}")
    assert "is withdrawn" in reason[0]
    runner.close()


# -- commands ------------------------------------------------------------------------------

cli = CliRunner()


def run(*args: str) -> Result:
    return cli.invoke(app, [str(a) for a in args])


@pytest.fixture
def hub(tmp_path: Path) -> Path:
    data = tmp_path / "hub"
    result = run("init", "--data", data, "--name", "Hub A", "--network", NET)
    assert result.exit_code == 0, result.output
    return data


PUBLISH = (
    "--id", "debt-advice", "--org", "Darlington CAB", "--name", "Debt advice",
    "--description", "Confidential advice on debts and money.",
    "--category", "debt", "--category", "advice", "--free",
    "--open", "MO,TU,WE 09:00-17:00", "--area", "DL1", "--area", "dl3",
    "--address", "1 High Row", "--town", "Darlington", "--postcode", "DL1 5AA",
    "--phone", "01325 000000", "--email", "help@example.org", "--contact-label", "Reception",
    "--language", "en", "--url", "https://example.org/debt",
)  # fmt: skip


def log_length(data: Path) -> int:
    result = run("log", "show", "--data", data, "--json")
    return len(result.stdout.splitlines())


def search(data: Path, *args: str) -> list[dict[str, Any]]:
    result = run("directory", "search", "--data", data, "--json", "--limit", "0", *args)
    assert result.exit_code == 0, result.output
    page: dict[str, Any] = json.loads(result.stdout)
    found: list[dict[str, Any]] = page["services"]
    assert page["total"] == page["returned"] == len(found)
    return found


def test_publish_update_capacity_withdraw_and_search(hub: Path) -> None:
    assert run("service", "publish", "--data", hub, *PUBLISH).exit_code == 0
    fee = (
        "--id", "counselling", "--org", "Mind", "--name", "Counselling",
        "--description", "Talking therapy.", "--category", "mental-health",
        "--fee", "20", "--fee-note", "per session", "--area", "DL2",
    )  # fmt: skip
    assert run("service", "publish", "--data", hub, *fee).exit_code == 0
    updated = run("service", "update", "--data", hub, "--id", "debt-advice", "--name", "Money")
    assert updated.exit_code == 0, updated.output
    report = ("--id", "debt-advice", "--status", "waitlist", "--as-of", "2026-11-20")
    assert run("capacity", "report", "--data", hub, *report).exit_code == 0

    (money,) = search(hub, "--text", "DEBTS", "--area", "DL3", "--free")
    assert money["name"] == "Money" and money["areas"] == ["DL1", "DL3"]
    assert money["capacity"] == {"status": "waitlist", "as_of": "2026-11-20", "note": ""}
    assert [s["id"] for s in search(hub, "--category", "mental-health")] == ["counselling"]
    assert search(hub, "--area", "DL9") == []
    assert [s["id"] for s in search(hub, "--free")] == ["debt-advice"]
    # 2026-11-25 is a Wednesday; 2026-11-26 a Thursday.
    open_wed = search(hub, "--open-now", "--at", "2026-11-25T16:59")
    assert [s["id"] for s in open_wed] == ["debt-advice"]
    assert search(hub, "--open-now", "--at", "2026-11-25T17:00") == []
    assert search(hub, "--open-now", "--at", "2026-11-26T10:00") == []

    assert run("service", "withdraw", "--data", hub, "--id", "debt-advice").exit_code == 0
    assert [s["id"] for s in search(hub)] == ["counselling"]


def test_publish_by_json_body(hub: Path) -> None:
    body = json.dumps(msgspec.to_builtins(SERVICE))
    result = run("service", "publish", "--data", hub, "--json", body)
    assert result.exit_code == 0, result.output
    assert [s["id"] for s in search(hub)] == ["debt-advice"]


MINIMAL = ("--id", "other", "--org", "O", "--name", "N", "--description", "D")
PUBLISH_DEBT = ("service", "publish", *MINIMAL, "--category", "debt")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("service", "publish", *MINIMAL, "--category", "astrology"), "category 'astrology'"),
        (("service", "publish", *MINIMAL), "missing required field `categories`"),
        ((*PUBLISH_DEBT, "--area", "Darlington"), "postcode districts such as DL1"),
        ((*PUBLISH_DEBT, "--open", "Mondays 9 to 5"), "--open 'Mondays 9 to 5'"),
        ((*PUBLISH_DEBT, "--open", "MO 17:00-09:00"), "must be before closes"),
        ((*PUBLISH_DEBT, "--fee", "-3"), "$.costs[0].amount"),
        ((*PUBLISH_DEBT, "--email", "nobody"), "$.contacts[0].email"),
        ((*PUBLISH_DEBT, "--address", "1 Road"), "--postcode"),
        ((*PUBLISH_DEBT, "--json", "{}"), "not both"),
        (("service", "publish", "--json", '{"id": "x", "colour": 1}'), "unknown field colour"),
        (("service", "update", "--id", "nope", "--name", "X"), "no such service"),
        (("service", "update", "--id", "debt-advice"), "must change at least one"),
        (("service", "withdraw", "--id", "nope"), "no such service"),
        (("capacity", "report", "--id", "debt-advice", "--status", "full"), "--status 'full'"),
        (("directory", "search", "--area", "nowhere"), "--area 'nowhere'"),
        (("directory", "search", "--category", "astrology"), "--category 'astrology'"),
        (("directory", "export", "--format", "csv", "--out", "x"), "--format 'csv'"),
    ],
)
def test_bad_command_input_exits_2_and_appends_nothing(
    hub: Path, args: tuple[str, ...], message: str
) -> None:
    assert run("service", "publish", "--data", hub, *PUBLISH).exit_code == 0
    before = log_length(hub)
    result = run(*args[:2], "--data", hub, *args[2:])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert log_length(hub) == before


def test_publishing_the_same_id_twice_is_refused(hub: Path) -> None:
    assert run("service", "publish", "--data", hub, *PUBLISH).exit_code == 0
    again = run("service", "publish", "--data", hub, *PUBLISH)
    assert again.exit_code == 2 and "already published" in again.output


# -- HSDS 3.0 ------------------------------------------------------------------------------


def hsds_validators() -> list[jsonschema.protocols.Validator]:
    """The per-object service schema ($refs resolved from the local files) and the
    compiled one, both checking formats (uuid, email)."""
    folder = shared_fixture("hsds-3.0", "schema")
    registry: Registry[Any] = Registry()
    for path in folder.glob("*.json"):
        contents = json.loads(path.read_text(encoding="utf-8"))
        registry = registry.with_resource(
            path.name, Resource.from_contents(contents, default_specification=DRAFT202012)
        )
    service = json.loads((folder / "service.json").read_text(encoding="utf-8"))
    with gzip.open(folder / "compiled" / "service.json.gz", "rt", encoding="utf-8") as f:
        compiled = json.load(f)
    formats = jsonschema.Draft202012Validator.FORMAT_CHECKER
    return [
        jsonschema.Draft202012Validator(service, registry=registry, format_checker=formats),
        jsonschema.Draft202012Validator(compiled, format_checker=formats),
    ]


def assert_valid_hsds(records: list[dict[str, Any]]) -> None:
    for validator in hsds_validators():
        for record in records:
            errors = [
                f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(record)
            ]
            assert errors == [], errors


def test_the_validators_reject_a_broken_service() -> None:
    example = json.loads(shared_fixture("hsds-3.0", "examples", "service_full.json").read_text())
    assert_valid_hsds([example])
    broken = {**example, "status": "open", "id": "not-a-uuid"}
    for validator in hsds_validators():
        assert len(list(validator.iter_errors(broken))) >= 2


def export(data: Path, out: Path) -> list[dict[str, Any]]:
    result = run("directory", "export", "--data", data, "--format", "hsds", "--out", out)
    assert result.exit_code == 0, result.output
    records: list[dict[str, Any]] = json.loads((out / "services.json").read_text())
    return records


def test_hsds_export_validates_against_the_official_schema(hub: Path, tmp_path: Path) -> None:
    assert run("service", "publish", "--data", hub, *PUBLISH).exit_code == 0
    fee = ("--id", "x", "--org", "O", "--name", "N", "--description", "D", "--category",
           "food", "--fee", "3.5", "--fee-note", "a meal")  # fmt: skip
    assert run("service", "publish", "--data", hub, *fee).exit_code == 0
    report = ("--id", "x", "--status", "no-capacity", "--as-of", "2026-11-20")
    assert run("capacity", "report", "--data", hub, *report).exit_code == 0
    records = export(hub, tmp_path / "out")
    assert_valid_hsds(records)
    debt = next(r for r in records if r["name"] == "Debt advice")
    assert [a["name"] for a in debt["service_areas"]] == ["DL1", "DL3"]
    assert debt["schedules"][0]["byday"] == "MO,TU,WE"
    assert debt["cost_options"][0]["amount"] == 0
    address = debt["service_at_locations"][0]["location"]["addresses"][0]
    assert address["postal_code"] == "DL1 5AA" and address["city"] == "Darlington"
    assert [t["taxonomy_term"]["code"] for t in debt["attributes"]] == ["debt", "advice"]
    assert export(hub, tmp_path / "again") == records  # derived ids are stable


def test_hsds_import_then_export_keeps_every_supported_field(hub: Path, tmp_path: Path) -> None:
    example_path = shared_fixture("hsds-3.0", "examples", "service_full.json")
    imported = run(
        "directory", "import", "--data", hub, "--format", "hsds", example_path,
        "--category", "mental-health",
    )  # fmt: skip
    assert imported.exit_code == 0, imported.output
    (first,) = search(hub)
    records = export(hub, tmp_path / "out")
    assert_valid_hsds(records)
    example = json.loads(example_path.read_text())
    (record,) = records
    assert record["id"] == example["id"]
    for key in ("name", "url", "email", "eligibility_description"):
        assert record[key] == example[key].strip()
    assert record["organization"]["name"] == example["organization"]["name"]
    assert record["cost_options"][0]["amount"] == 35
    assert record["cost_options"][0]["currency"] == "GBP"
    assert [a["name"] for a in record["service_areas"]] == ["AB1", "AB2", "AB3"]
    assert first["contacts"] == [
        {"label": "Reception", "phone": "+44 1234 234567", "email": "email@example.com"}
    ]  # the contact's personal name is not taken

    # Importing the export into another hub gives the same service fields.
    other = tmp_path / "other"
    assert run("init", "--data", other, "--name", "B", "--network", NET).exit_code == 0
    again = run("directory", "import", "--data", other, tmp_path / "out" / "services.json")
    assert again.exit_code == 0, again.output
    (second,) = search(other)
    assert {**second, "publisher": None} == {**first, "publisher": None}


def test_hsds_import_without_a_known_category_exits_2(hub: Path) -> None:
    example_path = shared_fixture("hsds-3.0", "examples", "service_full.json")
    result = run("directory", "import", "--data", hub, example_path)
    assert result.exit_code == 2 and "pass --category" in result.output
    assert log_length(hub) == 0


# -- print ---------------------------------------------------------------------------------


def test_print_groups_services_by_category_for_a4(hub: Path, tmp_path: Path) -> None:
    assert run("service", "publish", "--data", hub, *PUBLISH).exit_code == 0
    other = ("--id", "x", "--org", "O", "--name", "Food <bank>", "--description", "D",
             "--category", "food", "--area", "DL2")  # fmt: skip
    assert run("service", "publish", "--data", hub, *other).exit_code == 0
    page = tmp_path / "directory.html"
    result = run("directory", "print", "--data", hub, "--area", "DL1", "--out", page)
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert "size: A4" in html
    assert html.index("<h2>Advice and information</h2>") < html.index("<h2>Debt and money</h2>")
    assert html.count("<h3>Debt advice</h3>") == 2  # listed under both of its categories
    assert "Food" not in html  # DL2 only
    assert "Mon, Tue, Wed 09:00 to 17:00" in html
    run("directory", "print", "--data", hub, "--out", page)
    assert "Food &lt;bank&gt;" in page.read_text()


def test_search_shows_each_services_ratings_from_the_feedback_view(hub: Path) -> None:
    assert run("service", "publish", "--data", hub, *PUBLISH).exit_code == 0
    other = ("--id", "counselling", "--org", "Mind", "--name", "Counselling",
             "--description", "Talking therapy.", "--category", "mental-health")  # fmt: skip
    assert run("service", "publish", "--data", hub, *other).exit_code == 0
    hub_id = run("id", "--data", hub).stdout.strip()
    for rating in ("5", "4", "4"):
        rated = run("feedback", "submit", "--data", hub, "--service", f"{hub_id}:debt-advice",
                    "--rating", rating)  # fmt: skip
        assert rated.exit_code == 0, rated.output

    # One rating hub counts once, with its latest rating (issue 12 item 10).
    found = {s["id"]: (s["ratings"], s["average_rating"]) for s in search(hub)}
    assert found == {"debt-advice": (1, 4.0), "counselling": (0, None)}
    table = run("directory", "search", "--data", hub)
    assert table.exit_code == 0, table.output
    rows = {line.split("│")[2].strip(): line.split("│")[-2].strip()
            for line in table.stdout.splitlines() if line.startswith("│")}  # fmt: skip
    assert rows == {"Debt advice": "4.00 (1 rating)", "Counselling": "-"}
