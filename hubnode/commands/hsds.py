"""HSDS 3.0 and the directory: ``hubnode directory export`` and ``hubnode directory import``.

The mapping between a :class:`ServicePublished` and an Open Referral HSDS 3.0 service
record. Ids in the export are uuids: a service id that is already a uuid is kept, others
are derived with uuid5 from the publisher and the id, so an export is the same every time.
An import keeps what hubnode can carry (weekly hours, postcode districts, organisational
contacts) and drops the rest.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Annotated, Any, Final, NamedTuple

import msgspec
import typer

from hubnode.commands.common import DataOpt, err, fail, folder_of, out
from hubnode.commands.directory import Listing, _listings
from hubnode.commands.directory_publish import _append
from hubnode.events.directory import CATEGORIES, DAYS, ServicePublished
from hubnode.events.fields import explain
from hubnode.events.ids import hub_display
from hubnode.events.kinds import Body

HSDS_NAMESPACE: Final = uuid.UUID("6f1c5d0e-8e33-4f57-9a43-3d7c1b0e2a51")
"""uuid5 namespace of the ids hubnode derives for HSDS records."""
CATEGORY_TAXONOMY: Final = "hubnode-categories"
_DISTRICT: Final = re.compile(r"\b[A-Z]{1,2}[0-9][0-9A-Z]?\b")
_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


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

MAX_IMPORT_BYTES: Final = 64 * 1024 * 1024
"""The largest HSDS file an import reads: a region's directory fits many times over."""
MAX_IMPORT_SERVICES: Final = 10_000
"""The most services one import publishes; split a larger file."""
UTF8_BOM: Final = b"\xef\xbb\xbf"
"""Some editors start UTF-8 files with it; JSON and TOML readers refuse it, so it is dropped."""


class Cut(NamedTuple):
    """A text value longer than hubnode keeps, cut to ``limit`` characters on import."""

    field: str
    length: int
    limit: int


class _Texts:
    """Reads the text values of one record, noting each one cut to hubnode's limit."""

    def __init__(self) -> None:
        self.cuts: list[Cut] = []

    def __call__(self, value: object, field: str, limit: int = 200) -> str:
        if not isinstance(value, str):
            return ""
        text = value.strip()
        if len(text) > limit:
            self.cuts.append(Cut(field, len(text), limit))
            return text[:limit].rstrip()
        return text


def _clean_phone(number: object) -> str | None:
    if not isinstance(number, str):
        return None
    cleaned = number.strip().strip("\"'").strip()
    return cleaned if re.fullmatch(r"\+?[0-9][0-9 ()-]{4,24}", cleaned) else None


