"""Tender commands: share and follow tenders, form bid clusters, bid, award, export as OCDS.

``hubnode tender share|update|list|show|export``, ``hubnode tender watch add|list|remove|run``,
``hubnode cluster form|join|assign-lot``, ``hubnode bid submit``, ``hubnode award record``.
Commands check what they can against this hub's view before appending (a lot not in the
tender, a non-lead assigning lots, …): bad input is one line, exit 2, nothing appended.
Peers' events are judged by the projection (``hubnode/projections/tenders.py``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
import typer
from rich.table import Table

from hubnode.casework.inputs import InvalidInput
from hubnode.casework.tenders import (
    assign_lot,
    form_cluster,
    join_cluster,
    matches,
    submit_bid,
)
from hubnode.casework.tenders import (
    tenders as read_tenders,
)
from hubnode.commands.common import (
    DataOpt,
    JsonOpt,
    caught_up,
    fail,
    folder_of,
    out,
    print_json,
    run_async,
    shown,
)
from hubnode.commands.ocds import ocds_package, ocds_record_package
from hubnode.commands.tender_watch import watch_app
from hubnode.config import HubFolder
from hubnode.events.fields import explain
from hubnode.events.ids import parse_hub
from hubnode.events.kinds import KINDS, Body
from hubnode.projections.runner import ProjectionRunner
from hubnode.store.log import Appended, EventLog

T = TypeVar("T")


tender_app = typer.Typer(
    help="Tenders shared with the network (OCDS-shaped): share, update, list, show, export.",
    no_args_is_help=True,
)
cluster_app = typer.Typer(help="Bid clusters: hubs bidding for a tender together.")
bid_app = typer.Typer(help="Bids of clusters.", no_args_is_help=True)
award_app = typer.Typer(help="Awards of tenders this hub shared.", no_args_is_help=True)
tender_app.add_typer(watch_app, name="watch")
cluster_app.info.no_args_is_help = True


def register(app: typer.Typer) -> None:
    app.add_typer(tender_app, name="tender")
    app.add_typer(cluster_app, name="cluster")
    app.add_typer(bid_app, name="bid")
    app.add_typer(award_app, name="award")


# -- appending ----------------------------------------------------------------------------


def _body(kind: str, fields: dict[str, Any]) -> Body:
    """Validate ``fields`` as a body of ``kind``; exit 2 naming the bad field."""
    spec = KINDS.spec(kind)
    try:
        body: Body = msgspec.convert(fields, spec.body)
    except (msgspec.ValidationError, ValueError) as e:
        fail(f"{kind}: {explain(str(e))}", 2)
    return body


def _append(folder: HubFolder, kind: str, body: Body) -> None:
    async def append() -> None:
        async with await folder.open_log() as log:
            done = await log.append(kind, body)
        out.print(f"appended {kind} seq {done.seq} id {done.id.hex()}")

    run_async(append())


def _date(field: str, text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        fail(f"--{field} {text!r} is not a date; write it as YYYY-MM-DD", 2)


def _hub_text(field: str, text: str) -> str:
    try:
        parse_hub(text)
    except ValueError as e:
        fail(f"--{field}: {e}", 2)
    return text.strip()


def _lot(text: str, currency: str) -> dict[str, Any]:
    parts = text.split(":")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        fail(f"--lot {text!r}: write it as ID:TITLE or ID:TITLE:AMOUNT", 2)
    lot: dict[str, Any] = {"id": parts[0], "title": ":".join(parts[1:])}
    if len(parts) > 2:
        try:
            amount = float(parts[-1])
        except ValueError:
            return lot
        lot = {"id": parts[0], "title": ":".join(parts[1:-1]), "value": _value(amount, currency)}
    return lot


def _document(text: str) -> dict[str, str]:
    title, sep, url = text.partition("=")
    if not sep or not title:
        fail(f"--document {text!r}: write it as TITLE=URL", 2)
    return {"title": title, "url": url}


def _value(amount: float, currency: str) -> dict[str, Any]:
    return {"amount": amount, "currency": currency.upper()}


# -- reading the view -----------------------------------------------------------------------


def _view(data: Path) -> tuple[HubFolder, list[dict[str, Any]]]:
    folder = folder_of(data)
    runner = caught_up(folder)
    try:
        return folder, read_tenders(runner)
    finally:
        runner.close()


def _find(tenders: list[dict[str, Any]], ocid: str) -> dict[str, Any]:
    for t in tenders:
        if t["ocid"] == ocid:
            return t
    fail(f"no tender {ocid!r} in this hub's view; see `hubnode tender list`", 2)


def _check_lots(tender: dict[str, Any], lots: list[str]) -> None:
    known = [lot["id"] for lot in tender["lots"]]
    for lot in lots:
        if lot not in known:
            fail(
                f"--lot {lot!r} is not in tender {tender['ocid']}; its lots are "
                f"{', '.join(known) or 'none'}",
                2,
            )


# -- tender share | update | list | show ---------------------------------------------------


LotOpt = Annotated[
    list[str] | None,
    typer.Option("--lot", help="A lot as ID:TITLE or ID:TITLE:AMOUNT (repeat for more)."),
]
DocOpt = Annotated[
    list[str] | None, typer.Option("--document", help="A document link as TITLE=URL (repeat).")
]
CategoryOpt = Annotated[
    list[str] | None, typer.Option("--category", help="A category tag, e.g. care (repeat).")
]
AreaOpt = Annotated[
    list[str] | None, typer.Option("--area", help="A postcode district, e.g. DL1 (repeat).")
]


@tender_app.command("share")
def tender_share(
    data: DataOpt,
    title: Annotated[str, typer.Option(help="The tender's title.")],
    buyer: Annotated[str, typer.Option(help="The buyer's name, e.g. Darlington Borough Council.")],
    amount: Annotated[float, typer.Option(help="The tender's estimated value.")],
    end: Annotated[str, typer.Option(help="Last day of the tender period (YYYY-MM-DD).")],
    currency: Annotated[str, typer.Option(help="ISO 4217 currency code.")] = "GBP",
    start: Annotated[
        str | None, typer.Option(help="First day of the tender period (default today).")
    ] = None,
    description: Annotated[str, typer.Option(help="What the tender is for.")] = "",
    ocid: Annotated[
        str | None, typer.Option(help="The ocid (default ocds-hubnode-<hub>-<n>).")
    ] = None,
    lot: LotOpt = None,
    document: DocOpt = None,
    category: CategoryOpt = None,
    area: AreaOpt = None,
) -> None:
    """Share a tender with the network."""
    folder, tenders = _view(data)
    today = date.today().isoformat()
    if _date("end", end) < today:
        fail(f"--end {end} is in the past; the tender period must end today or later", 2)
    if amount < 0:
        fail(f"--amount {amount} is negative; give the value as 0 or more", 2)
    if ocid is None:
        prefix = f"ocds-hubnode-{folder.config.hub_id[4:12]}-"
        taken = {t["ocid"] for t in tenders}
        n = 1 + sum(1 for t in tenders if t["ocid"].startswith(prefix))
        while f"{prefix}{n}" in taken:
            n += 1
        ocid = f"{prefix}{n}"
    elif any(t["ocid"] == ocid for t in tenders):
        fail(f"--ocid {ocid} is already shared; choose another ocid", 2)
    body = _body(
        "tender.shared",
        {
            "ocid": ocid,
            "title": title,
            "description": description,
            "buyer": buyer,
            "value": _value(amount, currency),
            "period": {"start": _date("start", start) if start else today, "end": end},
            "lots": [_lot(x, currency) for x in lot or []],
            "documents": [_document(x) for x in document or []],
            "categories": category or [],
            "area": [a.upper() for a in area or []],
        },
    )
    _append(folder, "tender.shared", body)
    out.print(f"shared {ocid}")


@tender_app.command("update")
def tender_update(
    data: DataOpt,
    ocid: Annotated[str, typer.Argument(help="The tender to change (this hub shared it).")],
    title: Annotated[str | None, typer.Option(help="A new title.")] = None,
    description: Annotated[str | None, typer.Option(help="A new description.")] = None,
    buyer: Annotated[str | None, typer.Option(help="A new buyer name.")] = None,
    amount: Annotated[float | None, typer.Option(help="A new value (same currency).")] = None,
    end: Annotated[str | None, typer.Option(help="A new last day (YYYY-MM-DD).")] = None,
    status: Annotated[
        str | None, typer.Option(help="active, cancelled, unsuccessful, complete, withdrawn.")
    ] = None,
    lot: LotOpt = None,
    document: DocOpt = None,
    category: CategoryOpt = None,
    area: AreaOpt = None,
) -> None:
    """Change a tender this hub shared; options left out stay as they were."""
    folder, tenders = _view(data)
    tender = _find(tenders, ocid)
    if tender["hub"] != folder.config.hub_id:
        fail(f"tender {ocid} was shared by {tender['hub']}; only that hub may update it", 2)
    currency = tender["value"]["currency"]
    fields: dict[str, Any] = {"ocid": ocid}
    for name, value in (("title", title), ("description", description), ("buyer", buyer)):
        if value is not None:
            fields[name] = value
    if amount is not None:
        fields["value"] = _value(amount, currency)
    if end is not None:
        fields["period"] = {"start": tender["period"]["start"], "end": _date("end", end)}
    if status is not None:
        fields["status"] = status
    if lot:
        fields["lots"] = [_lot(x, currency) for x in lot]
    if document:
        fields["documents"] = [_document(x) for x in document]
    if category:
        fields["categories"] = category
    if area:
        fields["area"] = [a.upper() for a in area]
    _append(folder, "tender.updated", _body("tender.updated", fields))


@tender_app.command("list")
def tender_list(
    data: DataOpt,
    category: Annotated[str | None, typer.Option(help="Only tenders with this category.")] = None,
    area: Annotated[str | None, typer.Option(help="Only tenders in this district.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The tenders shared with the network, as this hub sees them."""
    _, tenders = _view(data)
    watch = {"category": category, "area": area, "min_value": None, "max_value": None}
    listed = [t for t in tenders if matches(watch, t)]
    if as_json:
        print_json(listed)
        return
    table = Table("ocid", "title", "buyer", "value", "ends", "status", "lots", "clusters")
    for t in listed:
        table.add_row(
            t["ocid"],
            t["title"],
            t["buyer"],
            f"{t['value']['amount']} {t['value']['currency']}",
            t["period"]["end"],
            t["status"],
            str(len(t["lots"])),
            str(len(t["clusters"])),
        )
    out.print(table)


