"""Closing the loop: follow-ups due, recording one (offering advocacy when the person was
not satisfied), and advocacy cases — open, close, list (docs/pathway.md)."""

from __future__ import annotations

from typing import Final

from starlette.responses import Response

from hubnode.casework import InvalidInput
from hubnode.console import reading
from hubnode.console.pages.labels import OUTCOME_LABELS, STATUS_LABELS, options
from hubnode.console.pages.referrals import ref_key, referral_page
from hubnode.console.web import Ctx, page, plain, urlpart
from hubnode.events.ids import hub_display
from hubnode.events.pathway import ADVOCACY_OUTCOMES
from hubnode.projections.pathway_read import DAY_MS, followups_due

SOON_DAYS: Final = 7


@page("/followups", "view")
async def followups(ctx: Ctx) -> Response:
    cw, config = ctx.cw, ctx.console.folder.config
    await cw.refresh()
    now_ms = ctx.console.now_ms()
    due = followups_due(
        cw.views, ctx.me, now_ms + SOON_DAYS * DAY_MS, config.followup_days, config.answer_days
    )
    known = reading.hubs(cw.views)
    return ctx.render(
        "followups.html",
        title="Follow-ups",
        overdue=[d for d in due if d.due <= now_ms],
        coming=[d for d in due if d.due > now_ms],
        soon_days=SOON_DAYS,
        statuses=STATUS_LABELS,
        config=config,
        now_ms=now_ms,
        name_of=lambda hub: reading.name_of(known, hub),
    )


def _followup_form(ctx: Ctx, text: str, status: int = 200) -> Response:
    cw = ctx.cw
    r = cw.find_referral(ref_key(text))
    cw.require_involved(r, "follow up")
    known = reading.hubs(cw.views)
    return ctx.render(
        "followup.html",
        status=status,
        title="Record a follow-up",
        r=r,
        statuses=STATUS_LABELS,
        name_of=lambda hub: reading.name_of(known, hub),
    )


@page("/referrals/{ref}/follow-up", "follow-up")
async def followup_form(ctx: Ctx) -> Response:
    await ctx.cw.refresh()
    return _followup_form(ctx, str(ctx.request.path_params["ref"]))


@page("/referrals/{ref}/follow-up", "follow-up", methods=("POST",))
async def followup_record(ctx: Ctx) -> Response:
    text = str(ctx.request.path_params["ref"])
    await ctx.cw.refresh()
    satisfied = {"yes": True, "no": False}.get(ctx.value("satisfied"))
    if satisfied is None:
        ctx.errors["satisfied"] = "Say whether the person was satisfied"
        return _followup_form(ctx, text, 400)
    advocacy = ctx.value("advocacy") == "yes" and ctx.can("open-advocacy")
    try:
        with ctx.cw.acting(ctx.account.pseudonym) as cw:
            done = await cw.record_followup(
                ref_key(text), satisfied, ctx.value("note"), advocacy=advocacy
            )
    except InvalidInput as e:
        ctx.errors["note"] = plain(str(e))
        return _followup_form(ctx, text, 400)
    flash = "Follow-up recorded."
    if done.case is not None:
        flash += f" Advocacy case {done.case} opened."
    elif not satisfied:
        flash += " The person was not satisfied: you can open an advocacy case below."
    return ctx.redirect(f"/referrals/{urlpart(text)}", flash)


# -- advocacy ---------------------------------------------------------------------------


def _cases(ctx: Ctx, status: int = 200) -> Response:
    cw = ctx.cw
    everything = ctx.request.query_params.get("all") == "1"
    known = reading.hubs(cw.views)
    return ctx.render(
        "advocacy.html",
        status=status,
        title="Advocacy",
        cases=cw.advocacy_cases(ctx.me, closed=everything),
        everything=everything,
        outcome_options=options(OUTCOME_LABELS),
        name_of=lambda hub: reading.name_of(known, hub),
        hub_display=hub_display,
    )


@page("/advocacy", "view")
async def advocacy(ctx: Ctx) -> Response:
    await ctx.cw.refresh()
    return _cases(ctx)


@page("/advocacy/open", "open-advocacy", methods=("POST",))
async def advocacy_open(ctx: Ctx) -> Response:
    text = ctx.value("ref")
    key = ref_key(text)
    await ctx.cw.refresh()
    try:
        with ctx.cw.acting(ctx.account.pseudonym) as cw:
            opened = await cw.open_advocacy(key, ctx.value("note"))
    except InvalidInput as e:
        ctx.errors["advocacy-note"] = plain(str(e))
        return referral_page(ctx, key, 400)
    return ctx.redirect(f"/referrals/{urlpart(text)}", f"Advocacy case {opened.case} opened.")


@page("/advocacy/{case}/close", "close-advocacy", methods=("POST",))
async def advocacy_close(ctx: Ctx) -> Response:
    case = str(ctx.request.path_params["case"])
    await ctx.cw.refresh()
    outcome = ctx.value("outcome")
    if outcome not in ADVOCACY_OUTCOMES:
        ctx.errors[f"outcome-{case}"] = "Choose how the case ended"
        return _cases(ctx, 400)
    try:
        with ctx.cw.acting(ctx.account.pseudonym) as cw:
            await cw.close_advocacy(case, outcome, ctx.value("note"))
    except InvalidInput as e:
        ctx.errors[f"note-{case}"] = plain(str(e))
        return _cases(ctx, 400)
    return ctx.redirect("/advocacy", f"Advocacy case {case} closed.")


routes = [followups, followup_form, followup_record, advocacy, advocacy_open, advocacy_close]
