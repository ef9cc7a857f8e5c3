"""Tenders: the tenders shared with the network with this hub's watches, one tender with
its lots, bid clusters and awards; adding or removing a watch; joining a cluster, and
forming one, assigning its lots and submitting its bid as its lead.

The forms act through :mod:`hubnode.casework.tenders`, the same rules as ``hubnode tender
watch add|remove``, ``hubnode cluster form|join|assign-lot`` and ``hubnode bid submit``; a
refusal is shown next to its field.
"""

from __future__ import annotations

import re
from typing import Any, Final

from starlette.responses import Response

from hubnode.casework import InvalidInput, NotFound
from hubnode.casework.tenders import (
    add_watch,
    assign_lot,
    form_cluster,
    join_cluster,
    load_watches,
    matches,
    remove_watch,
    submit_bid,
    tenders,
)
from hubnode.console import reading
from hubnode.console.web import Ctx, page, plain, urlpart
from hubnode.events.directory import CATEGORIES
from hubnode.events.ids import parse_hub

AREA: Final = re.compile(r"[A-Z]{1,2}[0-9]?[0-9A-Z]?")
"""A postcode area (``DL``) or district (``DL1``): a watch matches districts starting so."""
STATUS_LABELS: Final = {
    "planning": "Being planned",
    "active": "Open for bids",
    "cancelled": "Cancelled",
    "unsuccessful": "Not awarded",
    "complete": "Awarded",
    "withdrawn": "Withdrawn",
}
WATCH_REFUSALS: Final = {
    "watch": ("category", "Choose at least one of a kind of work, an area or an amount"),
    "min-value": ("min_value", "Enter 0 or more"),
    "max-value": ("max_value", "Enter an amount no smaller than the 'at least' amount"),
}
"""A refusal of :func:`add_watch` (by field) → the form's field and what to say there."""


def _name_of(ctx: Ctx) -> Any:
    known = reading.hubs(ctx.cw.views)

    def name_of(shown: str) -> str:
        try:
            return reading.name_of(known, parse_hub(shown))
        except ValueError:
            return shown

    return name_of


# -- the list and watches ----------------------------------------------------------------


def _kinds(found: list[dict[str, Any]]) -> dict[str, str]:
    """Kinds of work a watch may name: the directory's categories and any tag a shared
    tender carries (tenders may use tags of their own)."""
    tags = {c for t in found for c in t["categories"]} - set(CATEGORIES)
    return {**CATEGORIES, **{tag: tag.replace("-", " ").capitalize() for tag in sorted(tags)}}


def _list_page(ctx: Ctx, status: int = 200) -> Response:
    watches = load_watches(ctx.console.folder)["watches"]
    found = tenders(ctx.cw.views)
    found.sort(key=lambda t: (t["period"]["end"] or "", t["ocid"]), reverse=True)
    return ctx.render(
        "tenders.html",
        status=status,
        title="Tenders",
        tenders=[(t, [w["id"] for w in watches if matches(w, t)]) for t in found],
        watches=watches,
        categories=_kinds(found),
        statuses=STATUS_LABELS,
    )


@page("/tenders", "view")
async def tender_list(ctx: Ctx) -> Response:
    await ctx.cw.refresh()
    return _list_page(ctx)


def _amount(ctx: Ctx, name: str) -> float | None:
    text = ctx.value(name).replace(",", "")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        ctx.errors[name] = "Enter an amount in pounds, such as 50000"
        return None


@page("/tenders/watch", "watch-tenders", methods=("POST",))
async def watch(ctx: Ctx) -> Response:
    await ctx.cw.refresh()
    category, area = ctx.value("category") or None, ctx.value("area").upper() or None
    if category is not None and category not in _kinds(tenders(ctx.cw.views)):
        ctx.errors["category"] = "Choose a kind of work from the list"
    if area is not None and not AREA.fullmatch(area):
        ctx.errors["area"] = "Enter a postcode area or district, such as DL or DL1"
    low, high = _amount(ctx, "min_value"), _amount(ctx, "max_value")
    if ctx.errors:
        return _list_page(ctx, 400)
    try:
        added = add_watch(
            ctx.console.folder, category=category, area=area, min_value=low, max_value=high
        )
    except InvalidInput as e:
        field, message = WATCH_REFUSALS.get(e.field, ("category", plain(str(e))))
        ctx.errors[field] = message
        return _list_page(ctx, 400)
    return ctx.redirect("/tenders", f"Watch {added['id']} added: matching tenders show on Today.")


@page("/tenders/unwatch", "watch-tenders", methods=("POST",))
async def unwatch(ctx: Ctx) -> Response:
    await ctx.cw.refresh()
    text = ctx.value("watch")
    try:
        remove_watch(ctx.console.folder, int(text) if text.isdigit() else -1)
    except InvalidInput:
        ctx.errors["watches"] = "That watch is not one of this hub's; it may be removed already"
        return _list_page(ctx, 400)
    return ctx.redirect("/tenders", f"Watch {text} removed.")


