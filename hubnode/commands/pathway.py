"""``hubnode enquiry`` and ``hubnode consent``, and what every pathway command shares
(docs/pathway.md).

A person's details are sealed before they leave this process: the enquiry's person and
every note are encrypted with the subject's data key, and that key is sealed to each hub
the person agreed may hold it (docs/privacy.md). Commands print pseudonyms and ids, never
the details, except where a command shows notes this hub holds the key to. Referrals are
in :mod:`hubnode.commands.referral`; follow-up, advocacy and the report in
:mod:`hubnode.commands.followup`.
"""

from __future__ import annotations

import datetime as dt
import secrets
import sys
from collections.abc import Sequence
from typing import Annotated, Any, Final

import msgspec
import typer

from hubnode import crypto
from hubnode.commands.common import (
    DataOpt,
    JsonOpt,
    caught_up,
    fail,
    folder_of,
    hub_arg,
    no_personal_data,
    out,
    parse_hub_ref,
    print_json,
    run_async,
    when,
)
from hubnode.commands.directory import parse_district
from hubnode.config import HubFolder
from hubnode.errors import PrivacyError
from hubnode.events.ids import hub_display
from hubnode.events.kinds import Body
from hubnode.events.pathway import (
    CHANNELS,
    PURPOSES,
    URGENCIES,
    ConsentRecorded,
    ConsentWithdrawn,
    EnquiryLogged,
    Sealed,
)
from hubnode.privacy.keyring import Keyring, catch_up_keys, seal_keys
from hubnode.privacy.seal import (
    Note,
    Person,
    key_boxes,
    new_subject,
    open_note,
    seal_value,
    sealed_aad,
)
from hubnode.projections import ProjectionRunner
from hubnode.projections.pathway_read import (
    Referral,
    SubjectInfo,
    referral,
    subject_info,
)
from hubnode.store.log import Appended

enquiry_app = typer.Typer(
    help="Log a person's enquiry at this hub (walk-in, phone, web or paper).",
    no_args_is_help=True,
)
consent_app = typer.Typer(
    help="Record which hubs a person agrees may hold their details, or withdraw it.",
    no_args_is_help=True,
)
DEFAULT_PURPOSES: Final = ("referral", "follow-up")
REF_HELP: Final = "The referral: hub:…:ID, or just ID for one this hub made."
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


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


def pathway_view(folder: HubFolder) -> ProjectionRunner:
    """The views, after the keyring has read every consent and erasure in the log.

    The key catch-up may append (this hub's seal key, erasure confirmations), so it runs
    first and the views are caught up after it.
    """

    async def keys() -> None:
        async with await folder.open_log() as log:
            with Keyring.open(folder) as ring:
                await catch_up_keys(log, ring)

    run_async(keys())
    return caught_up(folder)


def append(folder: HubFolder, items: Sequence[tuple[str, Body]]) -> list[Appended]:
    """Sign and append ``items`` in one transaction (all or none)."""

    async def go() -> list[Appended]:
        async with await folder.open_log() as log:
            return await log.append_many(items)

    return run_async(go())


def data_key(folder: HubFolder, owner: bytes, subject: str) -> bytes:
    """The subject's data key, or exit saying why this hub cannot seal or read for them."""
    with Keyring.open(folder) as ring:
        try:
            return ring.data_key(owner, subject)
        except PrivacyError as e:
            fail(str(e))


def seal_note(
    folder: HubFolder, owner: bytes, subject: str, kind: str, record: str, text: str
) -> Sealed | None:
    """``text`` sealed for the subject, bound to this hub's record (None if empty)."""
    if not text.strip():
        return None
    key = data_key(folder, owner, subject)
    aad = sealed_aad(folder.config.network, owner, subject, kind, folder.hub, record)
    try:
        return seal_value(key, Note(text=text.strip()), aad)
    except (PrivacyError, msgspec.ValidationError) as e:
        fail(f"the note cannot be sealed: {e}", 2)


def open_text(
    ring: Keyring,
    net: str,
    owner: bytes,
    subject: str | None,
    kind: str,
    author: bytes,
    record: str,
    sealed: Sealed | None,
) -> str | None:
    """A note in clear where this hub holds the key; else why not, in brackets."""
    if sealed is None:
        return None
    if subject is None:
        return "[sealed]"
    try:
        key = ring.data_key(owner, subject)
        return open_note(key, sealed, sealed_aad(net, owner, subject, kind, author, record)).text
    except PrivacyError as e:
        return "[erased]" if "erased" in str(e) else "[sealed]"


def body(cls: type[Body], fields: dict[str, Any]) -> Body:
    try:
        return msgspec.convert(fields, cls)
    except msgspec.ValidationError as e:
        fail(f"{cls.__name__}: {e}", 2)


def find_referral(runner: ProjectionRunner, folder: HubFolder, text: str) -> Referral:
    """The referral ``text`` names (``hub:…:ID`` or this hub's ``ID``), or exit."""
    hub, rid = parse_hub_ref(
        text, "REF", "hub:…:ID or a referral id", "r-1a2b3c4d5e", own=folder.hub
    )
    found = referral(runner, hub, rid)
    if found is None:
        runner.close()
        whose = "this hub" if hub == folder.hub else hub_display(hub)
        fail(
            f"no referral {rid} by {whose} in this hub's view; check the id with "
            "`hubnode referral list`, or wait for it to arrive by gossip"
        )
    return found


