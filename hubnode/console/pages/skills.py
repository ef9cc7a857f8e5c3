"""Skills and time credits: the network's open offers and requests and their matches;
offering or asking for a skill, withdrawing one of this hub's; this hub's time balance,
proposing a transfer, confirming one addressed to this hub and reversing a confirmed one.

Every form acts through :class:`~hubnode.casework.skills.Skills`, the same rules as
``hubnode skills …`` and ``hubnode time …``; a refusal is shown next to its field.
"""

from __future__ import annotations

import re
from typing import Final

from starlette.responses import Response

from hubnode.casework import InvalidInput
from hubnode.casework.skills import Skills
from hubnode.console import reading
from hubnode.console.web import Ctx, page, plain
from hubnode.events.ids import hub_display, parse_hub

SHOWN: Final = 50
"""Offers, requests and matches each list at most this many, newest first."""

ITEM_FIELDS: Final = ("title", "tags", "area", "description", "hours", "needed_by")
TIME_FIELDS: Final = ("direction", "hub", "hours", "memo")


def _skills(ctx: Ctx) -> Skills:
    return Skills(ctx.console.folder, ctx.cw.log, ctx.cw.views, staff=ctx.account.pseudonym)


def hours_text(seconds: int) -> str:
    """``-2 h 30 min`` for people, from seconds."""
    sign = "-" if seconds < 0 else ""
    minutes = abs(seconds) // 60
    hours, rest = divmod(minutes, 60)
    return f"{sign}{hours} h" + (f" {rest:02d} min" if rest else "")


def _number(ctx: Ctx, name: str, label: str) -> float | None:
    """The number typed in ``name`` (None when empty); an error next to it if not one."""
    text = ctx.value(name).replace(",", ".")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        ctx.errors[name] = f"Enter the {label} as a number, such as 2 or 1.5"
        return None


def _required(ctx: Ctx, *fields: tuple[str, str]) -> None:
    for name, message in fields:
        if not ctx.value(name):
            ctx.errors[name] = message


_OPTION_VALUE: Final = re.compile(r"^--[a-z-]+ [^ :]+: ")
_OVERDRAFT_HINT: Final = re.compile(r"; raise time_overdraft_seconds in .* or transfer less$")


def said(e: InvalidInput) -> str:
    """A refusal in the page's words: without the option it names (``--hours 0:``) or the
    server's file to edit."""
    text = _OVERDRAFT_HINT.sub(
        ". Transfer less, or ask whoever looks after the server to raise the hub's limit.",
        str(e),
    )
    return plain(_OPTION_VALUE.sub("", text))


def _refused(ctx: Ctx, e: InvalidInput, fields: tuple[str, ...], fallback: str) -> None:
    field = {"hours_per_week": "hours", "seconds": "hours", "id": fallback}.get(e.field, e.field)
    ctx.errors[field if field in fields else fallback] = said(e)


# -- offers, requests, matches ----------------------------------------------------------


def _skills_page(ctx: Ctx, status: int = 200) -> Response:
    skills = _skills(ctx)
    known = reading.hubs(ctx.cw.views)
    offers, requests = skills.items("offer"), skills.items("request")
    matches = skills.matches()
    mine = [m for m in matches if hub_display(ctx.me) in (_hub(m["offer"]), _hub(m["request"]))]
    return ctx.render(
        "skills.html",
        status=status,
        title="Skills exchange",
        offers=offers[:SHOWN],
        requests=requests[:SHOWN],
        matches=mine[:SHOWN],
        other_matches=len(matches) - len(mine),
        me=ctx.me,
        kind=ctx.value("kind"),
        name_of=lambda hub: reading.name_of(known, hub),
    )


def _hub(ref: str) -> str:
    return ref.partition("/")[0]


@page("/skills", "view")
async def skills_list(ctx: Ctx) -> Response:
    await ctx.cw.refresh()
    return _skills_page(ctx)


@page("/skills", "offer-skills", methods=("POST",))
async def skills_add(ctx: Ctx) -> Response:
    """Offer a skill (``kind=offer``) or ask for one (``kind=request``)."""
    await ctx.cw.refresh()
    kind = ctx.value("kind")
    if kind not in ("offer", "request"):
        ctx.errors["kind"] = "Choose whether this hub offers the skill or asks for it"
    _required(
        ctx,
        ("title", "Enter a short title"),
        ("tags", "Enter at least one skill, such as gardening"),
        ("area", "Enter at least one postcode district, such as DL1"),
    )
    hours = _number(ctx, "hours", "hours a week") if kind == "offer" else None
    if ctx.errors:
        return _skills_page(ctx, 400)
    skills = _skills(ctx)
    tags, area = [ctx.value("tags")], [ctx.value("area")]
    title, description = ctx.value("title"), ctx.value("description")
    try:
        if kind == "offer":
            await skills.offer(
                tags=tags, title=title, area=area, description=description, hours=hours
            )
        else:
            await skills.request(
                tags=tags,
                title=title,
                area=area,
                description=description,
                needed_by=ctx.value("needed_by") or None,
            )
    except InvalidInput as e:
        _refused(ctx, e, ITEM_FIELDS, "title")
        return _skills_page(ctx, 400)
    said = "Skill offered" if kind == "offer" else "Request for a skill made"
    return ctx.redirect("/skills", f"{said}: other hubs see it once their nodes sync.")


