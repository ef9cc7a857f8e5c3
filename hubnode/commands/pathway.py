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
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

import msgspec
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
from hubnode.privacy.seal import NOTE_MAX

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

PERSON_FIELDS: Final = {
    "name": "The person's name",
    "phone": "Their phone number",
    "email": "Their email address",
    "dob": "Their date of birth, YYYY-MM-DD",
    "address": "Their address",
    "notes": "Notes about the person and what they need",
}
"""The personal fields of an enquiry → the question asked for each on a terminal."""
MAX_PERSON_FILE: Final = 64 * 1024
NOT_ON_THE_COMMAND_LINE: Final = (
    "personal data on the command line is visible to other users in /proc and kept in "
    "shell history: use the prompt, --from-file FILE or --from-file - for stdin"
)


def interactive() -> bool:
    """Whether someone at a terminal can answer questions (tests replace this)."""
    return sys.stdin.isatty()


def _ask(value: str | None, option: str, question: str, *, can_ask: bool = True) -> str:
    """``value``, or ask on a terminal; a usage error when nobody can answer."""
    if value is not None and value.strip():
        return value.strip()
    if not (can_ask and interactive()):
        fail(f"{option} is needed (run on a terminal to be asked for it)", 2)
    answer: str = typer.prompt(question)
    return answer.strip()


def read_input(source: Path, option: str, limit: int) -> bytes:
    """At most ``limit`` bytes read from ``source`` (``-``: stdin), a UTF-8 BOM dropped;
    a usage error naming ``option`` if it cannot be read or is larger."""
    shown = "stdin" if str(source) == "-" else str(source)
    try:
        if str(source) == "-":
            raw = sys.stdin.buffer.read(limit + 1)
        else:
            with source.open("rb") as f:
                raw = f.read(limit + 1)
    except OSError as e:
        fail(f"{option}: cannot read {shown}: {e.strerror or e}", 2)
    if len(raw) > limit:
        fail(f"{option} {shown}: larger than {limit // 1024} KB; is it the right file?", 2)
    return raw.removeprefix(b"\xef\xbb\xbf")  # editors may save UTF-8 with a BOM


def _person_from_file(source: Path) -> dict[str, str]:
    """The personal fields in a JSON object read from ``source`` (``-``: stdin)."""
    shown = "stdin" if str(source) == "-" else str(source)
    raw = read_input(source, "--from-file", MAX_PERSON_FILE)
    try:
        fields = msgspec.json.decode(raw, type=dict[str, str])
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError) as e:
        fail(
            f"--from-file {shown}: expected a JSON object of text fields, such as "
            f'{{"name": "Ada Lovelace", "phone": "07700 900123"}} ({e})',
            2,
        )
    unknown = sorted(set(fields) - set(PERSON_FIELDS))
    if unknown:
        fail(
            f"--from-file {shown}: unknown field {', '.join(map(repr, unknown))}; "
            f"the fields are {', '.join(PERSON_FIELDS)}",
            2,
        )
    return {key: value.strip() for key, value in fields.items()}


def _person(from_file: Path | None) -> dict[str, str]:
    """The person's details: from ``--from-file``, else asked for on a terminal."""
    if from_file is not None:
        person = _person_from_file(from_file)
    elif interactive():
        person = {"name": typer.prompt(PERSON_FIELDS["name"]).strip()}
        for key, question in list(PERSON_FIELDS.items())[1:]:
            answer: str = typer.prompt(f"{question} (Enter: none)", default="", show_default=False)
            person[key] = answer.strip()
    else:
        fail(
            "the person's details are needed: give them with --from-file FILE or "
            "--from-file - (a JSON object on stdin), or run on a terminal to be asked",
            2,
        )
    if not person.get("name"):
        fail("the person's name is needed (the name field of --from-file)", 2)
    return person


FromFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--from-file",
        help="Read the person's details from this JSON file, or from stdin with -: an object "
        f"with the text fields {', '.join(PERSON_FIELDS)} (name needed), e.g. "
        '{"name": "Ada Lovelace", "phone": "07700 900123"}.',
        show_default=False,
    ),
]


