"""The "today" page — what needs doing at this hub now — and the network page."""

from __future__ import annotations

from starlette.responses import Response

from hubnode.casework.tenders import load_watches, watch_matches
from hubnode.console import reading
from hubnode.console.pages.labels import STATUS_LABELS
from hubnode.console.web import Ctx, page
from hubnode.errors import ConfigError
from hubnode.events.lifecycle import RECEIVING
from hubnode.node import read_status
from hubnode.projections.pathway_read import DAY_MS, claimable, followups_due, referrals

SOON_DAYS = 2
"""Follow-ups due within this many days are listed as coming up."""


@page("/", "view")
async def today(ctx: Ctx) -> Response:
    cw, me, now = ctx.cw, ctx.me, ctx.console.clock()
    await cw.refresh()
    config = ctx.console.folder.config
    status = read_status(ctx.console.folder)
    hubs = await reading.network(cw.views, cw.log, status, now)
    warnings = reading.warnings(me, hubs, reading.node_state(status, now), now)
    now_ms = ctx.console.now_ms()
    new = referrals(cw.views, hub=me, role=RECEIVING, status="requested")
    open_ = claimable(cw.views, me)
    due = followups_due(
        cw.views, me, now_ms + SOON_DAYS * DAY_MS, config.followup_days, config.answer_days
    )
    overdue = [d for d in due if d.due <= now_ms]
    try:
        watches = load_watches(ctx.console.folder)["watches"]
    except ConfigError:  # the rest of today still matters more than the watches
        warnings.append(
            "This hub's tender watches cannot be read: ask whoever looks after the server "
            "to check the file tender-watches.json in the hub's folder."
        )
        watches = []
    coming = [d for d in due if d.due > now_ms]
    return ctx.render(
        "today.html",
        title="Today",
        warnings=warnings,
        new=new,
        claimable=open_,
        overdue=overdue,
        coming=coming,
        open_cases=len(cw.advocacy_cases(me)),
        watching=bool(watches),
        tenders=watch_matches(cw.views, watches),
        names={h.id: h.name for h in hubs},
        statuses=STATUS_LABELS,
        now_ms=now_ms,
    )


@page("/network", "view")
async def network(ctx: Ctx) -> Response:
    cw, now = ctx.cw, ctx.console.clock()
    await cw.refresh()
    status = read_status(ctx.console.folder)
    hubs = await reading.network(cw.views, cw.log, status, now)
    state = reading.node_state(status, now)
    return ctx.render(
        "network.html",
        title="The network",
        hubs=hubs,
        state=state,
        names={h.id: h.name for h in hubs},
        me=ctx.me,
        now=now,
    )


routes = [today, network]
