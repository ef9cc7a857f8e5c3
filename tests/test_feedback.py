"""Feedback: ratings of services, community monitoring forms (seed 004) and ideas."""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from hubnode import EventLog, HubFolder, SigningKey, Status
from hubnode.cli import app
from hubnode.errors import InvalidEvent
from hubnode.events.feedback import (
    AspectGrade,
    FeedbackSubmitted,
    IdeaSubmitted,
    MonitoringRecorded,
    ServiceRef,
)
from hubnode.events.ids import hub_display
from hubnode.events.kinds import KINDS
from hubnode.projections import ProjectionRunner
from hubnode.projections.feedback import (
    FeedbackProjection,
    ServiceRating,
    average,
    ideas,
    monitoring_reports,
    service_feedback,
    service_summaries,
)
from hubnode.testing import ChainWriter

from .conftest import build_view

NET = "test-net"
HUB_ID = re.compile(r"hub:[a-z2-7]{52}")


# -- building views from histories -------------------------------------------------------


def build(tmp: Path, records: Sequence[bytes]) -> ProjectionRunner:
    """A log holding ``records`` (ingested in that order) and a caught-up view."""
    runner = build_view(tmp, records, FeedbackProjection)
    return runner


def ref(publisher: ChainWriter, service: str) -> ServiceRef:
    return ServiceRef(hub=hub_display(publisher.hub), id=service)


def rating(fid: str, about: ServiceRef, stars: int, comment: str = "") -> FeedbackSubmitted:
    return FeedbackSubmitted(feedback=fid, service=about, rating=stars, comment=comment)


def form(
    fid: str,
    period: str,
    grades: dict[str, str],
    *,
    topic: str | None = None,
    service: ServiceRef | None = None,
) -> MonitoringRecorded:
    return MonitoringRecorded(
        form=fid,
        topic=topic,
        service=service,
        period=period,
        aspects=tuple(AspectGrade(aspect=a, grade=g) for a, g in grades.items()),  # type: ignore[arg-type]
    )


class History:
    """Three hubs rating, monitoring and suggesting, with revisions and rule breaches."""

    def __init__(self) -> None:
        self.a, self.b, self.c = (ChainWriter(NET) for _ in range(3))
        a, b, c = self.a, self.b, self.c
        self.s1, self.s2 = ref(a, "food-bank"), ref(b, "advice")
        self.s3 = ref(c, "not-published-anywhere")
        self.chains: list[list[bytes]] = [
            [
                a.next("feedback.submitted", rating("a1", self.s1, 4, "Good")),
                a.next("feedback.submitted", rating("a2", self.s2, 2)),
                a.next("feedback.submitted", rating("a1", self.s1, 5, "Very good")),
                a.next("monitoring.recorded", form("m1", "2026-11", {"Litter": "B"}, topic="GC")),
                a.next(
                    "idea.submitted",
                    IdeaSubmitted(
                        idea="i1", title="Repair cafe", description="Fix things", tags=("repair",)
                    ),
                ),
            ],
            [
                b.next("feedback.submitted", rating("b1", self.s1, 3)),
                b.next("feedback.submitted", rating("b1", self.s2, 1)),  # moves: ignored
                b.next(
                    "monitoring.recorded",
                    form("m1", "2026-10", {"Litter": "D", "Noise": "C"}, topic="GC"),
                ),
                b.next(
                    "monitoring.recorded",
                    form("m1", "2026-11", {"Litter": "A", "Noise": "C"}, topic="GC"),
                ),
                b.next(
                    "idea.submitted",
                    IdeaSubmitted(
                        idea="i1",
                        title="Walking group",
                        description="Weekly walks",
                        area="Haughton",
                    ),
                ),
            ],
            [
                c.next("feedback.submitted", rating("c1", self.s3, 1, "Never answered")),
                c.next("feedback.submitted", rating("c2", self.s1, 5)),
                c.next(
                    "monitoring.recorded", form("m1", "2026-11", {"Litter": "C"}, service=self.s1)
                ),
                c.next(
                    "monitoring.recorded", form("m1", "2026-11", {"Litter": "A"}, topic="GC")
                ),  # moves: ignored
            ],
        ]

    def in_order(self, picks: Sequence[int]) -> list[bytes]:
        """The records in the order of ``picks`` (each pick takes that hub's next record)."""
        nexts = [iter(chain) for chain in self.chains]
        return [next(nexts[p]) for p in picks]

    def picks(self) -> list[int]:
        return [i for i, chain in enumerate(self.chains) for _ in chain]


