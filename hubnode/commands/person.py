"""``hubnode person``: a subject's details (where this hub may read them) and erasure.

A person is known on the network only by a random pseudonym (``s-…``). Their details are
sealed; ``person show`` opens them only where this hub holds the subject's data key (it
is the point of access that logged the enquiry, or the person's consent names it).
``person erase`` (point of access only) makes every consented hub destroy its key;
``person erasure-status`` shows which hubs confirmed. See docs/privacy.md.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

from hubnode.commands.common import (
    DataOpt,
    JsonOpt,
    fail,
    folder_of,
    no_personal_data,
    out,
    print_json,
    run_async,
    when,
)
from hubnode.commands.pathway import append, pathway_view
from hubnode.config import HubFolder
from hubnode.errors import PrivacyError
from hubnode.events.ids import hub_display, parse_hub
from hubnode.events.pathway import SubjectErased
from hubnode.privacy.keyring import Keyring, catch_up_keys
from hubnode.privacy.seal import open_person, sealed_aad
from hubnode.projections.pathway_read import SubjectInfo, subject_info, subject_owners
from hubnode.projections.runner import ProjectionRunner

person_app = typer.Typer(
    help="A person's details (only where this hub may read them) and erasure.",
    no_args_is_help=True,
)

SubjectArg = Annotated[str, typer.Argument(help="The person's pseudonym, s-….", show_default=False)]
OwnerOpt = Annotated[
    str | None,
    typer.Option(
        "--owner",
        help="The hub that logged the enquiry (hub:… id), if two hubs used the same pseudonym.",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(person_app, name="person")


def _subject(runner: ProjectionRunner, subject: str, owner: str | None) -> SubjectInfo:
    owners = subject_owners(runner, subject)
    if owner is not None:
        try:
            wanted = parse_hub(owner)
        except ValueError as e:
            fail(f"--owner: {e}", 2)
        owners = [o for o in owners if o == wanted]
    if not owners:
        fail(
            f"no person {subject} is known here: check the pseudonym, or wait until the "
            "hub that logged the enquiry has synced with this one"
        )
    if len(owners) > 1:
        shown = ", ".join(hub_display(o) for o in owners)
        fail(f"{subject} was used by several hubs ({shown}); choose one with --owner", 2)
    info = subject_info(runner, owners[0], subject)
    assert info is not None
    return info


def _details(folder: HubFolder, info: SubjectInfo) -> tuple[list[dict[str, Any]], str | None]:
    """Each enquiry's details in clear where this hub may read them; else why not."""
    if info.erased:
        return [], "erased"
    net = folder.config.network
    with Keyring.open(folder) as ring:
        try:
            key = ring.data_key(info.owner, info.subject)
        except PrivacyError as e:
            return [], str(e)
    opened = []
    for enquiry in info.enquiries:
        if enquiry.person is None:
            continue
        aad = sealed_aad(net, info.owner, info.subject, "enquiry.logged", info.owner, enquiry.id)
        try:
            person = open_person(key, enquiry.person, aad)
        except PrivacyError as e:
            return [], f"enquiry {enquiry.id}: {e}"
        opened.append({"enquiry": enquiry.id, **msgspec.to_builtins(person)})
    return opened, None


@person_app.command("show")
def person_show(
    data: DataOpt, subject: SubjectArg, owner: OwnerOpt = None, as_json: JsonOpt = False
) -> None:
    """Show a person: their enquiries, consent and — only where this hub holds their key —
    their details. Nothing personal is written anywhere but this command's output."""
    folder = folder_of(data)
    info = _subject(pathway_view(folder), subject, owner)
    details, why = _details(folder, info)
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
        out.print(f"erased on {when(info.erased_ts or 0)}: {info.erase_reason}", markup=False)
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
    no_personal_data("--reason", reason)
    if not reason.strip():
        fail("--reason: say why the person is erased", 2)
    info = _subject(pathway_view(folder), subject, hub_display(folder.hub))
    if info.erased:
        fail(f"{subject} was already erased on {when(info.erased_ts or 0)}")
    if not yes:
        if not sys.stdin.isatty():
            fail("erasure cannot be undone: add --yes to confirm", 2)
        typer.confirm(f"Erase {subject} on every hub? This cannot be undone", abort=True)
    body = SubjectErased(subject=subject, reason=reason.strip())
    (appended,) = append(folder, [("subject.erased", body)])

    async def destroy_own() -> bool:
        async with await folder.open_log() as log:
            with Keyring.open(folder) as ring:
                return (await catch_up_keys(log, ring)).rotated

    rotated = run_async(destroy_own())
    out.print(f"erased {subject} (seq {appended.seq}); this hub destroyed its key", markup=False)
    if rotated:
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
    info = _subject(pathway_view(folder), subject, owner)
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
    out.print(f"{subject} erased on {when(info.erased_ts or 0)}: {info.erase_reason}", markup=False)
    table = Table("hub", "role", "destroyed its key")
    for h in hubs:
        c = confirmed.get(h)
        role = "point of access" if h == info.owner else "consented"
        table.add_row(hub_display(h), role, f"yes, {when(c.ts)}" if c else "not yet")
    out.print(table)