# -- one tender --------------------------------------------------------------------------


def _tender_page(ctx: Ctx, ocid: str, status: int = 200) -> Response:
    found = tenders(ctx.cw.views, ocid)
    if not found:
        raise NotFound("that tender is not in this hub's view")
    t = found[0]
    titles = {lot["id"]: lot["title"] for lot in t["lots"]}

    def lot_options(ids: list[str]) -> list[tuple[str, str, None]]:
        """Lots as the form macros take them: (value, label, no hint)."""
        return [(i, f"{titles.get(i, i)} (lot {i})", None) for i in ids]

    return ctx.render(
        "tender.html",
        lot_options=lot_options,
        status=status,
        title=t["title"],
        t=t,
        me=ctx.console.folder.config.hub_id,
        categories=CATEGORIES,
        statuses=STATUS_LABELS,
        name_of=_name_of(ctx),
    )


@page("/tenders/join", "join-cluster", methods=("POST",))
async def join(ctx: Ctx) -> Response:
    await ctx.cw.refresh()
    ocid, lead, cluster = ctx.value("ocid"), ctx.value("lead"), ctx.value("cluster")
    try:
        await join_cluster(
            ctx.console.folder,
            ctx.cw.log,
            ctx.cw.views,
            lead,
            cluster,
            staff=ctx.account.pseudonym,
        )
    except InvalidInput as e:
        ctx.errors["clusters"] = plain(str(e).replace("--lead is this hub", "This hub leads it"))
        return _tender_page(ctx, ocid, 400)
    return ctx.redirect(
        f"/tenders/{urlpart(ocid)}",
        f"This hub joined the bid cluster {cluster}: its lead sees it once the nodes sync.",
    )


def _refusal(ctx: Ctx, e: InvalidInput) -> str:
    """A refusal in the page's words: without the command-line option it names, and with
    "this hub" for this hub's id."""
    text = str(e).replace(ctx.console.folder.config.hub_id, "this hub")
    return plain(re.sub(r"--([a-z-]+) ", r"\1 ", text))


@page("/tenders/form", "lead-cluster", methods=("POST",))
async def form(ctx: Ctx) -> Response:
    await ctx.cw.refresh()
    ocid = ctx.value("ocid")
    try:
        formed, _ = await form_cluster(
            ctx.console.folder,
            ctx.cw.log,
            ctx.cw.views,
            ocid,
            ctx.values("lots"),
            ctx.value("cluster") or None,
            staff=ctx.account.pseudonym,
        )
    except InvalidInput as e:
        if e.field == "tender":
            raise NotFound("that tender is not in this hub's view") from None
        ctx.errors["cluster"] = _refusal(ctx, e)
        return _tender_page(ctx, ocid, 400)
    return ctx.redirect(
        f"/tenders/{urlpart(ocid)}",
        f"This hub formed the bid cluster {formed}: other hubs may join it.",
    )


@page("/tenders/assign", "lead-cluster", methods=("POST",))
async def assign(ctx: Ctx) -> Response:
    await ctx.cw.refresh()
    ocid, cluster, lot = ctx.value("ocid"), ctx.value("cluster"), ctx.value("lot")
    try:
        await assign_lot(
            ctx.console.folder,
            ctx.cw.log,
            ctx.cw.views,
            cluster,
            lot,
            ctx.value("member"),
            staff=ctx.account.pseudonym,
        )
    except InvalidInput as e:
        ctx.errors["clusters"] = _refusal(ctx, e)
        return _tender_page(ctx, ocid, 400)
    return ctx.redirect(f"/tenders/{urlpart(ocid)}", f"Lot {lot} assigned in cluster {cluster}.")


@page("/tenders/bid", "lead-cluster", methods=("POST",))
async def bid(ctx: Ctx) -> Response:
    await ctx.cw.refresh()
    ocid, cluster = ctx.value("ocid"), ctx.value("cluster")
    amount = _amount(ctx, "amount")
    if amount is None:  # empty or not a number: said above the clusters, where forms are
        ctx.errors.pop("amount", None)
        ctx.errors["clusters"] = "Enter the bid's amount in pounds, such as 50000"
        return _tender_page(ctx, ocid, 400)
    try:
        await submit_bid(
            ctx.console.folder,
            ctx.cw.log,
            ctx.cw.views,
            cluster,
            ctx.values("lots"),
            amount,
            staff=ctx.account.pseudonym,
        )
    except InvalidInput as e:
        ctx.errors["clusters"] = _refusal(ctx, e)
        return _tender_page(ctx, ocid, 400)
    return ctx.redirect(f"/tenders/{urlpart(ocid)}", f"Bid of cluster {cluster} submitted.")


@page("/tenders/{ocid:path}", "view")
async def tender(ctx: Ctx) -> Response:
    await ctx.cw.refresh()
    return _tender_page(ctx, str(ctx.request.path_params["ocid"]))


routes = [tender_list, watch, unwatch, join, form, assign, bid, tender]