HISTORY = History()


def key(r: ServiceRef) -> tuple[bytes, str]:
    return HISTORY_HUBS[r.hub], r.id


HISTORY_HUBS = {hub_display(w.hub): w.hub for w in (HISTORY.a, HISTORY.b, HISTORY.c)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[ProjectionRunner, str]:
    runner = build(tmp_path_factory.mktemp("reference"), HISTORY.in_order(HISTORY.picks()))
    return runner, runner.hash("feedback")


# -- validation --------------------------------------------------------------------------


def body_error(kind: str, fields: dict[str, object]) -> str:
    with pytest.raises(InvalidEvent) as caught:
        KINDS.body_from_json(kind, json.dumps(fields))
    return str(caught.value)


def test_rating_must_be_from_1_to_5() -> None:
    about = {"hub": hub_display(HISTORY.a.hub), "id": "food-bank"}
    assert "$.rating" in body_error(
        "feedback.submitted", {"feedback": "f1", "service": about, "rating": 0}
    )
    assert "<= 5" in body_error(
        "feedback.submitted", {"feedback": "f1", "service": about, "rating": 6}
    )


def test_rating_names_its_service_by_a_canonical_hub_id() -> None:
    bad = {"hub": "hub:" + "a" * 51 + "b", "id": "food-bank"}
    assert "$.service.hub" in body_error(
        "feedback.submitted", {"feedback": "f1", "service": bad, "rating": 3}
    )


def test_monitoring_grades_are_a_to_d() -> None:
    fields = {"form": "m1", "topic": "GC", "period": "2026-11"}
    error = body_error(
        "monitoring.recorded", {**fields, "aspects": [{"aspect": "Litter", "grade": "E"}]}
    )
    assert "$.aspects[0].grade" in error


def test_monitoring_needs_at_least_one_aspect() -> None:
    fields = {"form": "m1", "topic": "GC", "period": "2026-11", "aspects": []}
    assert "$.aspects" in body_error("monitoring.recorded", fields)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"topic": None}, "either a service or a topic"),
        ({"service": {"hub": hub_display(HISTORY.a.hub), "id": "x"}}, "either a service"),
        ({"period": "2026-13"}, "$.period"),
        ({"period": "November"}, "$.period"),
        (
            {"aspects": [{"aspect": "Litter", "grade": "A"}, {"aspect": "litter", "grade": "B"}]},
            "graded twice",
        ),
        ({"aspects": [{"aspect": " Litter", "grade": "A"}]}, "spaces"),
    ],
)
def test_monitoring_form_rules(change: dict[str, object], says: str) -> None:
    fields = {
        "form": "m1",
        "topic": "GC",
        "period": "2026-11",
        "aspects": [{"aspect": "Litter", "grade": "A"}],
    }
    fields.update(change)
    fields = {k: v for k, v in fields.items() if v is not None}
    assert says in body_error("monitoring.recorded", fields)


def test_idea_tags_do_not_repeat() -> None:
    fields = {"idea": "i1", "title": "T", "description": "D", "tags": ["food", "food"]}
    assert "repeat" in body_error("idea.submitted", fields)


