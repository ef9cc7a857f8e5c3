"""``hubnode enquiry`` and ``hubnode consent``, and what every pathway command shares
(docs/pathway.md).

A person's details are sealed before they leave this process: the enquiry's person and
every note are encrypted with the subject's data key, and that key is sealed to each hub
the person agreed may hold it (docs/privacy.md). Commands print pseudonyms and ids, never
the details, except where a command shows notes this hub holds the key to. Referrals are
in :mod:`hubnode.commands.referral`; follow-up, advocacy and the report in
:mod:`hubnode.commands.followup`; people and erasure in :mod:`hubnode.commands.person`.

The commands only parse options, ask for what is missing on a terminal and print: the
actions — checks, sealing, appending — are :mod:`hubnode.casework`, shared with the demo
and the staff console. :func:`act` runs one and turns its refusal into an exit code.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from hubnode.casework import (
    DEFAULT_PURPOSES,
    Casework,
    InvalidInput,
    NoCapacity,
    RefKey,
)
from hubnode.commands.common import (
    DataOpt,
    JsonOpt,
    fail,
    folder_of,
    hub_arg,
    out,
    parse_hub_ref,
    print_json,
    progress,
)
from hubnode.config import HubFolder
from hubnode.errors import HubnodeError
from hubnode.events.ids import hub_display
from hubnode.events.pathway import CHANNELS, PURPOSES, URGENCIES

T = TypeVar("T")

enquiry_app = typer.Typer(
    help="Log a person's enquiry at this hub (walk-in, phone, web or paper).",
    no_args_is_help=True,
)
consent_app = typer.Typer(
    help="Record which hubs a person agrees may hold their details, or withdraw it.",
    no_args_is_help=True,
)
SubjectOpt = Annotated[
    str,
    typer.Option(
        "--subject", help="The person's pseudonym (s-…), as `enquiry log` printed it.",
        show_default=False,
    ),
]  # fmt: skip
ConsentOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--consent",
        help="A hub (hub:…) the person agrees may hold their details; repeat for each.",
        show_default=False,
    ),
]
PurposeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--purpose",
        help=f"What the person agrees to: {', '.join(PURPOSES)}; repeat for each "
        f"(default: {' and '.join(DEFAULT_PURPOSES)}).",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(enquiry_app, name="enquiry")
    app.add_typer(consent_app, name="consent")


# -- shared by the pathway commands ---------------------------------------------------


def act(
    folder: HubFolder,
    action: Callable[[Casework], Awaitable[T]],
    *,
    usage: tuple[type[HubnodeError], ...] = (),
) -> T:
    """Run ``action`` on this hub's casework once its keyring and views are up to date.

    A refusal exits with its message: 2 for bad input (and the ``usage`` errors), else 1.
    """

    async def go() -> T:
        async with Casework.open(folder) as cw:
            with progress("updating views", cw.behind() or None) as advance:
                await cw.refresh(advance)
            return await action(cw)

    bad_input: tuple[type[HubnodeError], ...] = (InvalidInput, NoCapacity, *usage)
    try:
        return asyncio.run(go())
    except bad_input as e:
        fail(str(e), 2)
    except HubnodeError as e:
        fail(str(e))


def read(folder: HubFolder, query: Callable[[Casework], T]) -> T:
    """``query`` on this hub's casework once its keyring and views are up to date."""

    async def go(cw: Casework) -> T:
        return query(cw)

    return act(folder, go)


def ref_key(folder: HubFolder, text: str) -> RefKey:
    """The referral ``text`` names: ``hub:…:ID``, or ``ID`` for one this hub made."""
    return parse_hub_ref(text, "REF", "hub:…:ID or a referral id", "r-1a2b3c4d5e", own=folder.hub)


def consented_hubs(values: list[str] | None) -> list[bytes]:
    hubs: list[bytes] = []
    for text in values or []:
        hub = hub_arg(text)
        assert hub is not None
        hubs.append(hub)
    return hubs


# -- enquiry ----------------------------------------------------------------------------


def interactive() -> bool:
    """Whether someone at a terminal can answer questions (tests replace this)."""
    return sys.stdin.isatty()


