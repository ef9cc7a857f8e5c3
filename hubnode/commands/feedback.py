"""``hubnode feedback``, ``hubnode monitoring`` and ``hubnode idea``: the feedback view.

Ratings and comments on services (any hub's, known here or not), community monitoring
forms graded A-D per aspect (seed 004's street-rep form), and ideas for new services.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import asdict
from typing import Annotated, Any, Final

import msgspec
import typer
from rich.table import Table

from hubnode.commands.common import (
    DataOpt,
    JsonOpt,
    caught_up,
    fail,
    folder_of,
    no_personal_data,
    out,
    parse_service,
    print_json,
    run_async,
    when,
)
from hubnode.config import HubFolder
from hubnode.events.feedback import (
    GRADE_MEANINGS,
    GRADES,
    FeedbackSubmitted,
    IdeaSubmitted,
    MonitoringRecorded,
)
from hubnode.events.fields import explain
from hubnode.events.ids import HUB_PREFIX, hub_display
from hubnode.events.kinds import Body
from hubnode.projections.feedback import (
    average,
    ideas,
    monitoring_reports,
    own_form_subject,
    own_rating_subject,
    service_feedback,
    subject_of,
)

feedback_app = typer.Typer(
    help="Ratings (1-5) and short comments on services, from any hub.", no_args_is_help=True
)
monitoring_app = typer.Typer(
    help="Community monitoring forms: grade named aspects A (no problem) to D (unacceptable).",
    no_args_is_help=True,
)
idea_app = typer.Typer(help="Ideas for new or better services.", no_args_is_help=True)

ServiceOpt = Annotated[
    str,
    typer.Option(
        "--service",
        help="The service as HUB:SERVICE: the publishing hub's hub:… id, a colon, its service id.",
        show_default=False,
    ),
]
NO_PERSONAL_DATA: Final = "Keep it short and leave out personal data (names, phones, emails)."

_HUB_LEN: Final = len(HUB_PREFIX) + 52


def register(app: typer.Typer) -> None:
    app.add_typer(feedback_app, name="feedback")
    app.add_typer(monitoring_app, name="monitoring")
    app.add_typer(idea_app, name="idea")


# -- input ------------------------------------------------------------------------------


def _body(cls: type[Body], fields: dict[str, Any]) -> Body:
    try:
        return msgspec.convert(fields, cls)
    except msgspec.ValidationError as e:
        fail(f"{cls.__name__}: {explain(str(e))}", 2)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


def _append(folder: HubFolder, kind: str, body: Body) -> int:
    async def append() -> int:
        async with await folder.open_log() as log:
            return (await log.append(kind, body)).seq

    return run_async(append())


# -- feedback ---------------------------------------------------------------------------


@feedback_app.command("submit")
def feedback_submit(
    data: DataOpt,
    service: ServiceOpt,
    rating: Annotated[int, typer.Option(help="1 (poor) to 5 (excellent).", show_default=False)],
    comment: Annotated[
        str, typer.Option(help=f"Optional, at most 500 characters. {NO_PERSONAL_DATA}")
    ] = "",
    feedback_id: Annotated[
        str | None,
        typer.Option("--id", help="Revise this hub's earlier feedback with this id (else new)."),
    ] = None,
) -> None:
    """Rate a service 1-5 with an optional short comment (no personal data). Prints its id."""
    hub, service_id = parse_service(service)
    if not 1 <= rating <= 5:
        fail(f"--rating must be a whole number from 1 (poor) to 5 (excellent), not {rating}", 2)
    no_personal_data("--comment", comment)
    fid = feedback_id or _new_id("f")
    body = _body(
        FeedbackSubmitted,
        {
            "feedback": fid,
            "service": {"hub": hub_display(hub), "id": service_id},
            "rating": rating,
            "comment": comment.strip(),
        },
    )
    folder = folder_of(data)
    if feedback_id is not None:
        runner = caught_up(folder)
        earlier = own_rating_subject(runner, folder.hub, feedback_id)
        runner.close()
        if earlier is not None and earlier != subject_of(hub, service_id):
            fail(
                f"--id {feedback_id} is this hub's feedback about {earlier}; "
                "leave out --id to rate another service",
                2,
            )
    seq = _append(folder, "feedback.submitted", body)
    verb = "revised" if feedback_id else "recorded"
    out.print(f"feedback {fid} {verb} (seq {seq}); revise it with --id {fid}", markup=False)


@feedback_app.command("show")
def feedback_show(data: DataOpt, service: ServiceOpt, as_json: JsonOpt = False) -> None:
    """One service's ratings: how many count (one per rating hub), the average, each comment."""
    hub, service_id = parse_service(service)
    runner = caught_up(folder_of(data))
    rows = service_feedback(runner, hub, service_id)
    runner.close()
    counted = [r.rating for r in rows if r.counted]
    avg = average(sum(counted), len(counted)) if counted else None
    shown = subject_of(hub, service_id)
    if as_json:
        print_json(
            {
                "service": shown,
                "count": len(counted),
                "average": avg,
                "ratings": [asdict(r) for r in rows],
            }
        )
        return
    if not rows:
        out.print(f"{shown}: no ratings yet", markup=False)
        return
    out.print(
        f"{shown}: {_many(len(rows), 'rating')} from {_many(len(counted), 'hub')} "
        f"(each hub's latest counts), average {avg:.2f} out of 5",
        markup=False,
    )
    table = Table("rating", "comment", "from hub", "when", "revised", "counts")
    for r in rows:
        table.add_row(
            "★" * r.rating,
            r.comment or "-",
            r.submitter[:18] + "…",
            when(r.ts),
            "yes" if r.revised else "",
            "yes" if r.counted else "",
        )
    out.print(table)