def test_a_log_rejects_a_rating_out_of_range(tmp_path: Path) -> None:
    writer = ChainWriter(NET)
    raw = msgspec.msgpack.encode(
        {"feedback": "f1", "service": {"hub": hub_display(writer.hub), "id": "x"}, "rating": 6}
    )
    record = writer.next("feedback.submitted", raw)

    async def ingest() -> Status:
        log = await EventLog.open(tmp_path / "log.sqlite3", net=NET, key=SigningKey.generate())
        try:
            return (await log.ingest([record]))[0].status
        finally:
            await log.close()

    assert asyncio.run(ingest()) is Status.REJECTED


# -- the view ----------------------------------------------------------------------------


def test_average_has_two_decimals_rounding_halves_up() -> None:
    assert average(14, 3) == 4.67
    assert average(5, 3) == 1.67
    assert average(29, 8) == 3.63  # 3.625
    assert average(4, 1) == 4.0


def test_service_summaries(reference: tuple[ProjectionRunner, str]) -> None:
    runner, _ = reference
    summaries = service_summaries(runner)
    # s1: a1 revised 4 → 5, b1 3, c2 5; b1's move to s2 is ignored.
    assert summaries == {
        key(HISTORY.s1): ServiceRating(3, 4.33),
        key(HISTORY.s2): ServiceRating(1, 2.0),
        key(HISTORY.s3): ServiceRating(1, 1.0),
    }


def test_rating_a_service_nobody_published_counts(reference: tuple[ProjectionRunner, str]) -> None:
    runner, _ = reference
    (only,) = service_feedback(runner, *key(HISTORY.s3))
    assert (only.rating, only.comment) == (1, "Never answered")


def test_a_hub_revises_its_own_feedback(reference: tuple[ProjectionRunner, str]) -> None:
    runner, _ = reference
    by_a = [r for r in service_feedback(runner, *key(HISTORY.s1)) if r.feedback_id == "a1"]
    assert [(r.rating, r.comment, r.revised) for r in by_a] == [(5, "Very good", True)]


def test_moving_feedback_or_a_form_to_another_subject_is_ignored(
    reference: tuple[ProjectionRunner, str],
) -> None:
    runner, _ = reference
    ignored = runner.query("feedback", "SELECT hub, seq, reason FROM {_ignored} ORDER BY reason")
    assert [(hub, seq) for hub, seq, _ in ignored] == [(HISTORY.b.hub, 2), (HISTORY.c.hub, 4)]
    assert "feedback b1 is about " + hub_display(HISTORY.a.hub) + ":food-bank" in ignored[0][2]
    assert "monitoring form m1 is about " + hub_display(HISTORY.a.hub) in ignored[1][2]


def test_monitoring_reports_count_grades_per_aspect(
    reference: tuple[ProjectionRunner, str],
) -> None:
    runner, _ = reference
    reports = {(r.subject, r.period): r for r in monitoring_reports(runner)}
    s1 = f"{HISTORY.s1.hub}:{HISTORY.s1.id}"
    assert sorted(reports) == [("GC", "2026-11"), (s1, "2026-11")]
    gc = reports["GC", "2026-11"]
    assert gc.forms == 2  # a's m1, and b's m1 revised from October into November
    assert {t.aspect: t.counts for t in gc.aspects} == {
        "Litter": {"A": 1, "B": 1, "C": 0, "D": 0},
        "Noise": {"A": 0, "B": 0, "C": 1, "D": 0},
    }
    assert [r.subject for r in monitoring_reports(runner, period="2026-10")] == []
    assert [r.forms for r in monitoring_reports(runner, subject=s1)] == [1]


def test_ideas_of_different_hubs_may_share_an_id(reference: tuple[ProjectionRunner, str]) -> None:
    runner, _ = reference
    assert sorted(i.title for i in ideas(runner)) == ["Repair cafe", "Walking group"]
    assert [i.title for i in ideas(runner, "repair")] == ["Repair cafe"]


