"""Directory search in SQL gives what a plain Python filter over the services gives.

A generated directory (three hubs publishing, updating, withdrawing, republishing and
reporting capacity) is folded into the ``directory`` view; every search, including
``--open-now`` at the edges of opening hours, is checked against a straightforward filter
over the services' final state worked out here from the bodies, independently of the view.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from typer.testing import CliRunner

from hubnode.cli import app
from hubnode.commands.directory import DEFAULT_LIMIT, Listing, Search
from hubnode.events.directory import (
    DAYS,
    CapacityReported,
    CostOption,
    ServicePublished,
    ServiceUpdated,
    ServiceWithdrawn,
    WeeklyHours,
)
from hubnode.events.kinds import Body
from hubnode.projections.directory import DirectoryProjection
from hubnode.projections.runner import ProjectionRunner
from hubnode.testing import ChainWriter

from .conftest import NET, build_view

MONDAY = dt.date(2026, 11, 23)
CLOCKS = ("00:00", "08:59", "09:00", "12:30", "16:59", "17:00", "21:59", "22:00", "23:59")
NAMES = ("Debt advice", "Café club", "Food bank", "Carers' group", "Debt advice")
WORDS = ("money", "housing", "CAFÉ", "benefits", "walk-in", "advice", "Food")

Key = tuple[bytes, str]


class Live(msgspec.Struct):
    service: ServicePublished
    withdrawn: bool = False
    capacity: dict[str, str] | None = None


def reference_open(service: ServicePublished, when: dt.datetime) -> bool:
    """Open at ``when``: its weekday and HH:MM as written, closes exclusive."""
    day, clock = DAYS[when.weekday()], when.strftime("%H:%M")
    return any(day in h.days and h.opens <= clock < h.closes for h in service.schedules)


def reference(state: dict[Key, Live], search: Search) -> list[tuple[bytes, Live]]:
    def matches(s: ServicePublished) -> bool:
        text = "\n".join((s.name, s.description, s.organisation)).casefold()
        return (
            all(word in text for word in (search.text or "").casefold().split())
            and all(c in s.categories for c in search.categories)
            and (search.area is None or search.area in s.areas)
            and (not search.free or any(c.kind == "free" for c in s.costs))
            and (search.open_at is None or reference_open(s, search.open_at))
        )

    live = [(pub, x) for (pub, _), x in state.items() if not x.withdrawn and matches(x.service)]
    return sorted(live, key=lambda item: (item[1].service.name, item[0], item[1].service.id))


def _hours(rng: random.Random) -> tuple[WeeklyHours, ...]:
    choice = rng.randrange(6)
    if choice == 0:
        return ()  # no schedule: never open now
    if choice == 1:  # overnight, written as two entries around midnight
        return (
            WeeklyHours(days=("FR",), opens="22:00", closes="23:59"),
            WeeklyHours(days=("SA",), opens="00:00", closes="06:00"),
        )
    if choice == 2:  # the same day and times twice, with different notes
        return (
            WeeklyHours(days=("MO", "WE"), opens="09:00", closes="17:00", note="drop-in"),
            WeeklyHours(days=("WE",), opens="09:00", closes="17:00", note="by phone"),
        )
    days = tuple(sorted(rng.sample(DAYS, rng.randint(1, 7)), key=DAYS.index))
    opens, closes = sorted(rng.sample(("00:00", "08:59", "09:00", "12:30", "17:00", "23:59"), 2))
    split = WeeklyHours(days=days[:1], opens="18:00", closes="22:00")
    return (WeeklyHours(days=days, opens=opens, closes=closes),) + ((split,) if choice == 3 else ())


def _service(rng: random.Random, sid: str) -> ServicePublished:
    return ServicePublished(
        id=sid,
        organisation=rng.choice(("Darlington CAB", "Mind", "Age UK")),
        name=rng.choice(NAMES),
        description=" ".join(rng.sample(WORDS, 3)) + ".",
        categories=tuple(rng.sample(("debt", "food", "carers", "advice"), rng.randint(1, 3))),
        costs=rng.choice(
            ((), (CostOption(kind="free"),), (CostOption(kind="fee", amount=5, currency="GBP"),))
        ),
        areas=tuple(rng.sample(("DL1", "DL2", "DL3", "TS5"), rng.randint(0, 3))),
        schedules=_hours(rng),
    )


def generated() -> tuple[list[bytes], dict[Key, Live]]:
    """Records of three hubs' directory work, and the state a plain fold of them gives."""
    rng = random.Random(20261125)
    records: list[bytes] = []
    state: dict[Key, Live] = {}
    for _ in range(3):
        writer = ChainWriter(NET)

        def add(kind: str, body: Body, writer: ChainWriter = writer) -> None:
            records.append(writer.next(kind, body))

        ids = [f"svc-{n}" for n in range(40)]
        for sid in ids:
            service = _service(rng, sid)
            add("service.published", service)
            state[writer.hub, sid] = Live(service)
        for sid in rng.sample(ids, 25):
            live = state[writer.hub, sid]
            action = rng.randrange(4)
            if action == 0:
                changed = ServiceUpdated(id=sid, name=rng.choice(NAMES), schedules=_hours(rng))
                add("service.updated", changed)
                live.service = msgspec.structs.replace(live.service, **changed.changes())
            elif action == 1:
                add("service.withdrawn", ServiceWithdrawn(service=sid))
                live.withdrawn = True
            elif action == 2:  # withdrawn, then published again with new fields
                add("service.withdrawn", ServiceWithdrawn(service=sid))
                live.service = _service(rng, sid)
                add("service.published", live.service)
            status = rng.choice(("accepting", "waitlist", "no-capacity"))
            report = CapacityReported(service=sid, status=status, as_of=dt.date(2026, 11, 20))
            add("capacity.reported", report)  # ignored by the view when withdrawn
            if not live.withdrawn:
                live.capacity = {"status": status, "as_of": "2026-11-20", "note": ""}
    return records, state