@tender_app.command("show")
def tender_show(
    data: DataOpt,
    ocid: Annotated[str, typer.Argument(help="The tender's ocid.")],
    as_json: JsonOpt = False,
) -> None:
    """One tender with its lots, clusters, assignments, bids and awards."""
    _, tenders = _view(data)
    t = _find(tenders, ocid)
    if as_json:
        print_json(t)
        return
    out.print(f"{t['ocid']}: {shown(t['title'])} ({t['status']})")
    out.print(f"  shared by {t['hub']}; buyer {shown(t['buyer'])}")
    out.print(f"  value {t['value']['amount']} {t['value']['currency']}")
    out.print(f"  period {t['period']['start']} to {t['period']['end']}")
    if t["categories"] or t["area"]:
        out.print(f"  categories {', '.join(t['categories'])}; area {', '.join(t['area'])}")
    for lot in t["lots"]:
        value = f" ({lot['value']['amount']} {lot['value']['currency']})" if lot["value"] else ""
        out.print(f"  lot {lot['id']}: {shown(lot['title'])}{value}")
    for d in t["documents"]:
        out.print(f"  document {shown(d['title'])}: {shown(d['url'])}")
    for c in t["clusters"]:
        out.print(f"  cluster {c['cluster']} led by {c['lead']}: {len(c['members'])} members")
        for m in c["members"]:
            out.print(f"    member {m}")
        for lot_id, member in c["assignments"].items():
            out.print(f"    lot {lot_id} -> {member}")
        for b in c["bids"]:
            value = f"{b['value']['amount']} {b['value']['currency']}"
            out.print(f"    bid for {', '.join(b['lots'])}: {value}")
    for a in t["awards"]:
        who = (
            shown(a["supplier"]) if a["supplier"] else f"cluster {a['cluster']} led by {a['lead']}"
        )
        lots = f" lots {', '.join(a['lots'])}" if a["lots"] else ""
        out.print(f"  award to {who}{lots}: {a['value']['amount']} {a['value']['currency']}")


