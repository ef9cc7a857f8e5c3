"""``hubnode followup``, ``hubnode advocacy`` and ``hubnode pathway report``: closing the
loop (seed 000's Follow-up and Advocacy roles; docs/pathway.md).

Follow-up checks with the person that a referral met their need; when it did not, a hub
takes it up as an advocacy case. ``followup due`` lists what needs chasing at a date
(``--as-of``), so a weekly run and a test with a fixed clock see the same list.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

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
from hubnode.commands.pathway import (
    append,
    body,
    find_referral,
    new_id,
    open_text,
    pathway_view,
    seal_note,
)
from hubnode.commands.referral import RefArg, referral_json
from hubnode.config import HubFolder
from hubnode.events.ids import hub_display, short_hub
from hubnode.events.kinds import Body
from hubnode.events.pathway import (
    ADVOCACY_OUTCOMES,
    AdvocacyClosed,
    AdvocacyOpened,
    FollowupRecorded,
)
from hubnode.privacy.keyring import Keyring
from hubnode.projections.pathway_read import (
    DAY_MS,
    Case,
    Referral,
    case,
    cases,
    followups_due,
    pathway_report,
)

followup_app = typer.Typer(
    help="Check with people that their referral met their need.", no_args_is_help=True
)
advocacy_app = typer.Typer(
    help="Take up referrals that failed the person: open and close advocacy cases.",
    no_args_is_help=True,
)
pathway_app = typer.Typer(help="This hub's pathway as a whole.", no_args_is_help=True)

NoteOpt = Annotated[str, typer.Option(help="Notes about the person (sealed).")]


def register(app: typer.Typer) -> None:
    app.add_typer(followup_app, name="followup")
    app.add_typer(advocacy_app, name="advocacy")
    app.add_typer(pathway_app, name="pathway")


def _involved(r: Referral, folder: HubFolder, what: str) -> None:
    """Exit unless this hub made the referral or the person's consent named it then."""
    if folder.hub != r.referrer and folder.hub not in r.consent:
        fail(
            f"this hub cannot {what} {r.ref}: only the referring hub and the hubs the "
            "person's consent named when the referral was made may do so"
        )


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
    runner = pathway_view(folder)
    due = followups_due(runner, folder.hub, now, follow, answer)
    runner.close()
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


def _open_case(folder: HubFolder, r: Referral, note: str) -> tuple[str, Body]:
    case_id = new_id("c")
    fields: dict[str, Any] = {
        "case": case_id,
        "referral": {"hub": hub_display(r.referrer), "id": r.id},
    }
    sealed = seal_note(folder, r.referrer, r.subject, "advocacy.opened", case_id, note)
    if sealed is not None:
        fields["note"] = msgspec.to_builtins(sealed)
    return case_id, body(AdvocacyOpened, fields)