NOTE_NOT_ON_THE_COMMAND_LINE: Final = (
    "notes about a person on the command line are visible to other users in /proc and kept "
    "in shell history: use the prompt, --note-file FILE or --note-file - for stdin"
)
NoteFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--note-file",
        help=f"Read the note (sealed: only the hubs the person agreed to can read it) from "
        f"this UTF-8 text file, or from stdin with -; at most {NOTE_MAX:,} characters. Asked "
        "for on a terminal when not given. Not an option's value: other users could read it "
        "in /proc and the shell would keep it in its history.",
        show_default=False,
    ),
]
NoteRefused = Annotated[
    str | None, typer.Option("--note", hidden=True, help=NOTE_NOT_ON_THE_COMMAND_LINE)
]
"""``--note``, kept only to explain, when given, why it is refused."""


def sealed_note(note: str | None, note_file: Path | None, question: str) -> str:
    """A sealed note: refused as ``--note``, read from ``--note-file``, else asked for on a
    terminal ("" for none)."""
    if note is not None:
        fail(f"--note: {NOTE_NOT_ON_THE_COMMAND_LINE}", 2)
    if note_file is None:
        if not interactive():
            return ""
        answer: str = typer.prompt(
            f"{question} (sealed; Enter: none)", default="", show_default=False
        )
        return answer.strip()
    shown = "stdin" if str(note_file) == "-" else str(note_file)
    try:
        text = read_input(note_file, "--note-file", 4 * NOTE_MAX).decode("utf-8").strip()
    except UnicodeDecodeError:
        fail(f"--note-file {shown}: not UTF-8 text", 2)
    if len(text) > NOTE_MAX:
        fail(f"--note-file {shown}: {len(text):,} characters; a note holds at most {NOTE_MAX:,}", 2)
    return text


def _hidden(field: str) -> Any:
    """An option kept only to explain, when given, why it is refused."""
    return typer.Option(f"--{field}", hidden=True, help=NOT_ON_THE_COMMAND_LINE)


@enquiry_app.command(
    "log", epilog=f"The person's details are not options: {NOT_ON_THE_COMMAND_LINE}."
)
def enquiry_log(
    data: DataOpt,
    from_file: FromFileOpt = None,
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
    name: Annotated[str | None, _hidden("name")] = None,
    phone: Annotated[str | None, _hidden("phone")] = None,
    email: Annotated[str | None, _hidden("email")] = None,
    dob: Annotated[str | None, _hidden("dob")] = None,
    address: Annotated[str | None, _hidden("address")] = None,
    notes: Annotated[str | None, _hidden("notes")] = None,
) -> None:
    """Log a person's enquiry; their details are sealed. Prints their pseudonym.

    The details (name, phone, email, date of birth, address, notes) are asked for on a
    terminal, or read with --from-file: never given as options, where other users could
    read them in /proc and the shell would keep them in its history. The needs and
    channel are asked for too when missing. Only this hub and the hubs given with
    --consent can ever read the details.
    """
    given = (name, phone, email, dob, address, notes)
    for option, value in zip(PERSON_FIELDS, given, strict=True):
        if value is not None:
            fail(f"--{option}: {NOT_ON_THE_COMMAND_LINE}", 2)
    folder = folder_of(data)
    person = _person(from_file)
    can_ask = from_file is None or str(from_file) != "-"  # stdin is taken by the details
    needs = need or [
        _ask(None, "--need", "What do they need help with (e.g. housing)", can_ask=can_ask)
    ]
    how = _ask(channel, "--channel", f"How did they come ({', '.join(CHANNELS)})", can_ask=can_ask)
    recipients = consented_hubs(consent)
    logged = act(
        folder,
        lambda cw: cw.log_enquiry(
            name=person["name"],
            needs=needs,
            channel=how,
            phone=person.get("phone", ""),
            email=person.get("email", ""),
            dob=person.get("dob", ""),
            address=person.get("address", ""),
            notes=person.get("notes", ""),
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