@settings(max_examples=25, deadline=None)
@given(picks=st.permutations(HISTORY.picks()))
def test_any_arrival_order_gives_the_same_view(
    reference: tuple[ProjectionRunner, str], picks: list[int]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runner = build(Path(tmp), HISTORY.in_order(picks))
        try:
            assert runner.hash("feedback") == reference[1]
        finally:
            runner.close()


def test_the_view_hash_changes_with_one_event_less(
    tmp_path: Path, reference: tuple[ProjectionRunner, str]
) -> None:
    records = HISTORY.in_order(HISTORY.picks())
    runner = build(tmp_path, records[:-1])
    assert runner.hash("feedback") != reference[1]
    runner.close()


# -- the command line --------------------------------------------------------------------


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner(env={"HUBNODE_DATA": None, "COLUMNS": "250", "NO_COLOR": "1"})


@pytest.fixture
def hub(cli: CliRunner, tmp_path: Path) -> tuple[Path, str]:
    data = tmp_path / "hub"
    result = invoke(cli, "init", "--data", data, "--name", "Hub A", "--network", NET)
    assert result.exit_code == 0, result.output
    return data, result.stdout.strip()


def invoke(cli: CliRunner, *args: str | Path) -> Result:
    return cli.invoke(app, [str(a) for a in args])


def count(data: Path) -> int:
    async def run() -> int:
        async with await HubFolder.open(data).open_log(with_key=False) as log:
            return await log.count()

    return asyncio.run(run())


def test_cli_rates_a_service_and_revises_the_rating(cli: CliRunner, hub: tuple[Path, str]) -> None:
    data, hub_id = hub
    other = hub_display(ChainWriter(NET).hub)  # a service this hub has never heard of
    service = f"{other}:food-bank"
    first = invoke(cli, "feedback", "submit", "-d", data, "--service", service, "--rating", "2")
    assert first.exit_code == 0, first.output
    fid = re.search(r"feedback (\S+) recorded", first.stdout)
    assert fid is not None
    again = invoke(
        cli,
        "feedback",
        "submit",
        "-d",
        data,
        "--service",
        service,
        "--rating",
        "4",
        "--comment",
        "Much better now",
        "--id",
        fid[1],
    )
    assert again.exit_code == 0, again.output
    shown = invoke(cli, "feedback", "show", "-d", data, "--service", service, "--json")
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.stdout)
    assert (report["count"], report["average"]) == (1, 4.0)
    assert [(r["rating"], r["comment"], r["revised"]) for r in report["ratings"]] == [
        (4, "Much better now", True)
    ]
    assert report["ratings"][0]["submitter"] == hub_id
    summary = invoke(cli, "feedback", "summary", "-d", data)
    assert summary.exit_code == 0, summary.output
    assert service in summary.stdout and "4.00" in summary.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--rating", "0"], "--rating must be a whole number from 1"),
        (["--rating", "6"], "--rating must be a whole number from 1"),
        (["--rating", "3", "--comment", "ring me on 07967 515106"], "phone number"),
        (["--rating", "3", "--comment", "mail jo@example.org"], "email address"),
        (["--rating", "3", "--comment", "x" * 501], "$.comment"),
        (["--rating", "3", "--id", "not an id"], "$.feedback"),
    ],
)
def test_cli_refuses_bad_feedback(
    cli: CliRunner, hub: tuple[Path, str], args: list[str], says: str
) -> None:
    data, hub_id = hub
    result = invoke(cli, "feedback", "submit", "-d", data, "--service", f"{hub_id}:x", *args)
    assert result.exit_code == 2, result.output
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert count(data) == 0


@pytest.mark.parametrize(
    "service", ["food-bank", "hub:abc:food-bank", "hub:" + "a" * 52, "hub:" + "a" * 52 + ":"]
)
def test_cli_explains_how_to_name_a_service(
    cli: CliRunner, hub: tuple[Path, str], service: str
) -> None:
    data, _ = hub
    result = invoke(cli, "feedback", "submit", "-d", data, "--service", service, "--rating", "3")
    assert result.exit_code == 2, result.output
    assert "--service" in result.stderr
    assert count(data) == 0