def consented_hubs(values: list[str] | None) -> list[bytes]:
    hubs: list[bytes] = []
    for text in values or []:
        hub = hub_arg(text)
        assert hub is not None
        if hub not in hubs:
            hubs.append(hub)
    return hubs


def purposes_of(values: list[str] | None) -> list[str]:
    chosen = values or list(DEFAULT_PURPOSES)
    for p in chosen:
        if p not in PURPOSES:
            fail(f"--purpose {p!r}: use {', '.join(PURPOSES)}", 2)
    return [p for p in PURPOSES if p in chosen]


def consent_body(
    folder: HubFolder, subject: str, key: bytes, recipients: list[bytes], purposes: list[str]
) -> Body:
    """``consent.recorded`` with the data key sealed to each recipient and to this hub."""

    async def published() -> dict[bytes, bytes]:
        async with await folder.open_log(with_key=False) as log:
            return await seal_keys(log, [h for h in recipients if h != folder.hub])

    try:
        keys = run_async(published())
    except PrivacyError as e:
        fail(str(e))
    with Keyring.open(folder) as ring:
        keys[folder.hub] = ring.seal_key.public
    net, me = folder.config.network, folder.hub
    return body(
        ConsentRecorded,
        {
            "subject": subject,
            "purposes": purposes,
            "recipients": [hub_display(h) for h in recipients],
            "keys": msgspec.to_builtins(key_boxes(net, me, subject, key, keys)),
        },
    )


def own_subject(runner: ProjectionRunner, folder: HubFolder, subject: str) -> SubjectInfo:
    """This hub's live subject ``subject``, or exit saying why not."""
    info = subject_info(runner, folder.hub, subject)
    if info is None:
        runner.close()
        fail(
            f"this hub logged no enquiry for {subject}; only the hub that logged a person's "
            "enquiry records their consent and refers them"
        )
    if info.erased:
        runner.close()
        fail(f"{subject} was erased on {when(info.erased_ts or 0)}; nothing more can be done")
    return info


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


def _choice(value: str | None, option: str, question: str, choices: Sequence[str]) -> str:
    answer = _ask(value, option, f"{question} ({', '.join(choices)})")
    if answer not in choices:
        fail(f"{option} {answer!r}: use one of {', '.join(choices)}", 2)
    return answer


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
    how = _choice(channel, "--channel", "How did they come", CHANNELS)
    if urgency not in URGENCIES:
        fail(f"--urgency {urgency!r}: use one of {', '.join(URGENCIES)}", 2)
    try:
        born = dt.date.fromisoformat(dob.strip()) if dob.strip() else None
    except ValueError:
        fail(f"--dob {dob!r}: write the date of birth as YYYY-MM-DD", 2)
    try:
        fields = {"name": person_name, "phone": phone, "email": email, "address": address}
        fields = {k: v.strip() for k, v in fields.items()}
        person = msgspec.convert({**fields, "dob": born, "notes": notes.strip()}, Person)
    except msgspec.ValidationError as e:
        fail(f"the person's details: {e}", 2)
    recipients = consented_hubs(consent)
    purposes = purposes_of(purpose)
    district = parse_district(area) if area else None
    runner = pathway_view(folder)  # publishes this hub's seal key if it has not yet
    runner.close()
    me, net = folder.hub, folder.config.network
    subject, enquiry = new_subject(), new_id("e")
    key = crypto.new_data_key()
    sealed = seal_value(key, person, sealed_aad(net, me, subject, "enquiry.logged", me, enquiry))
    logged = body(
        EnquiryLogged,
        {
            "enquiry": enquiry,
            "subject": subject,
            "channel": how,
            "needs": sorted(set(n.strip().lower() for n in needs)),
            "urgency": urgency,
            "area": district,
            "person": msgspec.to_builtins(sealed),
        },
    )
    recorded = consent_body(folder, subject, key, recipients, purposes)
    with Keyring.open(folder) as ring:
        ring.remember(me, subject, key)  # before the events exist: never a subject without key
    done = append(folder, [("enquiry.logged", logged), ("consent.recorded", recorded)])
    if as_json:
        print_json(
            {
                "subject": subject,
                "enquiry": enquiry,
                "seq": done[0].seq,
                "consent": [hub_display(h) for h in recipients],
                "purposes": purposes,
            }
        )
        return
    out.print(f"enquiry {enquiry} logged for {subject} (seq {done[0].seq})", markup=False)
    shared = ", ".join(hub_display(h) for h in recipients) or "no other hub"
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
    purposes = purposes_of(purpose)
    runner = pathway_view(folder)
    own_subject(runner, folder, subject)
    runner.close()
    key = data_key(folder, folder.hub, subject)
    done = append(
        folder, [("consent.recorded", consent_body(folder, subject, key, recipients, purposes))]
    )
    shared = ", ".join(hub_display(h) for h in recipients) or "no other hub"
    out.print(
        f"consent for {subject} recorded (seq {done[0].seq}): {', '.join(purposes)}; "
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
    runner = pathway_view(folder)
    own_subject(runner, folder, subject)
    runner.close()
    no_personal_data("--reason", reason)
    withdrawn = body(ConsentWithdrawn, {"subject": subject, "reason": reason.strip()})
    done = append(folder, [("consent.withdrawn", withdrawn)])
    out.print(f"consent for {subject} withdrawn (seq {done[0].seq})", markup=False)