@page("/skills/withdraw", "offer-skills", methods=("POST",))
async def skills_withdraw(ctx: Ctx) -> Response:
    """Withdraw one of this hub's own open offers (``item=offer``) or requests."""
    await ctx.cw.refresh()
    item, item_id = ctx.value("item"), ctx.value("id")
    try:
        if item not in ("offer", "request") or not item_id:
            raise InvalidInput("item", "Choose one of this hub's offers or requests")
        await _skills(ctx).withdraw(**{item: item_id})
    except InvalidInput as e:
        ctx.errors["withdraw"] = said(e)
        return _skills_page(ctx, 400)
    return ctx.redirect("/skills", f"The {item} {item_id} is withdrawn.")


# -- time credits -----------------------------------------------------------------------


def _time_page(ctx: Ctx, status: int = 200) -> Response:
    report = _skills(ctx).balance()
    known = reading.hubs(ctx.cw.views)
    me = hub_display(ctx.me)
    transfers = report["transfers"]
    return ctx.render(
        "time.html",
        status=status,
        title="Time credits",
        report=report,
        to_confirm=[t for t in transfers if t["awaiting"] == me],
        awaiting_others=[t for t in transfers if t["awaiting"] not in (None, me)],
        settled=[t for t in transfers if t["awaiting"] is None],
        hubs=sorted((h for h in known.values() if h.id != ctx.me), key=lambda h: h.name.casefold()),
        me=me,
        hours_text=hours_text,
        name_of=lambda shown: reading.name_of(known, _parse(shown)),
    )


def _parse(shown: str) -> bytes | None:
    """The hub a display id names (None if malformed: then shown by its id)."""
    try:
        return parse_hub(shown)
    except ValueError:
        return None


@page("/time", "view")
async def time_credits(ctx: Ctx) -> Response:
    await ctx.cw.refresh()
    return _time_page(ctx)


@page("/time/propose", "move-time", methods=("POST",))
async def propose(ctx: Ctx) -> Response:
    await ctx.cw.refresh()
    direction, hub = ctx.value("direction"), ctx.value("hub")
    if direction not in ("pay", "paid"):
        ctx.errors["direction"] = "Choose whether this hub pays or is paid"
    _required(ctx, ("hub", "Choose the other hub"), ("hours", "Enter the hours to transfer"))
    hours = _number(ctx, "hours", "hours")
    if ctx.errors:
        return _time_page(ctx, 400)
    try:
        done = await _skills(ctx).propose(
            to=hub if direction == "pay" else None,
            from_=hub if direction == "paid" else None,
            hours=hours,
            memo=ctx.value("memo"),
        )
    except InvalidInput as e:
        _refused(ctx, e, TIME_FIELDS, "hub")
        return _time_page(ctx, 400)
    return ctx.redirect(
        "/time",
        f"Transfer of {hours_text(done.seconds)} proposed: it counts once the other hub "
        "confirms it.",
    )


@page("/time/confirm", "move-time", methods=("POST",))
async def confirm(ctx: Ctx) -> Response:
    await ctx.cw.refresh()
    try:
        done = await _skills(ctx).confirm(ctx.value("transfer"))
    except InvalidInput as e:
        ctx.errors["confirm"] = said(e)
        return _time_page(ctx, 400)
    return ctx.redirect("/time", f"Transfer of {hours_text(done.seconds)} confirmed.")


@page("/time/reverse", "move-time", methods=("POST",))
async def reverse(ctx: Ctx) -> Response:
    """Reverse a confirmed transfer this hub is a party to, saying why."""
    await ctx.cw.refresh()
    try:
        done = await _skills(ctx).reverse(ctx.value("transfer"), ctx.value("reason"))
    except InvalidInput as e:
        ctx.errors["reverse"] = said(e)
        return _time_page(ctx, 400)
    return ctx.redirect(
        "/time", f"Transfer of {hours_text(done.seconds)} reversed: it no longer counts."
    )


routes = [skills_list, skills_add, skills_withdraw, time_credits, propose, confirm, reverse]