# -- clusters, bids, awards ------------------------------------------------------------------


async def _acting(
    folder: HubFolder, action: Callable[[EventLog, ProjectionRunner], Awaitable[T]]
) -> T:
    """Run one casework ``action`` over this hub's log and caught-up views; a refusal exits
    with status 2, naming the option."""
    runner = caught_up(folder)
    try:
        async with await folder.open_log() as log:
            return await action(log, runner)
    except InvalidInput as e:
        fail(str(e), 2)
    finally:
        runner.close()


def _appended(kind: str, done: Appended) -> None:
    out.print(f"appended {kind} seq {done.seq} id {done.id.hex()}")


@cluster_app.command("form")
def cluster_form(
    data: DataOpt,
    tender: Annotated[str, typer.Option(help="The tender's ocid.")],
    lot: Annotated[
        list[str] | None, typer.Option("--lot", help="A lot the cluster seeks (repeat).")
    ] = None,
    cluster: Annotated[
        str | None, typer.Option("--id", help="The cluster id (default c<n>), unique per lead.")
    ] = None,
) -> None:
    """Form a bid cluster for a tender, led by this hub."""
    folder = folder_of(data)
    formed, done = run_async(
        _acting(folder, lambda log, v: form_cluster(folder, log, v, tender, lot or [], cluster))
    )
    _appended("cluster.formed", done)
    out.print(f"formed cluster {formed} (lead {folder.config.hub_id})")


