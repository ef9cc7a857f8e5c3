"""Referrals: the list, one referral with only the moves this hub and this staff member
may make next, and making a referral (choose a hub or a service, then the form).

The moves offered come from the transition table through
:meth:`~hubnode.projections.pathway_read.Referral.next_moves`; the casework checks the
table again when a move is asked for, and the role table says which staff may ask.
"""

from __future__ import annotations

from typing import Final

from starlette.responses import Response

from hubnode.casework import InvalidInput, NoCapacity, NotFound, RefKey
from hubnode.commands.directory import search_listings
from hubnode.console import reading
from hubnode.console.pages.labels import MOVE_LABELS, STATUS_LABELS, URGENCY_LABELS, options
from hubnode.console.permissions import move_permission
from hubnode.console.web import Ctx, page, plain, urlpart
from hubnode.errors import ConsentRefused, IllegalTransition
from hubnode.events.directory import CATEGORIES
from hubnode.events.ids import HUB_PREFIX, hub_display, parse_hub
from hubnode.events.lifecycle import NEEDS_REASON, STATUSES, Party
from hubnode.projections.pathway_read import CLAIM_MOVE, claimable, referrals

_HUB_LEN: Final = len(HUB_PREFIX) + 52
LIST_LIMIT: Final = 200
SERVICES_SHOWN: Final = 30


def ref_key(text: str) -> RefKey:
    """``hub:…:ID`` from a URL → (referring hub, referral id); NotFound if malformed."""
    hub_text, sep, local = text[:_HUB_LEN], text[_HUB_LEN : _HUB_LEN + 1], text[_HUB_LEN + 1 :]
    try:
        hub = parse_hub(hub_text)
    except ValueError:
        raise NotFound("that is not a referral's address") from None
    if sep != ":" or not local:
        raise NotFound("that is not a referral's address")
    return hub, local


# -- the list ---------------------------------------------------------------------------


@page("/referrals", "view")
async def referral_list(ctx: Ctx) -> Response:
    cw = ctx.cw
    await cw.refresh()
    query = ctx.request.query_params
    status = query.get("status") if query.get("status") in STATUSES else None
    asked = query.get("role")
    role: Party | None = (
        "referring" if asked == "referring" else "receiving" if asked == "receiving" else None
    )
    found = referrals(cw.views, hub=ctx.me, role=role, status=status)
    found.reverse()  # newest first
    known = reading.hubs(cw.views)
    return ctx.render(
        "referrals.html",
        title="Referrals",
        referrals=found[:LIST_LIMIT],
        more=max(0, len(found) - LIST_LIMIT),
        claimable=claimable(cw.views, ctx.me),
        chosen_status=status or "",
        role=role or "",
        statuses=STATUS_LABELS,
        name_of=lambda hub: reading.name_of(known, hub),
    )


# -- one referral -----------------------------------------------------------------------


def referral_page(ctx: Ctx, key: RefKey, status: int = 200) -> Response:
    cw, me = ctx.cw, ctx.me
    detail = cw.referral_detail(key)
    r = detail.referral
    possible = r.next_moves(me)
    moves = [m for m in possible if ctx.can(move_permission(m))]
    known = reading.hubs(cw.views)
    involved = me == r.referrer or me in r.consent
    return ctx.render(
        "referral.html",
        status=status,
        title=f"Referral {r.id}",
        detail=detail,
        r=r,
        moves=moves,
        held_back=[m for m in possible if m not in moves],
        labels=MOVE_LABELS,
        statuses=STATUS_LABELS,
        needs_reason=NEEDS_REASON,
        roles=r.roles(me),
        involved=involved,
        name_of=lambda hub: reading.name_of(known, hub),
        hub_display=hub_display,
    )


@page("/referrals/{ref}", "view")
async def referral(ctx: Ctx) -> Response:
    key = ref_key(str(ctx.request.path_params["ref"]))
    await ctx.cw.refresh()
    return referral_page(ctx, key)


@page("/referrals/{ref}/move", "move-referral", methods=("POST",))
async def move(ctx: Ctx) -> Response:
    text = str(ctx.request.path_params["ref"])
    key = ref_key(text)
    await ctx.cw.refresh()
    to = ctx.value("to")
    if to != CLAIM_MOVE and to not in STATUSES:
        raise NotFound("there is no such move")
    if not ctx.can(move_permission(to)):
        return ctx.refuse(
            403, "Not allowed", "Only a coordinator or an admin can mark a referral as entered "
            "in error."
        )  # fmt: skip
    reason, outcome, satisfied = ctx.value("reason"), ctx.value("outcome"), ctx.value("satisfied")
    try:
        with ctx.cw.acting(ctx.account.pseudonym) as cw:
            if to == CLAIM_MOVE:
                await cw.claim(key)
            else:
                await cw.move(
                    key,
                    to,
                    reason,
                    outcome or None,
                    {"yes": True, "no": False}.get(satisfied),
                )
    except IllegalTransition as e:
        missing = e.to in NEEDS_REASON and not reason
        ctx.errors[f"reason-{to}" if missing else "moves"] = plain(str(e))
        return referral_page(ctx, key, 400)
    except InvalidInput as e:
        ctx.errors[f"{e.field}-{to}"] = plain(str(e))
        return referral_page(ctx, key, 400)
    done = "Referral taken" if to == CLAIM_MOVE else f"Referral moved to {STATUS_LABELS[to]}"
    return ctx.redirect(f"/referrals/{urlpart(text)}", f"{done}.")


