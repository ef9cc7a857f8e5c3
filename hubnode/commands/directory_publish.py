"""Writing the directory: ``hubnode service publish|update|withdraw``, ``capacity report``.

Flags or a ``--json`` body become a checked event body; a bad field exits 2 naming the
field and the fix, and nothing is appended. Reading the directory (search, and the
``register`` that adds these commands to the CLI) is in ``hubnode/commands/directory.py``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Final

import msgspec
import typer

from hubnode.commands.common import DataOpt, caught_up, fail, folder_of, out, run_async
from hubnode.config import HubFolder
from hubnode.events.directory import (
    CAPACITY_STATUSES,
    CATEGORIES,
    ServicePublished,
    ServiceUpdated,
)
from hubnode.events.fields import explain
from hubnode.events.kinds import KINDS, Body

service_app = typer.Typer(help="Publish, update and withdraw this hub's services.")
capacity_app = typer.Typer(help="Say whether this hub's services are taking people on.")

_OPEN: Final = re.compile(r"^([A-Z,]+)\s+(\d\d:\d\d)-(\d\d:\d\d)(?:\s+(.*))?$")

# -- options shared by publish and update ---------------------------------------------------

IdOpt = Annotated[str, typer.Option("--id", help="The service id, unique on this hub.")]
OrgOpt = Annotated[str | None, typer.Option("--org", help="Organisation: this hub or a provider.")]
OrgDescOpt = Annotated[
    str | None, typer.Option("--org-description", help="About the organisation.")
]
NameOpt = Annotated[str | None, typer.Option(help="The service's name.")]
DescOpt = Annotated[str | None, typer.Option(help="What the service does, in plain English.")]
CategoryOpt = Annotated[
    list[str] | None,
    typer.Option("--category", help=f"Repeatable; one of: {', '.join(CATEGORIES)}."),
]
EligOpt = Annotated[str | None, typer.Option(help="Who can use it.")]
FreeOpt = Annotated[bool, typer.Option("--free", help="The service is free.")]
FeeOpt = Annotated[float | None, typer.Option("--fee", help="A fee, e.g. 12.50.")]
CurrencyOpt = Annotated[str, typer.Option(help="Currency of --fee (ISO 4217).")]
FeeNoteOpt = Annotated[str, typer.Option("--fee-note", help="What the fee covers.")]
LangOpt = Annotated[list[str] | None, typer.Option("--language", help="Repeatable, e.g. en, pl.")]
OpenOpt = Annotated[
    list[str] | None,
    typer.Option("--open", help="Repeatable weekly hours, e.g. 'MO,TU,WE 09:00-17:00'."),
]
AreaOpt = Annotated[
    list[str] | None, typer.Option("--area", help="Repeatable postcode district, e.g. DL1.")
]
AddressOpt = Annotated[list[str] | None, typer.Option("--address", help="Repeatable address line.")]
TownOpt = Annotated[str | None, typer.Option(help="Town of the address.")]
PostcodeOpt = Annotated[str | None, typer.Option(help="Postcode of the address.")]
PlaceOpt = Annotated[str | None, typer.Option("--place", help="Name of the venue.")]
PhoneOpt = Annotated[str | None, typer.Option(help="Public phone number (organisational).")]
EmailOpt = Annotated[str | None, typer.Option(help="Public email address (organisational).")]
ContactOpt = Annotated[str, typer.Option("--contact-label", help="e.g. 'Reception'.")]
UrlOpt = Annotated[str | None, typer.Option(help="The service's web page.")]
BodyOpt = Annotated[
    str | None, typer.Option("--json", help="The whole body as JSON instead of the flags.")
]


def _fields_from_flags(
    *,
    org: str | None,
    org_description: str | None,
    name: str | None,
    description: str | None,
    category: list[str] | None,
    eligibility: str | None,
    free: bool,
    fee: float | None,
    currency: str,
    fee_note: str,
    language: list[str] | None,
    open_: list[str] | None,
    area: list[str] | None,
    address: list[str] | None,
    town: str | None,
    postcode: str | None,
    place: str | None,
    phone: str | None,
    email: str | None,
    contact_label: str,
    url: str | None,
) -> dict[str, Any]:
    """Body fields for the flags given (flags left out are left out)."""
    fields: dict[str, Any] = {}
    for key, value in (
        ("organisation", org),
        ("organisation_description", org_description),
        ("name", name),
        ("description", description),
        ("eligibility", eligibility),
        ("url", url),
    ):
        if value is not None:
            fields[key] = value
    if category is not None:
        fields["categories"] = category
    if language is not None:
        fields["languages"] = language
    if area is not None:
        fields["areas"] = [a.strip().upper() for a in area]
    if open_ is not None:
        fields["schedules"] = [_parse_open(text) for text in open_]
    costs: list[dict[str, Any]] = []
    if free:
        costs.append({"kind": "free"})
    if fee is not None:
        costs.append(
            {"kind": "fee", "amount": fee, "currency": currency.upper(), "description": fee_note}
        )
    if costs:
        fields["costs"] = costs
    if address is not None or town is not None or postcode is not None or place is not None:
        if not address or postcode is None:
            fail("--address and --postcode: give at least one --address line and --postcode", 2)
        fields["location"] = {
            "name": place or "",
            "address": address,
            "town": town or "",
            "postcode": postcode.strip().upper(),
        }
    if phone is not None or email is not None:
        fields["contacts"] = [{"label": contact_label, "phone": phone, "email": email}]
    return fields


def _parse_open(text: str) -> dict[str, Any]:
    match = _OPEN.match(text.strip())
    if match is None:
        fail(f"--open {text!r}: write days and hours like 'MO,TU,WE 09:00-17:00'", 2)
    days, opens, closes, note = match.groups()
    return {"days": days.split(","), "opens": opens, "closes": closes, "note": note or ""}


def _body(kind: str, fields: dict[str, Any]) -> Body:
    """Validate ``fields`` as a body of ``kind``: exit 2 with the field and fix if bad."""
    spec = KINDS.spec(kind)
    try:
        body: Body = msgspec.convert(fields, spec.body)
    except msgspec.ValidationError as e:
        fail(f"{kind}: {explain(str(e))}{_hint(str(e))}", 2)
    categories = getattr(body, "categories", None)
    if isinstance(categories, tuple):
        unknown = [c for c in categories if c not in CATEGORIES]
        if unknown:
            fail(
                f"{kind}: unknown category {', '.join(map(repr, unknown))}; "
                f"use one of {', '.join(CATEGORIES)}",
                2,
            )
    return body


_HINTS: Final = {
    "areas": "postcode districts such as DL1 (--area)",
    "languages": "language tags such as en or pl (--language)",
    "schedules": "weekly hours such as 'MO,TU 09:00-17:00' (--open)",
    "costs": "--free, or --fee 12.50 with --currency GBP",
    "location": "--address lines and a --postcode such as DL1 5AA",
    "contacts": "a --phone such as 01325 123456 or an --email",
    "url": "a web address starting https://",
    "email": "an address such as help@example.org",
    "id": "a short slug such as debt-advice (letters, digits, . _ -)",
    "name": "--name",
    "description": "--description",
    "organisation": "--org",
    "categories": f"--category, one or more of {', '.join(CATEGORIES)}",
}


def _hint(message: str) -> str:
    """The fix for the field a msgspec error names (``- at `$.areas[0]```)."""
    match = re.search(r"`\$\.([a-z_]+)", message) or re.search(r"field `([a-z_]+)`", message)
    if match is None:
        return ""
    hint = _HINTS.get(match.group(1))
    return f"; expected {hint}" if hint else ""


def _json_fields(kind: str, text: str) -> dict[str, Any]:
    # A body pasted from a file saved with a BOM ("$(cat body.json)") starts with U+FEFF.
    try:
        fields = msgspec.json.decode(text.removeprefix("\ufeff"), type=dict[str, Any])
    except msgspec.DecodeError as e:
        fail(f"--json: not a JSON object ({e})", 2)
    except RecursionError:
        fail("--json: not read, its JSON is nested too deeply", 2)
    known = {f.encode_name for f in msgspec.structs.fields(KINDS.spec(kind).body)}
    unknown = sorted(set(fields) - known)
    if unknown:
        fail(f"--json: unknown field {', '.join(unknown)}; {kind} has {', '.join(known)}", 2)
    return fields


def _append(folder: HubFolder, items: list[tuple[str, Body]]) -> list[int]:
    async def append() -> list[int]:
        async with await folder.open_log() as log:
            return [done.seq for done in await log.append_many(items)]

    return run_async(append())


def _own_services(folder: HubFolder) -> dict[str, bool]:
    """This hub's services in the directory view: id → withdrawn."""
    runner = caught_up(folder)
    rows = runner.query(
        "directory", "SELECT service, withdrawn FROM {services} WHERE publisher = ?", (folder.hub,)
    )
    runner.close()
    return {service: bool(withdrawn) for service, withdrawn in rows}


