"""``hubnode person``: a subject's details (where this hub may read them) and erasure.

A person is known on the network only by a random pseudonym (``s-…``). Their details are
sealed; ``person show`` opens them only where this hub holds the subject's data key (it
is the point of access that logged the enquiry, or the person's consent names it).
``person erase`` (point of access only) makes every consented hub destroy its key;
``person erasure-status`` shows which hubs confirmed. See docs/privacy.md.
"""

from __future__ import annotations

import sys
from typing import Annotated

import msgspec
import typer
from rich.table import Table

from hubnode.casework import Casework, Erased, InvalidInput
from hubnode.commands.common import (
    DataOpt,
    JsonOpt,
    fail,
    folder_of,
    out,
    print_json,
    shown,
    when,
)
from hubnode.commands.pathway import act, read
from hubnode.events.ids import hub_display, parse_hub

person_app = typer.Typer(
    help="A person's details (only where this hub may read them) and erasure.",
    no_args_is_help=True,
)

SubjectArg = Annotated[str, typer.Argument(help="The person's pseudonym, s-….", show_default=False)]
OwnerOpt = Annotated[
    str | None,
    typer.Option(
        "--owner",
        help="The hub that logged the enquiry (hub:… id): needed only where several other "
        "hubs used the same pseudonym (a hub that used it gets its own person).",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(person_app, name="person")


def _owner(owner: str | None) -> bytes | None:
    if owner is None:
        return None
    try:
        return parse_hub(owner)
    except ValueError as e:
        fail(f"--owner: {e}", 2)


@person_app.command("show")
def person_show(
    data: DataOpt, subject: SubjectArg, owner: OwnerOpt = None, as_json: JsonOpt = False
) -> None:
    """Show a person: their enquiries, consent and — only where this hub holds their key —
    their details. Nothing personal is written anywhere but this command's output."""
    folder = folder_of(data)
    who = _owner(owner)
    found = read(folder, lambda cw: cw.person(subject, who))
    info, why = found.info, found.why_not
    details = [{"enquiry": e, **msgspec.to_builtins(p)} for e, p in found.details]
    if as_json:
        print_json(
            {
                "subject": info.subject,
                "owner": hub_display(info.owner),
                "erased": info.erased,
                "readable": why is None,
                "why_not": why,
                "details": details,
                "enquiries": [
                    {
                        "id": e.id,
                        "channel": e.channel,
                        "needs": list(e.needs),
                        "urgency": e.urgency,
                        "area": e.area,
                        "ts": e.ts,
                    }
                    for e in info.enquiries
                ],
                "consent": {
                    "purposes": list(info.consent.purposes),
                    "recipients": [hub_display(h) for h in info.consent.recipients],
                    "withdrawn": info.consent.withdrawn,
                },
            }
        )
        return
    out.print(
        f"{info.subject}  logged by {hub_display(info.owner)} on {when(info.ts)}", markup=False
    )
    if info.erased:
        out.print(
            f"erased on {when(info.erased_ts or 0)}: {shown(info.erase_reason or '')}", markup=False
        )
    elif why is not None:
        out.print(f"details: not readable here — {why}", markup=False)
    for d in details:
        out.print(f"enquiry {d.pop('enquiry')}:", markup=False)
        for field, value in d.items():
            if value not in ("", None):
                out.print(f"  {field:<8} {value}", markup=False)
    for e in info.enquiries:
        out.print(
            f"enquiry {e.id}: {e.channel}, needs {', '.join(e.needs)}, {e.urgency}"
            + (f", {e.area}" if e.area else ""),
            markup=False,
        )
    consent = info.consent
    hubs = ", ".join(hub_display(h) for h in consent.recipients) or "none"
    state = "withdrawn" if consent.withdrawn else f"for {', '.join(consent.purposes)}"
    out.print(f"consent: {state}; hubs: {hubs}", markup=False)


@person_app.command("erase")
def person_erase(
    data: DataOpt,
    subject: SubjectArg,
    reason: Annotated[
        str, typer.Option(help="Why, e.g. 'the person asked (UK GDPR art. 17)'. No personal data.")
    ],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a person everywhere: every hub holding their key destroys it (crypto-shredding).

    Only the hub that logged the enquiry can do this. It cannot be undone: the details
    become unreadable on every hub, for good; the signed logs still verify.
    """
    folder = folder_of(data)

    async def erase(cw: Casework) -> Erased:
        if not yes:
            cw.erasable(subject, reason)  # refuse before asking
            if not sys.stdin.isatty():
                raise InvalidInput("yes", "erasure cannot be undone: add --yes to confirm")
            typer.confirm(f"Erase {subject} on every hub? This cannot be undone", abort=True)
        return await cw.erase(subject, reason)

    erased = act(folder, erase)
    out.print(f"erased {subject} (seq {erased.seq}); this hub destroyed its key", markup=False)
    if erased.rotated:
        out.print("this hub's seal key was rotated and the new key published", markup=False)
    out.print(
        f"each consented hub destroys its key when the event reaches it: "
        f"`hubnode person erasure-status {subject}` shows who confirmed",
        markup=False,
    )


@person_app.command("erasure-status")
def person_erasure_status(
    data: DataOpt, subject: SubjectArg, owner: OwnerOpt = None, as_json: JsonOpt = False
) -> None:
    """Which hubs confirmed destroying their copy of an erased person's key."""
    folder = folder_of(data)
    who = _owner(owner)
    info = read(folder, lambda cw: cw.subject(subject, who))
    confirmed = {c.hub: c for c in info.confirmations}
    hubs = sorted({info.owner, *info.consent.recipients, *confirmed})
    rows = [
        {
            "hub": hub_display(h),
            "role": "point of access" if h == info.owner else "consented",
            "confirmed": h in confirmed,
            "confirmed_ts": confirmed[h].ts if h in confirmed else None,
            "seq": confirmed[h].seq if h in confirmed else None,
        }
        for h in hubs
    ]
    if as_json:
        print_json(
            {"subject": subject, "erased": info.erased, "erased_ts": info.erased_ts, "hubs": rows}
        )
        return
    if not info.erased:
        out.print(f"{subject} has not been erased", markup=False)
        return
    out.print(
        f"{subject} erased on {when(info.erased_ts or 0)}: {shown(info.erase_reason or '')}",
        markup=False,
    )
    table = Table("hub", "role", "destroyed its key")
    for h in hubs:
        c = confirmed.get(h)
        role = "point of access" if h == info.owner else "consented"
        table.add_row(hub_display(h), role, f"yes, {when(c.ts)}" if c else "not yet")
    out.print(table)