LeadOpt = Annotated[str, typer.Option(help="The cluster's lead hub (hub:… id).")]
ClusterOpt = Annotated[str, typer.Option(help="The cluster id.")]


@cluster_app.command("join")
def cluster_join(data: DataOpt, lead: LeadOpt, cluster: ClusterOpt) -> None:
    """Join a cluster another hub leads."""
    folder = folder_of(data)
    done = run_async(_acting(folder, lambda log, v: join_cluster(folder, log, v, lead, cluster)))
    _appended("cluster.joined", done)


@cluster_app.command("assign-lot")
def cluster_assign_lot(
    data: DataOpt,
    cluster: ClusterOpt,
    lot: Annotated[str, typer.Option(help="The lot of the tender.")],
    member: Annotated[str, typer.Option(help="The member hub (hub:… id) that takes it.")],
    lead: Annotated[str | None, typer.Option(help="The cluster's lead (default this hub).")] = None,
) -> None:
    """Assign a lot to a member of a cluster this hub leads."""
    folder = folder_of(data)
    done = run_async(
        _acting(folder, lambda log, v: assign_lot(folder, log, v, cluster, lot, member, lead))
    )
    _appended("lot.assigned", done)


@bid_app.command("submit")
def bid_submit(
    data: DataOpt,
    cluster: ClusterOpt,
    lot: Annotated[list[str], typer.Option("--lot", help="A lot bid for (repeat).")],
    amount: Annotated[float, typer.Option(help="The bid's amount.")],
    currency: Annotated[str, typer.Option(help="ISO 4217 currency code.")] = "GBP",
    lead: Annotated[str | None, typer.Option(help="The cluster's lead (default this hub).")] = None,
) -> None:
    """Submit the bid of a cluster this hub leads."""
    folder = folder_of(data)
    done = run_async(
        _acting(
            folder,
            lambda log, v: submit_bid(folder, log, v, cluster, lot, amount, currency, lead),
        )
    )
    _appended("bid.submitted", done)