def _many(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@feedback_app.command("summary")
def feedback_summary(data: DataOpt, as_json: JsonOpt = False) -> None:
    """Every rated service with its number of ratings and average."""
    from hubnode.projections.feedback import service_summaries

    runner = caught_up(folder_of(data))
    summaries = service_summaries(runner)
    runner.close()
    rows: list[dict[str, Any]] = [
        {"service": subject_of(hub, sid), "count": s.ratings, "average": s.average}
        for (hub, sid), s in sorted(summaries.items())
    ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no ratings yet")
        return
    table = Table("service", "ratings", "average")
    for r in rows:
        table.add_row(r["service"], str(r["count"]), f"{r['average']:.2f}")
    out.print(table)


# -- monitoring -------------------------------------------------------------------------


def _subject(text: str) -> tuple[dict[str, Any], str]:
    """``--subject`` → (body fields, stored subject): a service if it starts with hub:."""
    value = text.strip()
    if value.startswith(HUB_PREFIX):
        hub, service_id = parse_service(value, "--subject")
        shown = subject_of(hub, service_id)
        return {"service": {"hub": shown[:_HUB_LEN], "id": service_id}}, shown
    if not value:
        fail("--subject: name a service (hub:…:SERVICE) or a local agreement or topic", 2)
    return {"topic": value}, value


def _grades(items: list[str]) -> list[dict[str, str]]:
    if not items:
        fail("--grade: grade at least one aspect, e.g. --grade 'Litter=B'", 2)
    lines = []
    for item in items:
        aspect, sep, grade = item.rpartition("=")
        grade = grade.strip().upper()
        if not sep or not aspect.strip():
            fail(f"--grade {item!r}: write ASPECT=GRADE, e.g. 'Peace and quiet=B'", 2)
        if grade not in GRADES:
            scale = "; ".join(f"{g} = {m}" for g, m in GRADE_MEANINGS.items())
            fail(f"--grade {item!r}: the grade must be one of A, B, C, D ({scale})", 2)
        lines.append({"aspect": aspect.strip(), "grade": grade})
    return lines


@monitoring_app.command("record")
def monitoring_record(
    data: DataOpt,
    subject: Annotated[
        str,
        typer.Option(
            help="A service (hub:…:SERVICE) or a local agreement or topic, e.g. 'Green and Clean'.",
            show_default=False,
        ),
    ],
    period: Annotated[
        str,
        typer.Option(help="The month (2026-11), quarter (2026-Q4) or year.", show_default=False),
    ],
    grade: Annotated[
        list[str] | None,
        typer.Option(help="ASPECT=GRADE, A to D; repeat for each aspect.", show_default=False),
    ] = None,
    comment: Annotated[
        str, typer.Option(help=f"Optional, at most 500 characters. {NO_PERSONAL_DATA}")
    ] = "",
    form_id: Annotated[
        str | None,
        typer.Option("--id", help="Revise this hub's earlier form with this id (else new)."),
    ] = None,
) -> None:
    """Record a monitoring form: a grade A-D for each aspect of a subject in a period."""
    fields, shown = _subject(subject)
    if not re.fullmatch(r"[0-9]{4}(-(0[1-9]|1[0-2])|-Q[1-4])?", period.strip()):
        fail(f"--period {period!r}: write a month (2026-11), a quarter (2026-Q4) or a year", 2)
    no_personal_data("--comment", comment)
    fid = form_id or _new_id("m")
    body = _body(
        MonitoringRecorded,
        {
            "form": fid,
            **fields,
            "period": period.strip(),
            "aspects": _grades(grade or []),
            "comment": comment.strip(),
        },
    )
    folder = folder_of(data)
    if form_id is not None:
        runner = caught_up(folder)
        earlier = own_form_subject(runner, folder.hub, form_id)
        runner.close()
        if earlier is not None and earlier != shown:
            fail(
                f"--id {form_id} is this hub's form about {earlier}; "
                "leave out --id to record a form about another subject",
                2,
            )
    seq = _append(folder, "monitoring.recorded", body)
    out.print(f"monitoring form {fid} recorded (seq {seq})", markup=False)


@monitoring_app.command("report")
def monitoring_report(
    data: DataOpt,
    subject: Annotated[
        str | None, typer.Option(help="Only this subject (hub:…:SERVICE or topic).")
    ] = None,
    period: Annotated[str | None, typer.Option(help="Only this period, e.g. 2026-11.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """How many forms gave each grade A-D to each aspect, per subject and period."""
    stored = _subject(subject)[1] if subject is not None else None
    runner = caught_up(folder_of(data))
    reports = monitoring_reports(runner, stored, period.strip() if period else None)
    runner.close()
    if as_json:
        print_json(
            [
                {
                    "subject": r.subject,
                    "period": r.period,
                    "forms": r.forms,
                    "aspects": [{"aspect": a.aspect, **a.counts} for a in r.aspects],
                }
                for r in reports
            ]
        )
        return
    if not reports:
        out.print("no monitoring forms recorded" + (" that match" if subject or period else ""))
        return
    headers = [f"{g}: {m}" for g, m in GRADE_MEANINGS.items()]
    for r in reports:
        plural = "form" if r.forms == 1 else "forms"
        table = Table("aspect", *headers, title=f"{r.subject} — {r.period} ({r.forms} {plural})")
        for a in r.aspects:
            table.add_row(a.aspect, *(str(a.counts[g] or "-") for g in GRADES))
        out.print(table)


# -- ideas ------------------------------------------------------------------------------


@idea_app.command("submit")
def idea_submit(
    data: DataOpt,
    title: Annotated[str, typer.Option(help="A short title.", show_default=False)],
    description: Annotated[
        str, typer.Option(help=f"What and for whom. {NO_PERSONAL_DATA}", show_default=False)
    ],
    tag: Annotated[
        list[str] | None, typer.Option(help="A category tag (lower-case); repeat for more.")
    ] = None,
    area: Annotated[str, typer.Option(help="Where it would help, e.g. a ward or town.")] = "",
    idea_id: Annotated[
        str | None, typer.Option("--id", help="Revise this hub's earlier idea with this id.")
    ] = None,
) -> None:
    """Put forward an idea for a new or better service."""
    no_personal_data("--title", title)
    no_personal_data("--description", description)
    tags = sorted({t.strip().lower() for t in tag or []})
    for t in tags:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,39}", t):
            fail(f"--tag {t!r}: use lower-case letters, digits and hyphens, e.g. 'food'", 2)
    iid = idea_id or _new_id("i")
    body = _body(
        IdeaSubmitted,
        {
            "idea": iid,
            "title": title.strip(),
            "description": description.strip(),
            "tags": tags,
            "area": area.strip(),
        },
    )
    seq = _append(folder_of(data), "idea.submitted", body)
    out.print(f"idea {iid} recorded (seq {seq})", markup=False)


@idea_app.command("list")
def idea_list(
    data: DataOpt,
    tag: Annotated[str | None, typer.Option(help="Only ideas with this tag.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every idea from every hub, oldest first."""
    runner = caught_up(folder_of(data))
    found = ideas(runner, tag.strip().lower() if tag else None)
    runner.close()
    if as_json:
        print_json([asdict(i) for i in found])
        return
    if not found:
        out.print("no ideas yet")
        return
    table = Table("title", "description", "tags", "area", "from hub", "when")
    for i in found:
        table.add_row(
            i.title,
            i.description,
            ", ".join(i.tags),
            i.area or "-",
            i.submitter[:18] + "…",
            when(i.ts),
        )
    out.print(table)