def _require_live(folder: HubFolder, service: str) -> None:
    withdrawn = _own_services(folder).get(service)
    if withdrawn is None:
        fail(f"--id {service!r}: this hub has published no such service (see `service publish`)", 2)
    if withdrawn:
        fail(f"--id {service!r} is withdrawn; publish it again to bring it back", 2)


# -- service publish / update / withdraw ---------------------------------------------------


def _service_body(kind: str, id_: str | None, body_json: str | None, flags: dict[str, Any]) -> Body:
    """The body of ``kind`` from ``--json`` or from the flags (never both; exit 2 if so)."""
    if body_json is not None:
        if flags or id_ is not None:
            fail("--json: give the whole body as JSON or use the flags, not both", 2)
        fields = _json_fields(kind, body_json)
    else:
        fields = {"id": id_, **flags} if id_ is not None else flags
    return _body(kind, fields)


@service_app.command("publish")
def service_publish(
    data: DataOpt,
    id_: Annotated[str | None, typer.Option("--id", help="The service id, unique here.")] = None,
    org: OrgOpt = None,
    org_description: OrgDescOpt = None,
    name: NameOpt = None,
    description: DescOpt = None,
    category: CategoryOpt = None,
    eligibility: EligOpt = None,
    free: FreeOpt = False,
    fee: FeeOpt = None,
    currency: CurrencyOpt = "GBP",
    fee_note: FeeNoteOpt = "",
    language: LangOpt = None,
    open_: OpenOpt = None,
    area: AreaOpt = None,
    address: AddressOpt = None,
    town: TownOpt = None,
    postcode: PostcodeOpt = None,
    place: PlaceOpt = None,
    phone: PhoneOpt = None,
    email: EmailOpt = None,
    contact_label: ContactOpt = "",
    url: UrlOpt = None,
    body_json: BodyOpt = None,
) -> None:
    """Publish a service of this hub to the network's directory. Prints its seq."""
    folder = folder_of(data)
    flags = _fields_from_flags(
        org=org,
        org_description=org_description,
        name=name,
        description=description,
        category=category,
        eligibility=eligibility,
        free=free,
        fee=fee,
        currency=currency,
        fee_note=fee_note,
        language=language,
        open_=open_,
        area=area,
        address=address,
        town=town,
        postcode=postcode,
        place=place,
        phone=phone,
        email=email,
        contact_label=contact_label,
        url=url,
    )
    body = _service_body("service.published", id_, body_json, flags)
    assert isinstance(body, ServicePublished)
    if _own_services(folder).get(body.id) is False:
        fail(f"--id {body.id!r} is already published; change it with `service update`", 2)
    (seq,) = _append(folder, [("service.published", body)])
    out.print(f"published service {body.id} (seq {seq})", markup=False)


