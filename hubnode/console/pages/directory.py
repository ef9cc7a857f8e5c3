"""The directory: search the network's services, one service with its capacity and what
people said of it, and the printable directory.

Search runs :class:`~hubnode.commands.directory.Search` (the filters of ``hubnode
directory search``) with each service's rating summary from the feedback view; the
printable directory is the page ``hubnode directory print`` writes, with its stylesheet
served as a file because the console's Content-Security-Policy forbids inline style.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

from starlette.responses import HTMLResponse, Response

from hubnode.casework import NotFound
from hubnode.commands.directory import Listing, Search, costs_text
from hubnode.commands.directory_print import PRINT_CSS, directory_html
from hubnode.console import reading
from hubnode.console.pages.referrals import ref_key
from hubnode.console.web import Ctx, page
from hubnode.events.directory import CATEGORIES, DAYS
from hubnode.events.ids import hub_display, parse_hub
from hubnode.projections.feedback import service_feedback, service_summaries

SHOWN: Final = 50
"""Services one search shows: a screenful; the count says how many more match."""
COMMENTS_SHOWN: Final = 10
"""The most recent comments a service page shows."""
DISTRICT: Final = re.compile(r"[A-Z]{1,2}[0-9][0-9A-Z]?")
DAY_NAMES: Final = dict(
    zip(
        DAYS,
        ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
        strict=True,
    )
)
CAPACITY_LABELS: Final = {
    "accepting": "Taking referrals",
    "waitlist": "Waiting list",
    "no-capacity": "No capacity",
}
PRINT_CSS_PATH: Final = "/directory/print.css"


def _district(ctx: Ctx, name: str) -> str | None:
    """The postcode district typed in ``name`` (upper case), None when left empty; an
    error next to the field when it is not one."""
    text = ctx.request.query_params.get(name, "").strip().upper()
    if not text:
        return None
    if not DISTRICT.fullmatch(text):
        ctx.errors[name] = "Enter a postcode district, such as DL1 or DL3"
        return None
    return text


@page("/directory", "view")
async def directory(ctx: Ctx) -> Response:
    cw, query = ctx.cw, ctx.request.query_params
    await cw.refresh()
    text = query.get("text", "").strip()
    category = query.get("category", "")
    if category and category not in CATEGORIES:
        ctx.errors["category"] = "Choose a kind of help from the list"
    area = _district(ctx, "area")
    free, open_now = query.get("free") == "yes", query.get("open") == "yes"
    found: list[Listing] = []
    total = 0
    if not ctx.errors:
        search = Search(
            text=text or None,
            categories=(category,) if category else (),
            area=area,
            free=free,
            # Services write their hours in local time, like the server's clock.
            open_at=dt.datetime.fromtimestamp(ctx.console.clock()) if open_now else None,
        )
        found, total = search.page(cw.views, SHOWN, ratings=True)
    known = reading.hubs(cw.views)
    return ctx.render(
        "directory.html",
        status=400 if ctx.errors else 200,
        title="Directory of services",
        text=text,
        category=category,
        area=query.get("area", "").strip(),
        free=free,
        open_now=open_now,
        categories=CATEGORIES,
        found=found,
        more=total - len(found),
        capacity_labels=CAPACITY_LABELS,
        costs_text=costs_text,
        name_of=lambda hub: reading.name_of(known, hub),
        hub_display=hub_display,
    )


@page("/directory/print", "view")
async def printable(ctx: Ctx) -> Response:
    await ctx.cw.refresh()
    area = _district(ctx, "area")
    if ctx.errors:
        raise NotFound("that is not a postcode district")
    found = Search(area=area).listings(ctx.cw.views)
    title = "Directory of services" + (f" in {area}" if area else "")
    return HTMLResponse(directory_html(found, title=title, stylesheet=PRINT_CSS_PATH))


@page("/directory/print.css", "view", locked=False)
async def printable_css(ctx: Ctx) -> Response:
    return Response(PRINT_CSS, media_type="text/css")


@page("/directory/{service}", "view")
async def service(ctx: Ctx) -> Response:
    cw = ctx.cw
    await cw.refresh()
    publisher, service_id = ref_key(str(ctx.request.path_params["service"]))
    listing = reading.service(cw.views, publisher, service_id)
    if listing is None:
        raise NotFound("that service is not in this hub's directory, or was withdrawn")
    comments = service_feedback(cw.views, publisher, service_id)
    comments.reverse()  # newest first
    known = reading.hubs(cw.views)
    return ctx.render(
        "service.html",
        title=listing.service.name,
        listing=listing,
        s=listing.service,
        rating=service_summaries(cw.views).get((publisher, service_id)),
        comments=comments[:COMMENTS_SHOWN],
        more_comments=max(0, len(comments) - COMMENTS_SHOWN),
        categories=CATEGORIES,
        capacity_labels=CAPACITY_LABELS,
        day_names=DAY_NAMES,
        costs_text=costs_text,
        publisher=reading.name_of(known, publisher),
        name_of=lambda shown: reading.name_of(known, _hub_of(shown)),
    )


def _hub_of(shown: str) -> bytes | None:
    """The hub a comment's display id names (None if malformed: shown by its id)."""
    try:
        return parse_hub(shown)
    except ValueError:
        return None


routes = [directory, printable, printable_css, service]
