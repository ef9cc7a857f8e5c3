"""``hubnode referral``: refer a person, move the referral along, show and list.

Every move is checked (by :mod:`hubnode.casework`, which these commands call) against the
one transition table (:mod:`hubnode.events.lifecycle`) before it is appended, and names as
its parent the latest move this hub has seen; the pathway view then settles races the same
way on every hub (docs/pathway.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.table import Table

from hubnode.commands import pathway
from hubnode.commands.common import (
    DataOpt,
    JsonOpt,
    err,
    fail,
    folder_of,
    hub_arg,
    out,
    parse_service,
    print_json,
    shown,
    when,
)
from hubnode.commands.pathway import SubjectOpt, act, read, ref_key
from hubnode.errors import IllegalTransition
from hubnode.events.ids import hub_display, short_hub
from hubnode.events.lifecycle import NEEDS_REASON, STATUSES, Party, Status
from hubnode.events.pathway import URGENCIES
from hubnode.projections import ProjectionRunner
from hubnode.projections.pathway_read import Referral, claimable, referrals

referral_app = typer.Typer(
    help="Refer a person to a hub, a service, or any hub offering what they need; "
    "then move the referral along.",
    no_args_is_help=True,
)

REF_HELP: Final = "The referral: hub:…:ID, or just ID for one this hub made."
RefArg = Annotated[str, typer.Argument(help=REF_HELP, show_default=False)]
ReasonOpt = Annotated[
    str, typer.Option(help="Why (needed to reject, cancel, hold or fail). No personal data.")
]


COMMANDS: Final[dict[str, str]] = {
    "claim": "claim",
    "accepted": "accept",
    "rejected": "reject",
    "in-progress": "start",
    "on-hold": "hold",
    "completed": "complete",
    "failed": "fail",
    "cancelled": "cancel",
    "entered-in-error": "void",
}
"""Each next move (a status, or claim) → the ``hubnode referral`` command that makes it."""


def register(app: typer.Typer) -> None:
    app.add_typer(referral_app, name="referral")


def commands_for(moves: list[str]) -> str:
    return ", ".join(COMMANDS[m] for m in moves)


# -- referral create --------------------------------------------------------------------


@referral_app.command("create")
def referral_create(
    data: DataOpt,
    subject: SubjectOpt,
    to_hub: Annotated[str | None, typer.Option("--to-hub", help="Refer to this hub.")] = None,
    service: Annotated[
        str | None, typer.Option(help="Refer to a service: HUB:SERVICE from the directory.")
    ] = None,
    category: Annotated[
        str | None,
        typer.Option(help="Open referral: any consented hub offering this need may claim it."),
    ] = None,
    note_file: pathway.NoteFileOpt = None,
    urgency: Annotated[str, typer.Option(help=f"{', '.join(URGENCIES)}.")] = "routine",
    anyway: Annotated[
        bool, typer.Option("--anyway", help="Refer even though the service reports no capacity.")
    ] = False,
    as_json: JsonOpt = False,
    note: pathway.NoteRefused = None,
) -> None:
    """Refer a person (by pseudonym) to a hub, a service or any hub offering a need.

    A note for the receiving hub is sealed: it is asked for on a terminal, or read with
    --note-file, never given as an option."""
    text = pathway.sealed_note(note, note_file, "Notes for the receiving hub")
    folder = folder_of(data)
    target = hub_arg(to_hub)
    svc = parse_service(service) if service is not None else None
    made = act(
        folder,
        lambda cw: cw.refer(
            subject,
            to_hub=target,
            service=svc,
            category=category,
            note=text,
            urgency=urgency,
            anyway=anyway,
        ),
    )
    if made.warning is not None:
        err.print(f"warning: {made.warning}", markup=False)
    if as_json:
        print_json(
            {"ref": made.ref, "referral": made.referral, "subject": subject, "seq": made.seq}
        )
        return
    out.print(
        f"referral {made.referral} made (seq {made.seq}); other hubs know it as {made.ref}",
        markup=False,
    )


# -- moving a referral along ------------------------------------------------------------


def _move(
    data: Path,
    ref: str,
    to: Status,
    reason: str,
    outcome: str | None = None,
    satisfied: str | None = None,
) -> None:
    if (outcome is None) != (satisfied is None) or satisfied not in (None, "yes", "no"):
        fail("give both --outcome TEXT and --satisfied yes|no to record the outcome", 2)
    folder = folder_of(data)
    key = ref_key(folder, ref)
    happy = None if satisfied is None else satisfied == "yes"
    # A missing reason is a usage error, as every option error is (exit 2).
    usage = (IllegalTransition,) if to in NEEDS_REASON and not reason.strip() else ()
    moved = act(folder, lambda cw: cw.move(key, to, reason, outcome, happy), usage=usage)
    out.print(f"referral {moved.ref}: {moved.was} → {moved.to} (seq {moved.seq})", markup=False)


@referral_app.command("claim")
def referral_claim(data: DataOpt, ref: RefArg) -> None:
    """Take an open referral: this hub becomes the receiving hub (requested → accepted)."""
    folder = folder_of(data)
    key = ref_key(folder, ref)
    claimed = act(folder, lambda cw: cw.claim(key))
    out.print(
        f"claimed {claimed.ref} (seq {claimed.seq}); if another hub claimed it first, the "
        "lower event id wins: check with `hubnode referral show`",
        markup=False,
    )


@referral_app.command("accept")
def referral_accept(data: DataOpt, ref: RefArg) -> None:
    """The receiving hub accepts the referral."""
    _move(data, ref, "accepted", "")


@referral_app.command("reject")
def referral_reject(data: DataOpt, ref: RefArg, reason: ReasonOpt = "") -> None:
    """The receiving hub turns the referral down (needs --reason)."""
    _move(data, ref, "rejected", reason)


@referral_app.command("start")
def referral_start(data: DataOpt, ref: RefArg) -> None:
    """The receiving hub starts work (or resumes after a hold)."""
    _move(data, ref, "in-progress", "")


@referral_app.command("hold")
def referral_hold(data: DataOpt, ref: RefArg, reason: ReasonOpt = "") -> None:
    """The receiving hub puts work on hold (needs --reason)."""
    _move(data, ref, "on-hold", reason)


OutcomeOpt = Annotated[
    str | None, typer.Option(help="The outcome, short and with no personal data.")
]
SatisfiedOpt = Annotated[
    str | None, typer.Option(help="Was the person satisfied: yes or no (with --outcome).")
]


@referral_app.command("complete")
def referral_complete(
    data: DataOpt, ref: RefArg, outcome: OutcomeOpt = None, satisfied: SatisfiedOpt = None
) -> None:
    """The receiving hub completes the referral, optionally recording the outcome."""
    _move(data, ref, "completed", "", outcome, satisfied)


@referral_app.command("fail")
def referral_fail(
    data: DataOpt,
    ref: RefArg,
    reason: ReasonOpt = "",
    outcome: OutcomeOpt = None,
    satisfied: SatisfiedOpt = None,
) -> None:
    """The receiving hub could not help (needs --reason), optionally with the outcome."""
    _move(data, ref, "failed", reason, outcome, satisfied)


@referral_app.command("cancel")
def referral_cancel(data: DataOpt, ref: RefArg, reason: ReasonOpt = "") -> None:
    """The referring hub cancels the referral (needs --reason)."""
    _move(data, ref, "cancelled", reason)


@referral_app.command("void")
def referral_void(data: DataOpt, ref: RefArg, reason: ReasonOpt = "") -> None:
    """The referring hub marks the referral entered in error."""
    _move(data, ref, "entered-in-error", reason)


# -- show and list ----------------------------------------------------------------------


def referral_json(r: Referral, me: bytes) -> dict[str, Any]:
    return {
        "ref": r.ref,
        "subject": r.subject,
        "status": r.status,
        "referring": hub_display(r.referrer),
        "receiving": None if r.receiver is None else hub_display(r.receiver),
        "to": None if r.target is None else hub_display(r.target),
        "service": None if r.service is None else f"{hub_display(r.service[0])}:{r.service[1]}",
        "category": r.category,
        "urgency": r.urgency,
        "requested": r.ts,
        "status_since": r.status_ts,
        "head": r.head.hex(),
        "outcome": r.outcome,
        "satisfied": r.satisfied,
        "followups": r.followups,
        "consent": [hub_display(h) for h in r.consent],
        "next": r.next_moves(me),
    }


@referral_app.command("show")
def referral_show(data: DataOpt, ref: RefArg, as_json: JsonOpt = False) -> None:
    """One referral and its timeline; notes shown where this hub holds the person's key."""
    folder = folder_of(data)
    key = ref_key(folder, ref)
    detail = read(folder, lambda cw: cw.referral_detail(key))
    r, note = detail.referral, detail.note
    record = referral_json(r, folder.hub)
    record["note"] = note
    record["timeline"] = [
        {
            "kind": s.kind,
            "hub": hub_display(s.hub),
            "seq": s.seq,
            "ts": s.ts,
            "what": s.what,
            "reason": s.reason,
            "state": s.state,
            "why": s.why,
            "note": n,
        }
        for s, n in detail.timeline
    ]
    if as_json:
        print_json(record)
        return
    target = record["service"] or record["to"] or f"any consented hub offering {r.category}"
    lines = [
        f"referral {r.ref}",
        f"  person      {r.subject} ({r.urgency})",
        f"  to          {shown(target)}",
        f"  status      {r.status} since {when(r.status_ts)}",
        f"  referring   {hub_display(r.referrer)}",
        f"  receiving   {record['receiving'] or 'nobody yet (open referral)'}",
        f"  note        {note or '-'}",
    ]
    if r.outcome is not None:
        lines.append(
            f"  outcome     {shown(r.outcome)} ({'satisfied' if r.satisfied else 'not satisfied'})"
        )
    lines.append(f"  you may     {commands_for(r.next_moves(folder.hub)) or 'nothing (no move)'}")
    out.print("\n".join(lines), markup=False)
    table = Table("when", "hub", "what", "reason", "counts", "note")
    table.add_row(when(r.ts), short_hub(r.referrer), "requested", "", "yes", note or "")
    for s, n in detail.timeline:
        counts = {"applied": "yes", "waiting": "waiting"}.get(s.state, f"no: {s.why}")
        table.add_row(when(s.ts), short_hub(s.hub), s.what, s.reason, counts, n or "")
    out.print(table)