@service_app.command("update")
def service_update(
    data: DataOpt,
    id_: Annotated[str | None, typer.Option("--id", help="The service to update.")] = None,
    org: OrgOpt = None,
    org_description: OrgDescOpt = None,
    name: NameOpt = None,
    description: DescOpt = None,
    category: CategoryOpt = None,
    eligibility: EligOpt = None,
    free: FreeOpt = False,
    fee: FeeOpt = None,
    currency: CurrencyOpt = "GBP",
    fee_note: FeeNoteOpt = "",
    language: LangOpt = None,
    open_: OpenOpt = None,
    area: AreaOpt = None,
    address: AddressOpt = None,
    town: TownOpt = None,
    postcode: PostcodeOpt = None,
    place: PlaceOpt = None,
    phone: PhoneOpt = None,
    email: EmailOpt = None,
    contact_label: ContactOpt = "",
    url: UrlOpt = None,
    body_json: BodyOpt = None,
) -> None:
    """Change fields of this hub's service; list flags replace the whole list."""
    folder = folder_of(data)
    flags = _fields_from_flags(
        org=org,
        org_description=org_description,
        name=name,
        description=description,
        category=category,
        eligibility=eligibility,
        free=free,
        fee=fee,
        currency=currency,
        fee_note=fee_note,
        language=language,
        open_=open_,
        area=area,
        address=address,
        town=town,
        postcode=postcode,
        place=place,
        phone=phone,
        email=email,
        contact_label=contact_label,
        url=url,
    )
    body = _service_body("service.updated", id_, body_json, flags)
    assert isinstance(body, ServiceUpdated)
    if body.publisher is not None and body.publisher != folder.config.hub_id:
        fail(f"publisher {body.publisher}: only the publishing hub may update its service", 2)
    _require_live(folder, body.id)
    (seq,) = _append(folder, [("service.updated", body)])
    out.print(f"updated service {body.id} (seq {seq})", markup=False)


@service_app.command("withdraw")
def service_withdraw(
    data: DataOpt,
    id_: IdOpt,
    reason: Annotated[str, typer.Option(help="Why, for people reading the log.")] = "",
) -> None:
    """Withdraw this hub's service from the directory."""
    folder = folder_of(data)
    body = _body("service.withdrawn", {"service": id_, "reason": reason})
    _require_live(folder, id_)
    (seq,) = _append(folder, [("service.withdrawn", body)])
    out.print(f"withdrew service {id_} (seq {seq})", markup=False)


@capacity_app.command("report")
def capacity_report(
    data: DataOpt,
    id_: IdOpt,
    status: Annotated[str, typer.Option(help=f"One of: {', '.join(CAPACITY_STATUSES)}.")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Date YYYY-MM-DD (default: today).")
    ] = None,
    note: Annotated[str, typer.Option(help="e.g. 'waiting time about 3 weeks'.")] = "",
) -> None:
    """Report whether a service of this hub is accepting people, has a waitlist or is full."""
    folder = folder_of(data)
    if status not in CAPACITY_STATUSES:
        fail(f"--status {status!r}: use one of {', '.join(CAPACITY_STATUSES)}", 2)
    fields = {
        "service": id_,
        "status": status,
        "as_of": as_of or dt.date.today().isoformat(),
        "note": note,
    }
    body = _body("capacity.reported", fields)
    _require_live(folder, id_)
    (seq,) = _append(folder, [("capacity.reported", body)])
    out.print(f"capacity of {id_}: {status} (seq {seq})", markup=False)