# -- making a referral ------------------------------------------------------------------


def _target(ctx: Ctx) -> dict[str, str]:
    """The target chosen in step one: ``service``, ``to_hub`` or ``open`` (a category)."""
    params = ctx.form if ctx.form is not None else ctx.request.query_params
    chosen = {}
    for name in ("service", "to_hub", "open"):
        value = params.get(name)
        if isinstance(value, str) and value.strip():
            chosen[name] = value.strip()
    return chosen


def _refer_page(ctx: Ctx, subject: str, status: int = 200) -> Response:
    cw, me = ctx.cw, ctx.me
    info = cw.own_subject(subject)
    needs = sorted({n for e in info.enquiries for n in e.needs})
    query = ctx.request.query_params
    category = query.get("category", needs[0] if needs else "")
    area = query.get("area", "").strip().upper() or None
    text = query.get("text", "").strip() or None
    known = reading.hubs(cw.views)
    target = _target(ctx)
    services = search_listings(
        cw.views,
        text=text,
        categories=[category] if category in CATEGORIES else [],
        area=area,
        limit=SERVICES_SHOWN,
    )
    chosen_service, target_hub = None, None
    if "to_hub" in target:
        try:
            target_hub = parse_hub(target["to_hub"])
        except ValueError:
            raise NotFound("that is not a hub's id") from None
    if "service" in target:
        chosen_service = reading.service(cw.views, *ref_key(target["service"]))
        if chosen_service is None:
            raise NotFound("that service is not in this hub's directory, or was withdrawn")
    return ctx.render(
        "refer.html",
        status=status,
        title="Refer a person",
        subject=subject,
        info=info,
        needs=needs,
        category=category,
        area=area or "",
        text=text or "",
        categories=CATEGORIES,
        services=services,
        hubs=sorted((h for h in known.values() if h.id != me), key=lambda h: h.name.casefold()),
        consented=set(info.consent.recipients),
        target=target,
        target_hub=target_hub,
        chosen_service=chosen_service,
        urgency_options=options(URGENCY_LABELS),
        me=me,
        name_of=lambda hub: reading.name_of(known, hub),
        hub_display=hub_display,
    )


@page("/refer", "refer")
async def refer_form(ctx: Ctx) -> Response:
    subject = ctx.request.query_params.get("subject", "")
    await ctx.cw.refresh()
    return _refer_page(ctx, subject)


@page("/refer", "refer", methods=("POST",))
async def refer(ctx: Ctx) -> Response:
    subject = ctx.value("subject")
    await ctx.cw.refresh()
    target = _target(ctx)
    if len(target) != 1:
        ctx.errors["target"] = "Choose one hub, service or need to refer the person to"
        return _refer_page(ctx, subject, 400)
    try:
        with ctx.cw.acting(ctx.account.pseudonym) as cw:
            made = await cw.refer(
                subject,
                to_hub=parse_hub(target["to_hub"]) if "to_hub" in target else None,
                service=ref_key(target["service"]) if "service" in target else None,
                category=target.get("open"),
                note=ctx.value("note"),
                urgency=ctx.value("urgency") or "routine",
                anyway=ctx.value("anyway") == "yes",
            )
    except InvalidInput as e:
        ctx.errors[e.field if e.field in ("note", "urgency") else "target"] = plain(str(e))
        return _refer_page(ctx, subject, 400)
    except ValueError:  # a hub id that does not parse
        ctx.errors["target"] = "Choose a hub from the list"
        return _refer_page(ctx, subject, 400)
    except NoCapacity as e:
        ctx.errors["anyway"] = (
            f"This service said on {e.as_of} that it has no capacity. Tick the box to refer "
            "the person anyway, or choose another service."
        )
        return _refer_page(ctx, subject, 400)
    except ConsentRefused as e:
        ctx.errors["target"] = (
            plain(str(e)) + " If they agree, record their consent again on their page first."
        )
        return _refer_page(ctx, subject, 400)
    flash = "Referral made."
    if made.warning is not None:
        flash += " The service had reported no capacity."
    return ctx.redirect(f"/referrals/{urlpart(made.ref)}", flash)


routes = [referral_list, referral, move, refer_form, refer]