@award_app.command("record")
def award_record(
    data: DataOpt,
    tender: Annotated[str, typer.Option(help="The tender's ocid (this hub shared it).")],
    amount: Annotated[float, typer.Option(help="The awarded amount.")],
    lot: Annotated[list[str] | None, typer.Option("--lot", help="A lot awarded (repeat).")] = None,
    cluster: Annotated[str | None, typer.Option(help="The winning cluster's id.")] = None,
    lead: Annotated[str | None, typer.Option(help="The winning cluster's lead.")] = None,
    supplier: Annotated[str | None, typer.Option(help="The winner, if not a cluster.")] = None,
    currency: Annotated[str, typer.Option(help="ISO 4217 currency code.")] = "GBP",
    awarded_on: Annotated[str | None, typer.Option(help="Award date (YYYY-MM-DD).")] = None,
) -> None:
    """Record the award of a tender this hub shared: to a cluster or a supplier."""
    folder, tenders = _view(data)
    t = _find(tenders, tender)
    if t["hub"] != folder.config.hub_id:
        fail(f"tender {tender} was shared by {t['hub']}; only that hub may record its award", 2)
    _check_lots(t, lot or [])
    if (cluster is None) == (supplier is None):
        fail("give either --cluster with --lead, or --supplier", 2)
    if cluster is not None:
        if lead is None:
            fail("--cluster needs --lead, the hub that leads it", 2)
        lead = _hub_text("lead", lead)
        if not any(c["lead"] == lead and c["cluster"] == cluster for c in t["clusters"]):
            fail(f"--cluster {cluster!r} of {lead} is not a cluster for {tender}", 2)
    fields: dict[str, Any] = {
        "tender": tender,
        "lead": lead,
        "cluster": cluster,
        "supplier": supplier,
        "lots": lot or [],
        "value": _value(amount, currency),
    }
    if awarded_on is not None:
        fields["awarded_on"] = _date("awarded-on", awarded_on)
    _append(folder, "award.recorded", _body("award.recorded", fields))


@tender_app.command("export")
def tender_export(
    data: DataOpt,
    out_file: Annotated[Path, typer.Option("--out", "-o", help="The JSON file to write.")],
    format_: Annotated[str, typer.Option("--format", help="Only ocds for now.")] = "ocds",
    package_type: Annotated[
        str,
        typer.Option(
            "--package",
            help="release: one release per tender; record: one record per ocid with its "
            "releases and compiled release.",
        ),
    ] = "release",
) -> None:
    """Write the tenders as an OCDS 1.1 release or record package (lots extension)."""
    if format_ != "ocds":
        fail(f"--format {format_!r} is not known; use --format ocds", 2)
    if package_type not in ("release", "record"):
        fail(f"--package {package_type!r} is not known; use --package release or record", 2)
    folder, tenders = _view(data)
    if not tenders:
        fail(f"no tenders in this hub's view: an OCDS {package_type} package needs at least one")
    make = ocds_record_package if package_type == "record" else ocds_package
    package = make(tenders, folder.config.name, f"urn:hubnode:{folder.config.hub_id}")
    tmp = out_file.with_name(out_file.name + ".tmp")
    tmp.write_text(json.dumps(package, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out_file)
    out.print(f"wrote {len(tenders)} {package_type}s to {out_file}")