@referral_app.command("list")
def referral_list(
    data: DataOpt,
    status: Annotated[str | None, typer.Option(help="Only referrals in this status.")] = None,
    role: Annotated[
        str | None, typer.Option(help="Only those this hub made (referring) or takes (receiving).")
    ] = None,
    show_claimable: Annotated[
        bool, typer.Option("--claimable", help="Open referrals this hub may claim.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Referrals this hub made or receives (or may claim), oldest first."""
    if status is not None and status not in STATUSES:
        fail(f"--status {status!r}: use one of {', '.join(STATUSES)}", 2)
    if role not in (None, "referring", "receiving"):
        fail(f"--role {role!r}: use referring or receiving", 2)
    folder = folder_of(data)
    party: Party | None = "referring" if role == "referring" else "receiving" if role else None

    def listed(views: ProjectionRunner) -> list[Referral]:
        if show_claimable:
            return [r for r in claimable(views, folder.hub) if status in (None, r.status)]
        return referrals(views, hub=folder.hub, role=party, status=status)

    found = read(folder, lambda cw: listed(cw.views))
    if as_json:
        print_json([referral_json(r, folder.hub) for r in found])
        return
    if not found:
        out.print("no referrals" + (" to claim" if show_claimable else ""))
        return
    table = Table("referral", "person", "to", "status", "since", "this hub may")
    for r in found:
        to = (
            r.service[1] if r.service else short_hub(r.target) if r.target else f"any: {r.category}"
        )
        table.add_row(
            r.ref if r.referrer != folder.hub else r.id,
            r.subject,
            to,
            r.status,
            when(r.status_ts),
            commands_for(r.next_moves(folder.hub)) or "-",
        )
    out.print(table)
