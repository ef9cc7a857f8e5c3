"""``hubnode followup``, ``hubnode advocacy`` and ``hubnode pathway report``: closing the
loop (seed 000's Follow-up and Advocacy roles; docs/pathway.md).

Follow-up checks with the person that a referral met their need; when it did not, a hub
takes it up as an advocacy case. ``followup due`` lists what needs chasing at a date
(``--as-of``), so a weekly run and a test with a fixed clock see the same list.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec
import typer
from rich.table import Table

from hubnode.casework import CaseDetail, Casework, FollowedUp
from hubnode.commands import pathway
from hubnode.commands.common import (
    DataOpt,
    JsonOpt,
    fail,
    folder_of,
    hub_arg,
    out,
    print_json,
    when,
)
from hubnode.commands.pathway import act, read, ref_key
from hubnode.commands.referral import RefArg, referral_json
from hubnode.events.ids import hub_display, short_hub
from hubnode.events.pathway import ADVOCACY_OUTCOMES
from hubnode.projections.pathway_read import DAY_MS, followups_due, pathway_report

followup_app = typer.Typer(
    help="Check with people that their referral met their need.", no_args_is_help=True
)
advocacy_app = typer.Typer(
    help="Take up referrals that failed the person: open and close advocacy cases.",
    no_args_is_help=True,
)
pathway_app = typer.Typer(help="This hub's pathway as a whole.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(followup_app, name="followup")
    app.add_typer(advocacy_app, name="advocacy")
    app.add_typer(pathway_app, name="pathway")


def _as_of(text: str | None) -> int:
    """``--as-of`` in ms: a date means the end of that day (UTC); default now."""
    if text is None:
        return int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    try:
        if len(text.strip()) == 10:
            day = dt.date.fromisoformat(text.strip())
            moment = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
            return int(moment.timestamp() * 1000) - 1
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"--as-of {text!r}: write a date (2030-01-31) or a date and time", 2)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp() * 1000)


# -- follow-up --------------------------------------------------------------------------


@followup_app.command("due")
def followup_due(
    data: DataOpt,
    days: Annotated[
        int | None,
        typer.Option(min=0, help="Days after completion or failure (default: followup_days)."),
    ] = None,
    answer_days: Annotated[
        int | None,
        typer.Option(min=0, help="Days to wait for an answer (default: answer_days)."),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option(help="Work it out at this date (end of day, UTC) or time.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Referrals this hub made that need chasing: no follow-up yet, or no answer yet."""
    folder = folder_of(data)
    now = _as_of(as_of)
    follow = folder.config.followup_days if days is None else days
    answer = folder.config.answer_days if answer_days is None else answer_days
    due = read(folder, lambda cw: followups_due(cw.views, folder.hub, now, follow, answer))
    if as_json:
        print_json(
            [
                {**referral_json(d.referral, folder.hub), "why": d.why, "since": d.since,
                 "due": d.due, "overdue_days": (now - d.due) // DAY_MS}
                for d in due
            ]
        )  # fmt: skip
        return
    if not due:
        out.print(f"nothing due on {when(now)}", markup=False)
        return
    table = Table("referral", "person", "status", "since", "needs", "overdue (days)")
    for d in due:
        needs = "a follow-up" if d.why == "follow-up" else "an answer from the receiving hub"
        table.add_row(
            d.referral.id,
            d.referral.subject,
            d.referral.status,
            when(d.since),
            needs,
            str((now - d.due) // DAY_MS),
        )
    out.print(table)


@followup_app.command("record")
def followup_record(
    data: DataOpt,
    ref: RefArg,
    satisfied: Annotated[
        str, typer.Option(help="Did the referral meet the person's need: yes or no.")
    ],
    note_file: pathway.NoteFileOpt = None,
    advocacy: Annotated[
        bool | None,
        typer.Option(
            "--advocacy/--no-advocacy",
            help="When not satisfied: open an advocacy case too (asked on a terminal).",
        ),
    ] = None,
    as_json: JsonOpt = False,
    note: pathway.NoteRefused = None,
) -> None:
    """Record a follow-up with the person; when they are not satisfied, offer advocacy.

    A note is sealed: asked for on a terminal, or read with --note-file."""
    if satisfied not in ("yes", "no"):
        fail(f"--satisfied {satisfied!r}: answer yes or no", 2)
    text = pathway.sealed_note(note, note_file, "What the person said")
    folder = folder_of(data)
    key = ref_key(folder, ref)

    async def record(cw: Casework) -> FollowedUp:
        wanted = advocacy
        if satisfied == "no" and wanted is None and pathway.interactive():
            cw.require_involved(cw.find_referral(key), "follow up")  # refuse before asking
            wanted = typer.confirm("The person was not satisfied. Open an advocacy case?")
        return await cw.record_followup(key, satisfied == "yes", text, advocacy=bool(wanted))

    done = act(folder, record)
    if as_json:
        print_json({"followup": done.followup, "ref": done.ref, "case": done.case, "seq": done.seq})
        return
    out.print(f"follow-up {done.followup} recorded for {done.ref} (seq {done.seq})", markup=False)
    if done.case is not None:
        out.print(
            f"advocacy case {done.case} opened; close it with `hubnode advocacy close {done.case}`",
            markup=False,
        )
    elif satisfied == "no":
        out.print(f"to take it up: hubnode advocacy open {done.ref}", markup=False)


# -- advocacy ---------------------------------------------------------------------------


@advocacy_app.command("open")
def advocacy_open(
    data: DataOpt,
    ref: RefArg,
    note_file: pathway.NoteFileOpt = None,
    as_json: JsonOpt = False,
    note: pathway.NoteRefused = None,
) -> None:
    """Open an advocacy case on a referral that failed the person (a note is sealed:
    asked for on a terminal, or read with --note-file)."""
    text = pathway.sealed_note(note, note_file, "Notes on the case")
    folder = folder_of(data)
    key = ref_key(folder, ref)
    opened = act(folder, lambda cw: cw.open_advocacy(key, text))
    if as_json:
        print_json({"case": opened.case, "ref": opened.ref, "seq": opened.seq})
        return
    out.print(
        f"advocacy case {opened.case} opened on {opened.ref} (seq {opened.seq})", markup=False
    )


@advocacy_app.command("close")
def advocacy_close(
    data: DataOpt,
    case_id: Annotated[str, typer.Argument(metavar="CASE", help="This hub's case id (c-…).")],
    outcome: Annotated[
        str, typer.Option(help=f"{', '.join(ADVOCACY_OUTCOMES)}.", show_default=False)
    ],
    note_file: pathway.NoteFileOpt = None,
    note: pathway.NoteRefused = None,
) -> None:
    """Close an advocacy case this hub opened (a note is sealed: asked for on a terminal,
    or read with --note-file)."""
    text = pathway.sealed_note(note, note_file, "How it ended")
    folder = folder_of(data)
    closed = act(folder, lambda cw: cw.close_advocacy(case_id, outcome, text))
    out.print(
        f"advocacy case {closed.case} closed: {closed.outcome} (seq {closed.seq})", markup=False
    )


def _case_json(d: CaseDetail) -> dict[str, object]:
    c = d.case
    return {
        "case": c.id,
        "hub": hub_display(c.hub),
        "referral": f"{hub_display(c.referrer)}:{c.referral}",
        "subject": c.subject,
        "opened": c.ts,
        "note": d.note,
        "closed": c.closed_ts,
        "outcome": c.outcome,
        "close_note": d.close_note,
    }


@advocacy_app.command("list")
def advocacy_list(
    data: DataOpt,
    hub: Annotated[str | None, typer.Option(help="Only cases this hub (hub:…) opened.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Closed cases too.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Advocacy cases across the network (open ones unless --all); notes where readable."""
    folder = folder_of(data)
    who = hub_arg(hub)
    found = read(folder, lambda cw: cw.advocacy_cases(who, closed=show_all))
    if as_json:
        print_json([_case_json(d) for d in found])
        return
    if not found:
        out.print("no advocacy cases" + ("" if show_all else " open"))
        return
    table = Table("case", "by hub", "referral", "person", "opened", "outcome", "note")
    for d in found:
        c = d.case
        table.add_row(
            c.id,
            short_hub(c.hub),
            c.referral,
            c.subject or "-",
            when(c.ts),
            c.outcome or "open",
            d.close_note or d.note or "",
        )
    out.print(table)


# -- report -----------------------------------------------------------------------------


def _duration(ms: int | None) -> str:
    if ms is None:
        return "-"
    hours = ms / 3_600_000
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


@pathway_app.command("report")
def pathway_report_command(
    data: DataOpt,
    hub: Annotated[str | None, typer.Option(help="Another hub's report (hub:…).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Enquiries by channel and need, referral outcomes, time to first response and the
    follow-up rate of this hub (or --hub)."""
    folder = folder_of(data)
    who = hub_arg(hub) or folder.hub
    rep = read(folder, lambda cw: pathway_report(cw.views, who))
    if as_json:
        print_json(
            {
                **msgspec.to_builtins(rep),
                "hub": hub_display(who),
                "followup_rate": rep.followup_rate,
            }
        )
        return
    rate = "-" if rep.followup_rate is None else f"{rep.followup_rate:.0%}"
    lines = [
        f"pathway report of {hub_display(who)}",
        f"enquiries   {rep.enquiries}: " + ", ".join(f"{k} {v}" for k, v in rep.by_channel.items()),
        "needs       " + (", ".join(f"{k} {v}" for k, v in rep.by_need.items()) or "-"),
        f"referrals   {rep.referrals}: "
        + ", ".join(f"{k} {v}" for k, v in rep.by_status.items() if v),
        "satisfied   outcome yes {yes}, no {no}, not recorded {none}".format(
            **rep.outcome_satisfied
        ),
        "            follow-up yes {yes}, no {no}".format(**rep.followup_satisfied),
        f"first answer median {_duration(rep.response_median_ms)}, 90% within "
        f"{_duration(rep.response_p90_ms)} ({rep.responded} answered)",
        f"follow-up   {rep.followed_up} of {rep.closed} completed or failed referrals ({rate})",
    ]
    out.print("\n".join(lines), markup=False)
