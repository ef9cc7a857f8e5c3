"""``hubnode referral``: refer a person, move the referral along, show and list.

Every move is checked against the one transition table (:mod:`hubnode.events.lifecycle`)
before it is appended, and names as its parent the latest move this hub has seen; the
pathway view then settles races the same way on every hub (docs/pathway.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Final

import msgspec
import typer
from rich.table import Table

from hubnode.commands.common import (
    DataOpt,
    JsonOpt,
    err,
    fail,
    folder_of,
    hub_arg,
    no_personal_data,
    out,
    parse_service,
    print_json,
    when,
)
from hubnode.commands.pathway import (
    SubjectOpt,
    append,
    body,
    find_referral,
    new_id,
    open_text,
    own_subject,
    pathway_view,
    seal_note,
)
from hubnode.errors import ConsentRefused, IllegalTransition
from hubnode.events.ids import hub_display, short_hub
from hubnode.events.lifecycle import (
    NEEDS_REASON,
    STATUSES,
    TRANSITIONS,
    Party,
    Status,
    check_transition,
)
from hubnode.events.pathway import (
    URGENCIES,
    ReferralClaimed,
    ReferralOutcomeRecorded,
    ReferralRequested,
    ReferralStatusChanged,
)
from hubnode.privacy.keyring import Keyring
from hubnode.projections import ProjectionRunner
from hubnode.projections.pathway_read import (
    Referral,
    SubjectInfo,
    claimable,
    referrals,
    timeline,
)

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


def consent_command(info: SubjectInfo, hub: bytes | None = None) -> str:
    """The ``consent record`` that keeps the person's consent and adds ``hub`` and referral."""
    hubs = [*info.consent.recipients, *([hub] if hub is not None else [])]
    purposes = dict.fromkeys([*info.consent.purposes, "referral"])
    return " ".join(
        ["hubnode consent record --subject", info.subject]
        + [f"--consent {hub_display(h)}" for h in hubs]
        + [f"--purpose {p}" for p in purposes]
    )


def consent_refusal(info: SubjectInfo, hub: bytes) -> str:
    return (
        f"the person's consent does not name {hub_display(hub)}, so they cannot be referred "
        f"there. If they agree, record it first: {consent_command(info, hub)}"
    )


