"""Directory commands: publish services, report capacity, search, HSDS export/import, print.

``hubnode service publish|update|withdraw``, ``hubnode capacity report`` and
``hubnode directory search|export|import|print``. The HSDS 3.0 mapping lives here too:
ids in the export are uuids (a service id that is already a uuid is kept, others are
derived with uuid5 from the publisher and the id, so an export is the same every time).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec
import typer
from rich.table import Table

from hubnode.commands.common import (
    DataOpt,
    JsonOpt,
    caught_up,
    fail,
    folder_of,
    out,
    print_json,
    run_async,
)
from hubnode.config import HubFolder
from hubnode.events.directory import (
    CAPACITY_STATUSES,
    CATEGORIES,
    DAYS,
    ServicePublished,
    ServiceUpdated,
)
from hubnode.events.ids import hub_display, short_hub
from hubnode.events.kinds import KINDS, Body
from hubnode.projections.directory import decode_service

service_app = typer.Typer(help="Publish, update and withdraw this hub's services.")
capacity_app = typer.Typer(help="Say whether this hub's services are taking people on.")
directory_app = typer.Typer(
    help="The network's directory of services: search, HSDS export/import, print.",
    no_args_is_help=True,
)

HSDS_NAMESPACE: Final = uuid.UUID("6f1c5d0e-8e33-4f57-9a43-3d7c1b0e2a51")
"""uuid5 namespace of the ids hubnode derives for HSDS records."""
CATEGORY_TAXONOMY: Final = "hubnode-categories"
_DISTRICT: Final = re.compile(r"\b[A-Z]{1,2}[0-9][0-9A-Z]?\b")
_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
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
        fail(f"{kind}: {e}{_hint(str(e))}", 2)
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
    try:
        fields = msgspec.json.decode(text, type=dict[str, Any])
    except msgspec.DecodeError as e:
        fail(f"--json: not a JSON object ({e})", 2)
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
    if body_json is not None:
        if flags or id_ is not None:
            fail("--json: give the whole body as JSON or use the flags, not both", 2)
        fields = _json_fields("service.published", body_json)
    else:
        fields = {"id": id_, **flags} if id_ is not None else flags
    body = _body("service.published", fields)
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
    if body_json is not None:
        if flags or id_ is not None:
            fail("--json: give the whole body as JSON or use the flags, not both", 2)
        fields = _json_fields("service.updated", body_json)
    else:
        fields = {"id": id_, **flags} if id_ is not None else flags
    body = _body("service.updated", fields)
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


# -- reading the directory -----------------------------------------------------------------


class Listing(msgspec.Struct, frozen=True, kw_only=True):
    """A live service as the directory shows it."""

    publisher: bytes
    service: ServicePublished
    capacity: dict[str, str] | None


def _listings(
    folder: HubFolder,
    *,
    text: str | None = None,
    categories: Iterable[str] = (),
    area: str | None = None,
    free: bool = False,
) -> list[Listing]:
    """Live services matching every filter given, by name then publisher and id."""
    where = ["s.withdrawn = 0"]
    params: list[Any] = []
    if text:
        for word in text.casefold().split():
            where.append("instr(s.text, ?) > 0")
            params.append(word)
    for category in categories:
        where.append(
            "EXISTS (SELECT 1 FROM {categories} c WHERE c.category = ? "
            "AND c.publisher = s.publisher AND c.service = s.service)"
        )
        params.append(category)
    if area:
        where.append(
            "EXISTS (SELECT 1 FROM {areas} a WHERE a.district = ? "
            "AND a.publisher = s.publisher AND a.service = s.service)"
        )
        params.append(area)
    if free:
        where.append("s.free = 1")
    runner = caught_up(folder)
    rows = runner.query(
        "directory",
        "SELECT s.publisher, s.data, k.status, k.as_of, k.note FROM {services} s "
        "LEFT JOIN {capacity} k ON k.publisher = s.publisher AND k.service = s.service "
        f"WHERE {' AND '.join(where)} ORDER BY s.name, s.publisher, s.service",
        params,
    )
    runner.close()
    return [
        Listing(
            publisher=publisher,
            service=decode_service(data),
            capacity=None if status is None else {"status": status, "as_of": as_of, "note": note},
        )
        for publisher, data, status, as_of, note in rows
    ]


def open_at(service: ServicePublished, when: dt.datetime) -> bool:
    """Whether the service's weekly hours include local time ``when``."""
    day, clock = DAYS[when.weekday()], when.strftime("%H:%M")
    return any(day in s.days and s.opens <= clock < s.closes for s in service.schedules)