def _ask(value: str | None, option: str, question: str) -> str:
    """``value``, or ask on a terminal; a usage error when nobody can answer."""
    if value is not None and value.strip():
        return value.strip()
    if not interactive():
        fail(f"{option} is needed (run on a terminal to be asked for it)", 2)
    answer: str = typer.prompt(question)
    return answer.strip()


@enquiry_app.command("log")
def enquiry_log(
    data: DataOpt,
    name: Annotated[str | None, typer.Option(help="The person's name.")] = None,
    phone: Annotated[str, typer.Option(help="Their phone number.")] = "",
    email: Annotated[str, typer.Option(help="Their email address.")] = "",
    dob: Annotated[str, typer.Option(help="Their date of birth, YYYY-MM-DD.")] = "",
    address: Annotated[str, typer.Option(help="Their address.")] = "",
    notes: Annotated[str, typer.Option(help="Notes about the person and what they need.")] = "",
    need: Annotated[
        list[str] | None,
        typer.Option(help="What they need help with, a category such as housing; repeat."),
    ] = None,
    channel: Annotated[
        str | None, typer.Option(help=f"How they came: {', '.join(CHANNELS)}.")
    ] = None,
    urgency: Annotated[str, typer.Option(help=f"{', '.join(URGENCIES)}.")] = "routine",
    area: Annotated[
        str | None, typer.Option(help="Their postcode district, e.g. DL1 (not the full postcode).")
    ] = None,
    consent: ConsentOpt = None,
    purpose: PurposeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Log a person's enquiry; their details are sealed. Prints their pseudonym.

    Asks for the name, needs and channel when they are missing and this runs on a
    terminal. Only this hub and the hubs given with --consent can ever read the details.
    """
    folder = folder_of(data)
    person_name = _ask(name, "--name", "The person's name")
    needs = need or [_ask(None, "--need", "What do they need help with (e.g. housing)")]
    how = _ask(channel, "--channel", f"How did they come ({', '.join(CHANNELS)})")
    recipients = consented_hubs(consent)
    logged = act(
        folder,
        lambda cw: cw.log_enquiry(
            name=person_name,
            needs=needs,
            channel=how,
            phone=phone,
            email=email,
            dob=dob,
            address=address,
            notes=notes,
            urgency=urgency,
            area=area,
            consent=recipients,
            purposes=purpose,
        ),
    )
    if as_json:
        print_json(
            {
                "subject": logged.subject,
                "enquiry": logged.enquiry,
                "seq": logged.seq,
                "consent": [hub_display(h) for h in logged.consent],
                "purposes": list(logged.purposes),
            }
        )
        return
    out.print(
        f"enquiry {logged.enquiry} logged for {logged.subject} (seq {logged.seq})", markup=False
    )
    shared = ", ".join(hub_display(h) for h in logged.consent) or "no other hub"
    out.print(f"their details can be read by this hub and {shared}", markup=False)


# -- consent ----------------------------------------------------------------------------


@consent_app.command("record")
def consent_record(
    data: DataOpt,
    subject: SubjectOpt,
    consent: ConsentOpt = None,
    purpose: PurposeOpt = None,
) -> None:
    """Record the person's consent again: it replaces what they agreed before.

    List every hub that may hold their details (hubs left out lose them).
    """
    folder = folder_of(data)
    recipients = consented_hubs(consent)
    saved = act(folder, lambda cw: cw.record_consent(subject, recipients, purpose))
    shared = ", ".join(hub_display(h) for h in saved.consent) or "no other hub"
    out.print(
        f"consent for {subject} recorded (seq {saved.seq}): {', '.join(saved.purposes)}; "
        f"shared with {shared}",
        markup=False,
    )


@consent_app.command("withdraw")
def consent_withdraw(
    data: DataOpt,
    subject: SubjectOpt,
    reason: Annotated[str, typer.Option(help="Optional, short. No personal data.")] = "",
) -> None:
    """The person withdraws consent: other hubs destroy their copy of the key."""
    folder = folder_of(data)
    saved = act(folder, lambda cw: cw.withdraw_consent(subject, reason))
    out.print(f"consent for {subject} withdrawn (seq {saved.seq})", markup=False)