@followup_app.command("record")
def followup_record(
    data: DataOpt,
    ref: RefArg,
    satisfied: Annotated[
        str, typer.Option(help="Did the referral meet the person's need: yes or no.")
    ],
    note: NoteOpt = "",
    advocacy: Annotated[
        bool | None,
        typer.Option(
            "--advocacy/--no-advocacy",
            help="When not satisfied: open an advocacy case too (asked on a terminal).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a follow-up with the person; when they are not satisfied, offer advocacy."""
    if satisfied not in ("yes", "no"):
        fail(f"--satisfied {satisfied!r}: answer yes or no", 2)
    folder = folder_of(data)
    runner = pathway_view(folder)
    r = find_referral(runner, folder, ref)
    runner.close()
    _involved(r, folder, "follow up")
    followup = new_id("f")
    fields: dict[str, Any] = {
        "followup": followup,
        "referral": {"hub": hub_display(r.referrer), "id": r.id},
        "satisfied": satisfied == "yes",
    }
    sealed = seal_note(folder, r.referrer, r.subject, "followup.recorded", followup, note)
    if sealed is not None:
        fields["note"] = msgspec.to_builtins(sealed)
    items = [("followup.recorded", body(FollowupRecorded, fields))]
    if satisfied == "no" and advocacy is None and pathway.interactive():
        advocacy = typer.confirm("The person was not satisfied. Open an advocacy case?")
    case_id = None
    if satisfied == "no" and advocacy:
        case_id, opened = _open_case(folder, r, "")
        items.append(("advocacy.opened", opened))
    done = append(folder, items)
    if as_json:
        print_json({"followup": followup, "ref": r.ref, "case": case_id, "seq": done[0].seq})
        return
    out.print(f"follow-up {followup} recorded for {r.ref} (seq {done[0].seq})", markup=False)
    if case_id is not None:
        out.print(
            f"advocacy case {case_id} opened; close it with `hubnode advocacy close {case_id}`",
            markup=False,
        )
    elif satisfied == "no":
        out.print(f"to take it up: hubnode advocacy open {r.ref}", markup=False)


# -- advocacy ---------------------------------------------------------------------------


@advocacy_app.command("open")
def advocacy_open(data: DataOpt, ref: RefArg, note: NoteOpt = "", as_json: JsonOpt = False) -> None:
    """Open an advocacy case on a referral that failed the person."""
    folder = folder_of(data)
    runner = pathway_view(folder)
    r = find_referral(runner, folder, ref)
    runner.close()
    _involved(r, folder, "open advocacy on")
    case_id, opened = _open_case(folder, r, note)
    done = append(folder, [("advocacy.opened", opened)])
    if as_json:
        print_json({"case": case_id, "ref": r.ref, "seq": done[0].seq})
        return
    out.print(f"advocacy case {case_id} opened on {r.ref} (seq {done[0].seq})", markup=False)


@advocacy_app.command("close")
def advocacy_close(
    data: DataOpt,
    case_id: Annotated[str, typer.Argument(metavar="CASE", help="This hub's case id (c-…).")],
    outcome: Annotated[
        str, typer.Option(help=f"{', '.join(ADVOCACY_OUTCOMES)}.", show_default=False)
    ],
    note: NoteOpt = "",
) -> None:
    """Close an advocacy case this hub opened."""
    if outcome not in ADVOCACY_OUTCOMES:
        fail(f"--outcome {outcome!r}: use one of {', '.join(ADVOCACY_OUTCOMES)}", 2)
    folder = folder_of(data)
    runner = pathway_view(folder)
    found = case(runner, folder.hub, case_id.strip())
    runner.close()
    if found is None:
        fail(f"this hub opened no advocacy case {case_id}; see `hubnode advocacy list`")
    if not found.is_open:
        fail(f"advocacy case {case_id} was closed on {when(found.closed_ts or 0)}")
    fields: dict[str, Any] = {"case": found.id, "outcome": outcome}
    if found.subject is not None:
        kind = "advocacy.closed"
        sealed = seal_note(folder, found.referrer, found.subject, kind, found.id, note)
        if sealed is not None:
            fields["note"] = msgspec.to_builtins(sealed)
    elif note.strip():
        fail("the case's referral has not reached this hub: its note cannot be sealed", 2)
    done = append(folder, [("advocacy.closed", body(AdvocacyClosed, fields))])
    out.print(f"advocacy case {found.id} closed: {outcome} (seq {done[0].seq})", markup=False)


def _case_json(c: Case, ring: Keyring, net: str) -> dict[str, Any]:
    def opened(kind: str, sealed: Any) -> str | None:
        return open_text(ring, net, c.referrer, c.subject, kind, c.hub, c.id, sealed)

    return {
        "case": c.id,
        "hub": hub_display(c.hub),
        "referral": f"{hub_display(c.referrer)}:{c.referral}",
        "subject": c.subject,
        "opened": c.ts,
        "note": opened("advocacy.opened", c.note),
        "closed": c.closed_ts,
        "outcome": c.outcome,
        "close_note": opened("advocacy.closed", c.close_note),
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
    runner = pathway_view(folder)
    found = [c for c in cases(runner, hub_arg(hub)) if show_all or c.is_open]
    runner.close()
    with Keyring.open(folder) as ring:
        rows = [_case_json(c, ring, folder.config.network) for c in found]
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no advocacy cases" + ("" if show_all else " open"))
        return
    table = Table("case", "by hub", "referral", "person", "opened", "outcome", "note")
    for c, row in zip(found, rows, strict=True):
        table.add_row(
            c.id,
            short_hub(c.hub),
            c.referral,
            c.subject or "-",
            when(c.ts),
            c.outcome or "open",
            row["close_note"] or row["note"] or "",
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
    runner = pathway_view(folder)
    rep = pathway_report(runner, who)
    runner.close()
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