@pytest.fixture(scope="module")
def directory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ProjectionRunner, dict[Key, Live]]]:
    records, state = generated()
    runner = build_view(tmp_path_factory.mktemp("dir"), records, DirectoryProjection)
    yield runner, state
    runner.close()


def _times() -> list[dt.datetime]:
    """Every weekday at the edges of the generated hours, plus seconds and a time zone."""
    times = [
        dt.datetime.combine(MONDAY + dt.timedelta(days=d), dt.time.fromisoformat(clock))
        for d in range(7)
        for clock in CLOCKS
    ]
    return [
        *times,
        dt.datetime(2026, 11, 25, 16, 59, 59),  # still 16:59: minutes count, not seconds
        # Wall-clock as written, like the hours: Wednesday 09:00 whatever the zone.
        dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=9))),
        dt.datetime(2026, 11, 28, 0, 30, tzinfo=dt.UTC),
    ]


SEARCHES = [
    Search(),
    Search(text="debt"),
    Search(text="café ADVICE"),
    Search(text="walk-in money"),
    Search(text="nothing-like-this"),
    Search(categories=("food",)),
    Search(categories=("debt", "advice")),
    Search(area="DL3"),
    Search(free=True),
    Search(text="advice", categories=("debt",), area="DL1", free=True),
    Search(free=True, open_at=dt.datetime(2026, 11, 25, 12, 30)),
    Search(area="DL2", open_at=dt.datetime(2026, 11, 27, 22, 0)),
    *(Search(open_at=when) for when in _times()),
]


def _keyed(found: list[Listing]) -> list[tuple[bytes, str, ServicePublished, Any]]:
    return [(f.publisher, f.service.id, f.service, f.capacity) for f in found]


@pytest.mark.parametrize("search", SEARCHES, ids=repr)
def test_search_gives_what_a_plain_filter_gives_in_the_same_order(
    directory: tuple[ProjectionRunner, dict[Key, Live]], search: Search
) -> None:
    runner, state = directory
    expected = [(pub, x.service.id, x.service, x.capacity) for pub, x in reference(state, search)]
    assert search.count(runner) == len(expected)
    assert _keyed(search.listings(runner)) == expected
    assert _keyed(search.listings(runner, limit=7)) == expected[:7]
    for limit in (1, 7, 200):  # pages found by the walk or by the one-pass count
        found = search.page(runner, limit)
        assert (_keyed(found.listings), found.total) == (expected[:limit], len(expected))


@pytest.mark.parametrize(
    ("search", "limit", "walked"),
    [(Search(), 7, True), (Search(free=True), 1, True), (Search(text="walk-in money"), 20, False)],
    ids=["all", "free", "narrow"],
)
def test_a_page_of_dense_matches_is_walked_in_name_order_and_counted_apart(
    directory: tuple[ProjectionRunner, dict[Key, Live]],
    monkeypatch: pytest.MonkeyPatch,
    search: Search,
    limit: int,
    walked: bool,
) -> None:
    runner, state = directory
    statements: list[str] = []
    query = runner.query

    def spy(name: str, statement: str, params: Any = ()) -> list[tuple[Any, ...]]:
        statements.append(statement)
        return query(name, statement, params)

    monkeypatch.setattr(runner, "query", spy)
    found = search.page(runner, limit)
    assert found.total == len(reference(state, search))
    one_pass = any(s.startswith("WITH matches") for s in statements)
    counted = any(s.startswith("SELECT count(*)") for s in statements)
    assert (one_pass, counted) == (not walked, walked)


def test_the_generated_directory_covers_the_edge_cases(
    directory: tuple[ProjectionRunner, dict[Key, Live]],
) -> None:
    runner, state = directory
    live = [x for x in state.values() if not x.withdrawn]
    assert any(not x.service.schedules for x in live)
    assert any(h.closes == "23:59" for x in live for h in x.service.schedules)
    assert any(x.withdrawn for x in state.values())
    assert len({x.service.name for x in live}) < len(live)  # ties broken by publisher, id
    open_counts = [len(reference(state, Search(open_at=when))) for when in _times()]
    assert 0 in open_counts and max(open_counts) > 10
    assert runner.query("directory", "SELECT count(*) FROM {hours}")[0][0] > len(live)


