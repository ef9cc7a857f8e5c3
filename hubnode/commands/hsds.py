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
from typing import Annotated, Any, Final

import msgspec
import typer

from hubnode.commands.common import DataOpt, fail, folder_of, out
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
            fail(f"{file} service {n} ({fields['id'] or 'no id'}): {explain(str(e))}", 2)
        items.append(("service.published", body))
    seqs = _append(folder, items)
    for (_, published), seq in zip(items, seqs, strict=True):
        assert isinstance(published, ServicePublished)
        out.print(f"published service {published.id} (seq {seq})", markup=False)