def _district(text: str) -> str:
    district = text.strip().upper()
    if not re.fullmatch(r"[A-Z]{1,2}[0-9][0-9A-Z]?", district):
        fail(f"--area {text!r}: give a postcode district such as DL1 or DL3", 2)
    return district


def _costs_text(service: ServicePublished) -> str:
    parts = []
    for c in service.costs:
        if c.kind == "free":
            parts.append("free" + (f" ({c.option})" if c.option else ""))
        else:
            money = f"{c.amount:.2f} {c.currency}"
            parts.append(money + (f" {c.description}" if c.description else ""))
    return "; ".join(parts) or "ask"


@directory_app.command("search")
def directory_search(
    data: DataOpt,
    text: Annotated[
        str | None, typer.Option(help="Words to find in name, description, organisation.")
    ] = None,
    category: Annotated[
        list[str] | None, typer.Option(help="Only this category (repeat: all of them).")
    ] = None,
    area: Annotated[
        str | None, typer.Option(help="Only services covering this postcode district.")
    ] = None,
    free: Annotated[bool, typer.Option("--free", help="Only services with a free option.")] = False,
    open_now: Annotated[
        bool, typer.Option("--open-now", help="Only services open now (local clock).")
    ] = False,
    at: Annotated[
        str | None,
        typer.Option(help="With --open-now: this local time instead, YYYY-MM-DDTHH:MM."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Find live services across the network."""
    for c in category or ():
        if c not in CATEGORIES:
            fail(f"--category {c!r}: use one of {', '.join(CATEGORIES)}", 2)
    when = dt.datetime.now()
    if at is not None:
        try:
            when = dt.datetime.fromisoformat(at)
        except ValueError:
            fail(f"--at {at!r}: write a local time as YYYY-MM-DDTHH:MM", 2)
    found = _listings(
        folder_of(data),
        text=text,
        categories=category or (),
        area=_district(area) if area else None,
        free=free,
    )
    if open_now:
        found = [f for f in found if open_at(f.service, when)]
    if as_json:
        print_json(
            [
                {
                    "publisher": hub_display(f.publisher),
                    **msgspec.to_builtins(f.service),
                    "capacity": f.capacity,
                }
                for f in found
            ]
        )
        return
    if not found:
        out.print("no services match")
        return
    table = Table("service", "name", "organisation", "categories", "areas", "cost", "capacity")
    for f in found:
        s = f.service
        table.add_row(
            f"{short_hub(f.publisher)}/{s.id}",
            s.name,
            s.organisation,
            ", ".join(s.categories),
            ", ".join(s.areas) or "-",
            _costs_text(s),
            f"{f.capacity['status']} ({f.capacity['as_of']})" if f.capacity else "-",
        )
    out.print(table)


# -- HSDS 3.0 export -----------------------------------------------------------------------


def _uid(*parts: str) -> str:
    return str(uuid.uuid5(HSDS_NAMESPACE, "/".join(parts)))


def _service_uuid(publisher: bytes, service_id: str) -> str:
    """The HSDS id of a service: its own id when that is a uuid, else derived from it."""
    if _UUID.fullmatch(service_id):
        return service_id
    return _uid(hub_display(publisher), service_id)


def hsds_service(listing: Listing) -> dict[str, Any]:
    """One HSDS 3.0 service record (the shape of the official ``service_full.json``)."""
    s, publisher = listing.service, hub_display(listing.publisher)
    sid = _service_uuid(listing.publisher, s.id)
    record: dict[str, Any] = {
        "id": sid,
        "name": s.name,
        "description": s.description,
        "status": "active",
        "organization": {
            "id": _uid("organisation", publisher, s.organisation),
            "name": s.organisation,
            "description": s.organisation_description,
        },
    }
    if s.url is not None:
        record["url"] = s.url
    if s.email is not None:
        record["email"] = s.email
    if s.eligibility:
        record["eligibility_description"] = s.eligibility
    if listing.capacity is not None:
        cap = listing.capacity
        record["wait_time"] = f"{cap['status']} as of {cap['as_of']}" + (
            f": {cap['note']}" if cap["note"] else ""
        )
    record["cost_options"] = [
        {
            "id": _uid(sid, "cost", str(i)),
            "service_id": sid,
            "option": c.option or ("Free" if c.kind == "free" else "Fee"),
            "amount": 0 if c.kind == "free" else c.amount,
            **({"currency": c.currency} if c.currency else {}),
            **({"amount_description": c.description} if c.description else {}),
        }
        for i, c in enumerate(s.costs)
    ]
    record["languages"] = [
        {"id": _uid(sid, "language", code), "service_id": sid, "code": code} for code in s.languages
    ]
    record["schedules"] = [
        {
            "id": _uid(sid, "schedule", str(i)),
            "service_id": sid,
            "freq": "WEEKLY",
            "wkst": "MO",
            "byday": ",".join(h.days),
            "opens_at": h.opens,
            "closes_at": h.closes,
            **({"description": h.note} if h.note else {}),
        }
        for i, h in enumerate(s.schedules)
    ]
    record["service_areas"] = [
        {
            "id": _uid(sid, "area", d),
            "service_id": sid,
            "name": d,
            "description": f"Postcode district {d}",
        }
        for d in s.areas
    ]
    record["service_at_locations"] = []
    if s.location is not None:
        loc, lid = s.location, _uid(sid, "location")
        record["service_at_locations"].append(
            {
                "id": _uid(sid, "service_at_location"),
                "service_id": sid,
                "location_id": lid,
                "location": {
                    "id": lid,
                    "location_type": "physical",
                    **({"name": loc.name} if loc.name else {}),
                    "addresses": [
                        {
                            "id": _uid(sid, "address"),
                            "location_id": lid,
                            "address_1": loc.address[0],
                            **(
                                {"address_2": ", ".join(loc.address[1:])}
                                if len(loc.address) > 1
                                else {}
                            ),
                            "city": loc.town,
                            "region": loc.region,
                            "state_province": loc.region,
                            "postal_code": loc.postcode,
                            "country": loc.country,
                            "address_type": "physical",
                        }
                    ],
                },
            }
        )
    record["contacts"] = []
    record["phones"] = []
    for i, c in enumerate(s.contacts):
        cid = _uid(sid, "contact", str(i))
        contact: dict[str, Any] = {"id": cid, "service_id": sid}
        if c.label:
            contact["department"] = c.label
        if c.email:
            contact["email"] = c.email
        if c.phone:
            contact["phones"] = [
                {"id": _uid(cid, "phone"), "contact_id": cid, "number": c.phone, "type": "voice"}
            ]
            record["phones"].append(
                {
                    "id": _uid(sid, "phone", str(i)),
                    "service_id": sid,
                    "number": c.phone,
                    "type": "voice",
                    **({"description": c.label} if c.label else {}),
                }
            )
        record["contacts"].append(contact)
    record["attributes"] = [
        {
            "id": _uid(sid, "category", tag),
            "link_id": sid,
            "link_type": "service",
            "link_entity": "service",
            "taxonomy_term_id": _uid("category", tag),
            "taxonomy_term": {
                "id": _uid("category", tag),
                "code": tag,
                "name": CATEGORIES.get(tag, tag),
                "description": CATEGORIES.get(tag, tag),
                "taxonomy": CATEGORY_TAXONOMY,
            },
        }
        for tag in s.categories
    ]
    return record


@directory_app.command("export")
def directory_export(
    data: DataOpt,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write services.json in.")],
    fmt: Annotated[str, typer.Option("--format", help="Only hsds (HSDS 3.0 JSON).")] = "hsds",
) -> None:
    """Write every live service as HSDS 3.0 JSON: OUT/services.json, a list of services."""
    if fmt != "hsds":
        fail(f"--format {fmt!r}: only hsds is supported", 2)
    if out_dir.exists() and not out_dir.is_dir():
        fail(f"--out {out_dir}: exists and is not a folder", 2)
    found = _listings(folder_of(data))
    out_dir.mkdir(parents=True, exist_ok=True)
    records = [hsds_service(f) for f in found]
    target = out_dir / "services.json"
    tmp = target.with_name(target.name + ".part")
    tmp.write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(target)
    out.print(f"wrote {len(records)} services to {target}", markup=False)


# -- HSDS 3.0 import -----------------------------------------------------------------------


def _clean_phone(number: object) -> str | None:
    if not isinstance(number, str):
        return None
    cleaned = number.strip().strip("\"'").strip()
    return cleaned if re.fullmatch(r"\+?[0-9][0-9 ()-]{4,24}", cleaned) else None


def _text(value: object, limit: int = 200) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def _list(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def fields_from_hsds(
    record: dict[str, Any], *, organisation: str, categories: list[str]
) -> dict[str, Any]:
    """``service.published`` fields from an HSDS 3.0 service record (unmapped fields dropped)."""
    sid = _text(record.get("id"), 64)
    fields: dict[str, Any] = {
        "id": sid,
        "name": _text(record.get("name")),
        "description": _text(record.get("description"), 5000) or _text(record.get("name")),
    }
    org = record.get("organization") if isinstance(record.get("organization"), dict) else {}
    assert isinstance(org, dict)
    fields["organisation"] = _text(org.get("name")) or organisation
    fields["organisation_description"] = _text(org.get("description"), 5000)
    fields["eligibility"] = _text(record.get("eligibility_description"), 5000)
    for key in ("url", "email"):
        if isinstance(record.get(key), str) and record[key].strip():
            fields[key] = record[key].strip()
    tags = []
    for attribute in _list(record.get("attributes")):
        term = attribute.get("taxonomy_term")
        code = term.get("code") if isinstance(term, dict) else None
        if code in CATEGORIES and code not in tags:
            tags.append(code)
    fields["categories"] = tags or list(dict.fromkeys(categories))
    costs = []
    for c in _list(record.get("cost_options")):
        amount, option = c.get("amount"), _text(c.get("option"))
        is_free = amount in (None, 0) and (amount == 0 or "free" in option.casefold())
        cost: dict[str, Any] = {"kind": "free" if is_free else "fee"}
        if not is_free:
            cost["amount"] = amount
            cost["currency"] = _text(c.get("currency")).upper() or None
        if option not in ("Free", "Fee"):
            cost["option"] = option
        cost["description"] = _text(c.get("amount_description"))
        costs.append(cost)
    fields["costs"] = costs
    fields["languages"] = list(
        dict.fromkeys(
            _text(lang.get("code")).lower()
            for lang in _list(record.get("languages"))
            if _text(lang.get("code"))
        )
    )
    schedule_records = _list(record.get("schedules"))
    for sal in _list(record.get("service_at_locations")):
        schedule_records += _list(sal.get("schedules"))
    schedules: list[dict[str, Any]] = []
    for sch in schedule_records:
        days = [d.strip() for d in _text(sch.get("byday")).split(",") if d.strip() in DAYS]
        opens, closes = _text(sch.get("opens_at"))[:5], _text(sch.get("closes_at"))[:5]
        if sch.get("freq", "WEEKLY") != "WEEKLY" or not days or not opens or not closes:
            continue  # hubnode keeps simple weekly hours only
        hours = {
            "days": days,
            "opens": opens,
            "closes": closes,
            "note": _text(sch.get("description")),
        }
        if hours not in schedules:
            schedules.append(hours)
    fields["schedules"] = schedules
    areas: list[str] = []
    for area in _list(record.get("service_areas")):
        for text in (_text(area.get("name"), 5000), _text(area.get("description"), 5000)):
            areas += [d for d in _DISTRICT.findall(text) if d not in areas]
    fields["areas"] = areas
    for sal in _list(record.get("service_at_locations")):
        loc = sal.get("location")
        addresses = _list(loc.get("addresses")) if isinstance(loc, dict) else []
        if not isinstance(loc, dict) or not addresses:
            continue
        a = addresses[0]
        lines = [_text(a.get(k)) for k in ("address_1", "address_2") if _text(a.get(k))]
        fields["location"] = {
            "name": _text(loc.get("name")),
            "address": lines,
            "town": _text(a.get("city")),
            "region": _text(a.get("region")) or _text(a.get("state_province")),
            "postcode": _text(a.get("postal_code"), 16).upper(),
            "country": _text(a.get("country")).upper() or "GB",
        }
        break
    contacts: list[dict[str, Any]] = []
    phones_seen: set[str] = set()
    for c in _list(record.get("contacts")):
        phone = next(
            (p for p in (_clean_phone(x.get("number")) for x in _list(c.get("phones"))) if p), None
        )
        email = _text(c.get("email")) or None
        if phone is None and email is None:
            continue
        # Organisational contacts only: the desk or team, never a person's name.
        label = _text(c.get("department")) or _text(c.get("title"))
        contacts.append({"label": label, "phone": phone, "email": email})
        if phone:
            phones_seen.add(phone)
    for p in _list(record.get("phones")):
        phone = _clean_phone(p.get("number"))
        if phone and phone not in phones_seen:
            phones_seen.add(phone)
            contacts.append({"label": "", "phone": phone})
    fields["contacts"] = contacts
    return fields


def _hsds_records(document: object) -> list[dict[str, Any]]:
    """Service records in an HSDS document: one service, a list, or an API page."""
    if isinstance(document, dict) and isinstance(document.get("contents"), list):
        document = document["contents"]
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list) or not all(isinstance(r, dict) for r in document):
        fail("FILE: expected an HSDS service, a list of services or a page with contents", 2)
    return document


@directory_app.command("import")
def directory_import(
    data: DataOpt,
    file: Annotated[Path, typer.Argument(help="HSDS 3.0 JSON file.", show_default=False)],
    fmt: Annotated[str, typer.Option("--format", help="Only hsds (HSDS 3.0 JSON).")] = "hsds",
    category: Annotated[
        list[str] | None,
        typer.Option(help="Categories for records that carry none hubnode knows (repeatable)."),
    ] = None,
    org: Annotated[
        str | None, typer.Option("--org", help="Organisation for records without one.")
    ] = None,
) -> None:
    """Publish the services of an HSDS 3.0 file as this hub's services."""
    if fmt != "hsds":
        fail(f"--format {fmt!r}: only hsds is supported", 2)
    for c in category or ():
        if c not in CATEGORIES:
            fail(f"--category {c!r}: use one of {', '.join(CATEGORIES)}", 2)
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except OSError as e:
        fail(f"cannot read {file}: {e.strerror or e}", 2)
    except ValueError as e:
        fail(f"{file}: not JSON ({e})", 2)
    folder = folder_of(data)
    items: list[tuple[str, Body]] = []
    for n, record in enumerate(_hsds_records(document), 1):
        fields = fields_from_hsds(
            record, organisation=org or folder.config.name, categories=category or []
        )
        if not fields["categories"]:
            fail(
                f"{file} service {n} ({fields['id'] or 'no id'}): no category hubnode knows; "
                f"pass --category (one of {', '.join(CATEGORIES)})",
                2,
            )
        try:
            body = msgspec.convert(fields, ServicePublished)
        except msgspec.ValidationError as e:
            fail(f"{file} service {n} ({fields['id'] or 'no id'}): {e}", 2)
        items.append(("service.published", body))
    seqs = _append(folder, items)
    for (_, published), seq in zip(items, seqs, strict=True):
        assert isinstance(published, ServicePublished)
        out.print(f"published service {published.id} (seq {seq})", markup=False)


# -- print ---------------------------------------------------------------------------------

_DAY_NAMES: Final = dict(zip(DAYS, ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), strict=True))
_PRINT_CSS: Final = """
@page { size: A4; margin: 18mm 15mm; }
body { font: 11pt/1.4 Georgia, "Times New Roman", serif; color: #000; max-width: 180mm;
       margin: 0 auto; }
h1 { font-size: 20pt; margin: 0 0 4mm; }
h2 { font-size: 15pt; border-bottom: 1.5pt solid #000; margin: 8mm 0 3mm;
     break-after: avoid; page-break-after: avoid; }
.service { break-inside: avoid; page-break-inside: avoid; margin: 0 0 5mm; }
.service h3 { font-size: 12pt; margin: 0; }
.org { font-style: italic; margin: 0 0 1mm; }
dl { display: grid; grid-template-columns: 28mm 1fr; gap: 0.5mm 3mm; margin: 1mm 0; }
dt { font-weight: bold; }
dd { margin: 0; }
@media screen { body { padding: 10mm; } }
"""


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def _service_html(f: Listing) -> str:
    s, e = f.service, html.escape
    rows: list[tuple[str, str]] = []
    if s.eligibility:
        rows.append(("Who it is for", s.eligibility))
    rows.append(("Cost", _first_upper(_costs_text(s)) if s.costs else "Ask the service"))
    if s.schedules:
        rows.append(
            (
                "Open",
                "; ".join(
                    f"{', '.join(_DAY_NAMES[d] for d in h.days)} {h.opens} to {h.closes}"
                    + (f" ({h.note})" if h.note else "")
                    for h in s.schedules
                ),
            )
        )
    if s.location:
        loc = s.location
        parts = [loc.name, *loc.address, loc.town, loc.postcode]
        rows.append(("Where", ", ".join(p for p in parts if p)))
    if s.areas:
        rows.append(("Areas", ", ".join(s.areas)))
    for c in s.contacts:
        how = " or ".join(x for x in (c.phone, c.email) if x)
        rows.append(("Contact", f"{c.label}: {how}" if c.label else how))
    if s.url:
        rows.append(("Website", s.url))
    if s.languages:
        rows.append(("Languages", ", ".join(s.languages)))
    if f.capacity:
        status = {"accepting": "Taking people on", "waitlist": "Waiting list"}.get(
            f.capacity["status"], "Full at the moment"
        )
        rows.append(("Places", f"{status} (as of {f.capacity['as_of']})"))
    items = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in rows)
    return (
        f'<section class="service"><h3>{e(s.name)}</h3><p class="org">{e(s.organisation)}</p>'
        f"<p>{e(s.description)}</p><dl>{items}</dl></section>"
    )


def directory_html(found: list[Listing], *, title: str) -> str:
    """A printable directory: A4, grouped by category in the vocabulary's order."""
    tags = list(CATEGORIES) + sorted(
        {c for f in found for c in f.service.categories} - set(CATEGORIES)
    )
    sections = []
    for tag in tags:
        listed = [f for f in found if tag in f.service.categories]
        if listed:
            heading = html.escape(CATEGORIES.get(tag, tag.replace("-", " ").capitalize()))
            sections.append(f"<h2>{heading}</h2>" + "".join(_service_html(f) for f in listed))
    body = "".join(sections) or "<p>No services are listed.</p>"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_PRINT_CSS}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


@directory_app.command("print")
def directory_print(
    data: DataOpt,
    out_file: Annotated[Path, typer.Option("--out", help="The .html file to write.")],
    area: Annotated[
        str | None, typer.Option(help="Only services covering this postcode district.")
    ] = None,
) -> None:
    """Write a printable directory (A4, grouped by category) as one HTML file."""
    district = _district(area) if area else None
    if not out_file.parent.is_dir():
        fail(f"--out {out_file}: there is no folder {out_file.parent}", 2)
    found = _listings(folder_of(data), area=district)
    title = "Directory of services" + (f" in {district}" if district else "")
    out_file.write_text(directory_html(found, title=title), encoding="utf-8")
    out.print(f"wrote {len(found)} services to {out_file}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(service_app, name="service", no_args_is_help=True)
    app.add_typer(capacity_app, name="capacity", no_args_is_help=True)
    app.add_typer(directory_app, name="directory")