def test_overnight_hours_are_two_entries_and_closes_is_exclusive(
    directory: tuple[ProjectionRunner, dict[Key, Live]],
) -> None:
    runner, _ = directory

    def open_ids(when: str) -> set[str]:
        found = Search(open_at=dt.datetime.fromisoformat(when)).listings(runner)
        return {f.service.id for f in found if f.service.schedules[0].opens == "22:00"}

    overnight = open_ids("2026-11-27T22:00")  # a Friday
    assert overnight
    assert open_ids("2026-11-27T23:58") == overnight
    assert open_ids("2026-11-27T23:59") == set()  # the last minute is the closing time
    assert open_ids("2026-11-28T00:00") == overnight  # Saturday's entry
    assert open_ids("2026-11-28T06:00") == set()
    assert open_ids("2026-11-26T23:00") == set()  # Thursday: closed


def test_hours_rows_follow_updates_and_repeats_collapse(tmp_path: Path) -> None:
    writer = ChainWriter(NET)
    twice = _service(random.Random(1), "x")
    twice = msgspec.structs.replace(
        twice,
        schedules=(
            WeeklyHours(days=("MO", "WE"), opens="09:00", closes="17:00", note="drop-in"),
            WeeklyHours(days=("WE",), opens="09:00", closes="17:00", note="by phone"),
        ),
    )
    update = ServiceUpdated(
        id="x", schedules=(WeeklyHours(days=("SU",), opens="10:00", closes="12:00"),)
    )
    first = writer.next("service.published", twice)
    then = writer.next("service.updated", update)
    hours = "SELECT day, opens, closes FROM {hours} ORDER BY day"
    for folder, records, expected in (
        ("published", [first], [("MO", "09:00", "17:00"), ("WE", "09:00", "17:00")]),
        ("updated", [first, then], [("SU", "10:00", "12:00")]),
    ):
        (tmp_path / folder).mkdir()
        runner = build_view(tmp_path / folder, records, DirectoryProjection)
        assert runner.query("directory", hours) == expected
        runner.close()


# -- the command: --limit, counts ------------------------------------------------------------

cli = CliRunner()


def _publish(data: Path, n: int) -> None:
    for i in range(n):
        args = ("--id", f"s{i:02d}", "--org", "O", "--name", f"Service {i:02d}",
                "--description", "D", "--category", "food", "--open", "WE 09:00-17:00")  # fmt: skip
        result = cli.invoke(app, ["service", "publish", "--data", str(data), *args])
        assert result.exit_code == 0, result.output


@pytest.fixture
def hub(tmp_path: Path) -> Path:
    data = tmp_path / "hub"
    result = cli.invoke(app, ["init", "--data", str(data), "--name", "A", "--network", NET])
    assert result.exit_code == 0, result.output
    _publish(data, 5)
    return data


def test_json_search_says_how_many_match_and_how_many_it_returns(hub: Path) -> None:
    def search(*args: str) -> dict[str, Any]:
        result = cli.invoke(app, ["directory", "search", "--data", str(hub), "--json", *args])
        assert result.exit_code == 0, result.output
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    page = search("--limit", "2")
    assert (page["total"], page["returned"]) == (5, 2)
    assert [s["id"] for s in page["services"]] == ["s00", "s01"]
    everything = search("--limit", "0")
    assert (everything["total"], everything["returned"]) == (5, 5)
    assert everything == search()  # 5 is under the default limit
    shut = search("--open-now", "--at", "2026-11-26T10:00", "--limit", "1")
    assert shut == {"total": 0, "returned": 0, "services": []}
    opened = search("--open-now", "--at", "2026-11-25T10:00", "--limit", "1")
    assert (opened["total"], opened["returned"]) == (5, 1)


def test_a_table_cut_short_says_how_many_more_and_how_to_see_them(hub: Path) -> None:
    result = cli.invoke(app, ["directory", "search", "--data", str(hub), "--limit", "3"])
    assert result.exit_code == 0, result.output
    assert "Service 02" in result.stdout and "Service 03" not in result.stdout
    assert "2 more — use --limit 5 (or --limit 0) to show them all" in result.stdout
    whole = cli.invoke(app, ["directory", "search", "--data", str(hub), "--limit", "5"])
    assert "Service 04" in whole.stdout and "more —" not in whole.stdout


def test_limit_default_is_in_the_help_and_a_negative_limit_exits_2(hub: Path) -> None:
    helped = cli.invoke(app, ["directory", "search", "--help"], env={"COLUMNS": "200"})
    assert "--limit" in helped.stdout and f"default: {DEFAULT_LIMIT}" in helped.stdout
    bad = cli.invoke(app, ["directory", "search", "--data", str(hub), "--limit", "-1"])
    assert bad.exit_code == 2