def _capacity(runner: ProjectionRunner, hub: bytes, service: str) -> tuple[str, str] | None:
    """(status, as of) of the service's latest capacity report; exit if it is unknown."""
    rows = runner.query(
        "directory",
        "SELECT s.withdrawn, k.status, k.as_of FROM {services} s LEFT JOIN {capacity} k "
        "ON k.publisher = s.publisher AND k.service = s.service "
        "WHERE s.publisher = ? AND s.service = ?",
        (hub, service),
    )
    shown = f"{hub_display(hub)}:{service}"
    if not rows or rows[0][0]:
        runner.close()
        gone = "was withdrawn" if rows else "is not in this hub's directory"
        fail(f"service {shown} {gone}; find one with `hubnode directory search`")
    _, status, as_of = rows[0]
    return None if status is None else (status, as_of)


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
    note: Annotated[str, typer.Option(help="Notes for the receiving hub (sealed).")] = "",
    urgency: Annotated[str, typer.Option(help=f"{', '.join(URGENCIES)}.")] = "routine",
    anyway: Annotated[
        bool, typer.Option("--anyway", help="Refer even though the service reports no capacity.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Refer a person (by pseudonym) to a hub, a service or any hub offering a need."""
    folder = folder_of(data)
    if sum(x is not None for x in (to_hub, service, category)) != 1:
        fail("give exactly one of --to-hub HUB, --service HUB:SERVICE, --category NEED", 2)
    if urgency not in URGENCIES:
        fail(f"--urgency {urgency!r}: use one of {', '.join(URGENCIES)}", 2)
    target = hub_arg(to_hub)
    svc = parse_service(service) if service is not None else None
    if svc is not None:
        target = svc[0]
    runner = pathway_view(folder)
    info = own_subject(runner, folder, subject)
    try:
        if "referral" not in info.consent.purposes:
            raise ConsentRefused(
                f"the person's consent for {subject} does not cover referral; if they agree, "
                f"record it first: {consent_command(info)}"
            )
        if target is not None and target != folder.hub and target not in info.consent.recipients:
            raise ConsentRefused(consent_refusal(info, target))
        if target is None and not info.consent.recipients:
            raise ConsentRefused(
                f"the person's consent for {subject} names no other hub, so none may claim an "
                "open referral; record their consent for the hubs they agree to first"
            )
    except ConsentRefused as e:
        runner.close()
        fail(str(e))
    if svc is not None:
        capacity = _capacity(runner, *svc)
        if capacity is not None and capacity[0] == "no-capacity" and not anyway:
            runner.close()
            fail(
                f"service {service} reported no capacity on {capacity[1]}; refer anyway with "
                "--anyway, or find another with `hubnode directory search`",
                2,
            )
        if capacity is not None and capacity[0] == "no-capacity":
            err.print(f"warning: {service} reported no capacity on {capacity[1]}", markup=False)
    runner.close()
    rid = new_id("r")
    fields: dict[str, Any] = {"referral": rid, "subject": subject, "urgency": urgency}
    if svc is not None:
        fields["service"] = {"hub": hub_display(svc[0]), "id": svc[1]}
    elif target is not None:
        fields["to_hub"] = hub_display(target)
    else:
        fields["category"] = (category or "").strip().lower()
    sealed = seal_note(folder, folder.hub, subject, "referral.requested", rid, note)
    if sealed is not None:
        fields["note"] = msgspec.to_builtins(sealed)
    done = append(folder, [("referral.requested", body(ReferralRequested, fields))])
    if as_json:
        ref = f"{hub_display(folder.hub)}:{rid}"
        print_json({"ref": ref, "referral": rid, "subject": subject, "seq": done[0].seq})
        return
    out.print(
        f"referral {rid} made (seq {done[0].seq}); other hubs know it as "
        f"{hub_display(folder.hub)}:{rid}",
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
    no_personal_data("--reason", reason)
    no_personal_data("--outcome", outcome or "")
    folder = folder_of(data)
    runner = pathway_view(folder)
    r = find_referral(runner, folder, ref)
    runner.close()
    roles = r.roles(folder.hub)
    if not roles:
        fail(
            f"this hub is neither the referring hub ({hub_display(r.referrer)}) nor the "
            f"receiving hub ({hub_display(r.receiver) if r.receiver else 'none yet'}) of "
            f"{r.ref}"
        )
    needed = TRANSITIONS[r.status].get(to)
    party: Party = needed if needed in roles else roles[0]
    try:
        check_transition(r.status, to, party, reason)
    except IllegalTransition as e:
        code = 2 if to in NEEDS_REASON and not reason.strip() else 1
        fail(str(e), code)  # names from, to and the role
    named = {"hub": hub_display(r.referrer), "id": r.id}
    moved = body(
        ReferralStatusChanged,
        {"referral": named, "parent": r.head, "status": to, "reason": reason.strip()},
    )
    items = [("referral.status_changed", moved)]
    if outcome is not None:
        fields = {"referral": named, "outcome": outcome.strip(), "satisfied": satisfied == "yes"}
        items.append(("referral.outcome_recorded", body(ReferralOutcomeRecorded, fields)))
    done = append(folder, items)
    out.print(f"referral {r.ref}: {r.status} → {to} (seq {done[0].seq})", markup=False)


@referral_app.command("claim")
def referral_claim(data: DataOpt, ref: RefArg) -> None:
    """Take an open referral: this hub becomes the receiving hub (requested → accepted)."""
    folder = folder_of(data)
    runner = pathway_view(folder)
    r = find_referral(runner, folder, ref)
    runner.close()
    if not r.claimable_by(folder.hub):
        why = (
            f"its receiving hub is {hub_display(r.receiver)}"
            if r.receiver is not None
            else "this hub made it"
            if r.referrer == folder.hub
            else f"it is {r.status}"
            if r.status != "requested"
            else "the person's consent does not name this hub"
        )
        fail(f"this hub cannot claim {r.ref}: {why}")
    claimed = body(
        ReferralClaimed,
        {"referral": {"hub": hub_display(r.referrer), "id": r.id}, "parent": r.root},
    )
    done = append(folder, [("referral.claimed", claimed)])
    out.print(
        f"claimed {r.ref} (seq {done[0].seq}); if another hub claimed it first, the lower "
        "event id wins: check with `hubnode referral show`",
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
    runner = pathway_view(folder)
    r = find_referral(runner, folder, ref)
    steps = timeline(runner, r.referrer, r.id)
    runner.close()
    net = folder.config.network
    with Keyring.open(folder) as ring:
        note = open_text(
            ring, net, r.referrer, r.subject, "referral.requested", r.referrer, r.id, r.note
        )
        notes = [
            open_text(ring, net, r.referrer, r.subject, s.kind, s.hub, s.record, s.note)
            for s in steps
        ]
    shown = referral_json(r, folder.hub)
    shown["note"] = note
    shown["timeline"] = [
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
        for s, n in zip(steps, notes, strict=True)
    ]
    if as_json:
        print_json(shown)
        return
    target = shown["service"] or shown["to"] or f"any consented hub offering {r.category}"
    lines = [
        f"referral {r.ref}",
        f"  person      {r.subject} ({r.urgency})",
        f"  to          {target}",
        f"  status      {r.status} since {when(r.status_ts)}",
        f"  referring   {hub_display(r.referrer)}",
        f"  receiving   {shown['receiving'] or 'nobody yet (open referral)'}",
        f"  note        {note or '-'}",
    ]
    if r.outcome is not None:
        lines.append(
            f"  outcome     {r.outcome} ({'satisfied' if r.satisfied else 'not satisfied'})"
        )
    lines.append(f"  you may     {commands_for(r.next_moves(folder.hub)) or 'nothing (no move)'}")
    out.print("\n".join(lines), markup=False)
    table = Table("when", "hub", "what", "reason", "counts", "note")
    table.add_row(when(r.ts), short_hub(r.referrer), "requested", "", "yes", note or "")
    for s, n in zip(steps, notes, strict=True):
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
    runner = pathway_view(folder)
    if show_claimable:
        found = [r for r in claimable(runner, folder.hub) if status in (None, r.status)]
    else:
        party: Party | None = "referring" if role == "referring" else "receiving" if role else None
        found = referrals(runner, hub=folder.hub, role=party, status=status)
    runner.close()
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