def test_cli_feedback_id_cannot_move_to_another_service(
    cli: CliRunner, hub: tuple[Path, str]
) -> None:
    data, hub_id = hub
    ok = invoke(
        cli,
        "feedback",
        "submit",
        "-d",
        data,
        "--service",
        f"{hub_id}:a",
        "--rating",
        "3",
        "--id",
        "f1",
    )
    assert ok.exit_code == 0, ok.output
    moved = invoke(
        cli,
        "feedback",
        "submit",
        "-d",
        data,
        "--service",
        f"{hub_id}:b",
        "--rating",
        "3",
        "--id",
        "f1",
    )
    assert moved.exit_code == 2
    assert "leave out --id" in moved.stderr
    assert count(data) == 1


def test_cli_monitoring_record_and_report(cli: CliRunner, hub: tuple[Path, str]) -> None:
    data, _ = hub
    for grades in (["Litter=b", "Dog fouling=D"], ["Litter=A"]):
        args = [f"--grade={g}" for g in grades]
        result = invoke(
            cli,
            "monitoring",
            "record",
            "-d",
            data,
            "--subject",
            "Green and Clean",
            "--period",
            "2026-11",
            *args,
        )
        assert result.exit_code == 0, result.output
    table = invoke(cli, "monitoring", "report", "-d", data)
    assert table.exit_code == 0, table.output
    assert "Green and Clean — 2026-11 (2 forms)" in table.stdout
    litter = next(line for line in table.stdout.splitlines() if "Litter" in line)
    assert [c.strip() for c in litter.split("│")[1:-1]] == ["Litter", "1", "1", "-", "-"]
    as_json = invoke(cli, "monitoring", "report", "-d", data, "--period", "2026-11", "--json")
    assert json.loads(as_json.stdout) == [
        {
            "subject": "Green and Clean",
            "period": "2026-11",
            "forms": 2,
            "aspects": [
                {"aspect": "Dog fouling", "A": 0, "B": 0, "C": 0, "D": 1},
                {"aspect": "Litter", "A": 1, "B": 1, "C": 0, "D": 0},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--grade", "Litter=E"], "the grade must be one of A, B, C, D"),
        (["--grade", "Litter"], "write ASPECT=GRADE"),
        ([], "grade at least one aspect"),
        (["--grade", "Litter=A", "--grade", "litter=B"], "graded twice"),
        (["--grade", "Litter=A", "--period", "Nov 2026"], "--period"),
    ],
)
def test_cli_refuses_bad_monitoring_forms(
    cli: CliRunner, hub: tuple[Path, str], args: list[str], says: str
) -> None:
    data, _ = hub
    period = [] if "--period" in args else ["--period", "2026-11"]
    result = invoke(cli, "monitoring", "record", "-d", data, "--subject", "GC", *period, *args)
    assert result.exit_code == 2, result.output
    assert says in result.stderr
    assert count(data) == 0


def test_cli_ideas(cli: CliRunner, hub: tuple[Path, str]) -> None:
    data, _ = hub
    result = invoke(
        cli,
        "idea",
        "submit",
        "-d",
        data,
        "--title",
        "Repair cafe",
        "--description",
        "Monthly, at the hub",
        "--tag",
        "Repair",
        "--area",
        "Cockerton",
    )
    assert result.exit_code == 0, result.output
    bad = invoke(
        cli,
        "idea",
        "submit",
        "-d",
        data,
        "--title",
        "T",
        "--description",
        "D",
        "--tag",
        "two words",
    )
    assert bad.exit_code == 2 and "--tag" in bad.stderr
    listed = json.loads(invoke(cli, "idea", "list", "-d", data, "--json").stdout)
    assert [(i["title"], i["tags"], i["area"]) for i in listed] == [
        ("Repair cafe", ["repair"], "Cockerton")
    ]
    assert (
        json.loads(invoke(cli, "idea", "list", "-d", data, "--tag", "food", "--json").stdout) == []
    )