def _list(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _clock(value: object) -> str:
    """``HH:MM`` of an HSDS time (``09:00`` or ``09:00:00``); '' if it is not text."""
    return value.strip()[:5] if isinstance(value, str) else ""


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def fields_from_hsds(
    record: dict[str, Any], *, organisation: str, categories: list[str]
) -> tuple[dict[str, Any], list[Cut]]:
    """``service.published`` fields from an HSDS 3.0 service record (unmapped fields
    dropped), and the text values cut to fit. Values of the wrong type are left out, so
    any JSON record maps without an error; the body's own checks then say what is wrong."""
    text = _Texts()
    # The id is never cut: a cut id would name another service (or clash with one).
    sid = record["id"].strip() if isinstance(record.get("id"), str) else ""
    fields: dict[str, Any] = {
        "id": sid,
        "name": text(record.get("name"), "name"),
        "description": text(record.get("description"), "description", 5000)
        or text(record.get("name"), "name"),
    }
    org = _dict(record.get("organization"))
    fields["organisation"] = text(org.get("name"), "organization.name") or organisation
    fields["organisation_description"] = text(
        org.get("description"), "organization.description", 5000
    )
    fields["eligibility"] = text(
        record.get("eligibility_description"), "eligibility_description", 5000
    )
    for key in ("url", "email"):
        if isinstance(record.get(key), str) and record[key].strip():
            fields[key] = record[key].strip()
    tags = []
    for attribute in _list(record.get("attributes")):
        code = _dict(attribute.get("taxonomy_term")).get("code")
        if isinstance(code, str) and code in CATEGORIES and code not in tags:
            tags.append(code)
    fields["categories"] = tags or list(dict.fromkeys(categories))
    costs = []
    for c in _list(record.get("cost_options")):
        amount, option = c.get("amount"), text(c.get("option"), "cost_options.option")
        is_free = amount is None or (type(amount) in (int, float) and amount == 0)
        is_free = is_free and (amount == 0 or "free" in option.casefold())
        cost: dict[str, Any] = {"kind": "free" if is_free else "fee"}
        if not is_free:
            cost["amount"] = amount
            cost["currency"] = text(c.get("currency"), "cost_options.currency").upper() or None
        if option not in ("Free", "Fee"):
            cost["option"] = option
        cost["description"] = text(c.get("amount_description"), "cost_options.amount_description")
        costs.append(cost)
    fields["costs"] = costs
    fields["languages"] = list(
        dict.fromkeys(
            code.lower()
            for lang in _list(record.get("languages"))
            if (code := text(lang.get("code"), "languages.code"))
        )
    )
    schedule_records = _list(record.get("schedules"))
    for sal in _list(record.get("service_at_locations")):
        schedule_records += _list(sal.get("schedules"))
    schedules: list[dict[str, Any]] = []
    for sch in schedule_records:
        byday = sch.get("byday")
        days = [d.strip() for d in byday.split(",")] if isinstance(byday, str) else []
        days = [d for d in days if d in DAYS]
        opens, closes = (_clock(sch.get("opens_at")), _clock(sch.get("closes_at")))
        if sch.get("freq", "WEEKLY") != "WEEKLY" or not days or not opens or not closes:
            continue  # hubnode keeps simple weekly hours only
        hours = {
            "days": days,
            "opens": opens,
            "closes": closes,
            "note": text(sch.get("description"), "schedules.description"),
        }
        if hours not in schedules:
            schedules.append(hours)
    fields["schedules"] = schedules
    areas: list[str] = []
    for area in _list(record.get("service_areas")):
        for value in (area.get("name"), area.get("description")):
            if isinstance(value, str):  # districts are found anywhere in it: nothing is cut
                areas += [d for d in _DISTRICT.findall(value) if d not in areas]
    fields["areas"] = areas
    for sal in _list(record.get("service_at_locations")):
        loc = _dict(sal.get("location"))
        addresses = _list(loc.get("addresses"))
        if not addresses:
            continue
        a = addresses[0]
        lines = [t for k in ("address_1", "address_2") if (t := text(a.get(k), f"address.{k}"))]
        fields["location"] = {
            "name": text(loc.get("name"), "location.name"),
            "address": lines,
            "town": text(a.get("city"), "address.city"),
            "region": text(a.get("region"), "address.region")
            or text(a.get("state_province"), "address.state_province"),
            "postcode": text(a.get("postal_code"), "address.postal_code", 16).upper(),
            "country": text(a.get("country"), "address.country").upper() or "GB",
        }
        break
    contacts: list[dict[str, Any]] = []
    phones_seen: set[str] = set()
    for c in _list(record.get("contacts")):
        phone = next(
            (p for p in (_clean_phone(x.get("number")) for x in _list(c.get("phones"))) if p), None
        )
        email = text(c.get("email"), "contacts.email", 254) or None
        if phone is None and email is None:
            continue
        # Organisational contacts only: the desk or team, never a person's name.
        label = text(c.get("department"), "contacts.department") or text(
            c.get("title"), "contacts.title"
        )
        contacts.append({"label": label, "phone": phone, "email": email})
        if phone:
            phones_seen.add(phone)
    for p in _list(record.get("phones")):
        phone = _clean_phone(p.get("number"))
        if phone and phone not in phones_seen:
            phones_seen.add(phone)
            contacts.append({"label": "", "phone": phone})
    fields["contacts"] = contacts
    return fields, text.cuts


def read_json_file(file: Path, *, limit: int = MAX_IMPORT_BYTES) -> object:
    """The JSON value in ``file`` (UTF-8, with or without a BOM, at most ``limit`` bytes).

    Exits 2 with one line naming the file for anything else: unreadable, too large, not
    UTF-8, not JSON, or nested too deeply to read.
    """
    try:
        with file.open("rb") as f:
            raw = f.read(limit + 1)  # never more than the limit, however large the file
    except OSError as e:
        fail(f"cannot read {file}: {e.strerror or e}", 2)
    if len(raw) > limit:
        fail(f"{file}: larger than {limit // (1024 * 1024)} MB, the most read at once; split it", 2)
    raw = raw.removeprefix(UTF8_BOM)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        fail(f"{file}: not UTF-8 (at byte {e.start}); save it as UTF-8", 2)
    try:
        return json.loads(text)
    except RecursionError:
        fail(f"{file}: not read, its JSON is nested too deeply", 2)
    except ValueError as e:
        fail(f"{file}: not JSON ({e})", 2)


def _hsds_records(file: Path, document: object) -> list[dict[str, Any]]:
    """Service records in an HSDS document: one service, a list, or an API page."""
    if isinstance(document, dict) and isinstance(document.get("contents"), list):
        document = document["contents"]
    if isinstance(document, dict):
        document = [document]
    if not isinstance(document, list):
        fail(f"{file}: expected an HSDS service, a list of services or a page with contents", 2)
    if len(document) > MAX_IMPORT_SERVICES:
        fail(
            f"{file}: {len(document):,} services, more than the {MAX_IMPORT_SERVICES:,} one "
            "import publishes; split the file",
            2,
        )
    for n, record in enumerate(document, 1):
        if not isinstance(record, dict):
            fail(f"{file} service {n}: expected a JSON object, not {_json_type(record)}", 2)
    return document


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "true or false", type(None): "null"}
    return names.get(type(value), "a number")


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
    """Publish the services of an HSDS 3.0 file as this hub's services.

    The file is UTF-8 JSON (a BOM is fine), at most 64 MB and 10,000 services. Text longer
    than hubnode keeps is cut, with a warning naming the service and field; a service id
    that repeats is published once, with a warning. Any other problem: one line, exit 2,
    nothing published.
    """
    if fmt != "hsds":
        fail(f"--format {fmt!r}: only hsds is supported", 2)
    for c in category or ():
        if c not in CATEGORIES:
            fail(f"--category {c!r}: use one of {', '.join(CATEGORIES)}", 2)
    records = _hsds_records(file, read_json_file(file))
    folder = folder_of(data)
    items: list[tuple[str, Body]] = []
    warnings: list[str] = []
    first_of: dict[str, int] = {}
    for n, record in enumerate(records, 1):
        fields, cuts = fields_from_hsds(
            record, organisation=org or folder.config.name, categories=category or []
        )
        named = f"{file} service {n} ({fields['id'] or 'no id'})"
        if fields["id"] in first_of:
            warnings.append(
                f"{named}: same id as service {first_of[fields['id']]}; published once, "
                f"as service {first_of[fields['id']]}"
            )
            continue
        if not fields["categories"]:
            fail(
                f"{named}: no category hubnode knows; "
                f"pass --category (one of {', '.join(CATEGORIES)})",
                2,
            )
        try:
            body = msgspec.convert(fields, ServicePublished)
        except msgspec.ValidationError as e:
            fail(f"{named}: {explain(str(e))}", 2)
        first_of[fields["id"]] = n
        warnings += [
            f"{named}: {cut.field} cut from {cut.length:,} to {cut.limit:,} characters"
            for cut in cuts
        ]
        items.append(("service.published", body))
    for line in warnings:
        err.print(f"warning: {line}", markup=False)
    seqs = _append(folder, items)
    for (_, published), seq in zip(items, seqs, strict=True):
        assert isinstance(published, ServicePublished)
        out.print(f"published service {published.id} (seq {seq})", markup=False)
