"""People: log an enquiry (with the person's consent), a person's page, their consent
and erasure.

A person is in a URL only by pseudonym (``/people/s-…``); their details travel in POST
bodies and are shown only to signed-in staff, and only where this hub holds the
person's key (:meth:`~hubnode.casework.CaseReader.person`).
"""

from __future__ import annotations

import re
from typing import Final

from starlette.responses import Response

from hubnode.casework import InvalidInput, NotFound, SeveralOwners
from hubnode.console import reading
from hubnode.console.pages.labels import (
    CHANNEL_LABELS,
    PURPOSE_LABELS,
    STATUS_LABELS,
    URGENCY_LABELS,
    hub_options,
    options,
)
from hubnode.console.web import Ctx, page, plain, urlpart
from hubnode.errors import PrivacyError
from hubnode.events.directory import CATEGORIES
from hubnode.events.ids import hub_display, parse_hub
from hubnode.events.pathway import CHANNELS, SUBJECT_PATTERN
from hubnode.projections.pathway_read import referrals

_SUBJECT: Final = re.compile(SUBJECT_PATTERN)
_AT_FIELD: Final = re.compile(r"at `\$\.(\w+)`")
_TOO_LONG: Final = re.compile(r"length <= (\d+)")


def _input_error(ctx: Ctx, e: InvalidInput) -> None:
    """Put a refusal from the casework next to the field it is about."""
    found, too_long = _AT_FIELD.search(str(e)), _TOO_LONG.search(str(e))
    name = found.group(1) if e.field == "person" and found else e.field
    if too_long is not None:  # msgspec's words, for a field too long
        ctx.errors[name] = f"Make it at most {too_long.group(1)} characters"
    else:
        ctx.errors[name] = plain(str(e))


def _hubs_chosen(ctx: Ctx) -> list[bytes]:
    chosen = []
    for text in ctx.values("consent"):
        try:
            chosen.append(parse_hub(text))
        except ValueError:
            ctx.errors["consent"] = "Choose hubs from the list"
    return chosen


def _consent_checks(ctx: Ctx) -> None:
    if not ctx.values("purpose"):
        ctx.errors["purpose"] = "Choose what the person agrees to"
    if ctx.value("agreed") != "yes":
        ctx.errors["agreed"] = (
            "Confirm that you told the person which hubs can read their details, and they agree"
        )


def _other_hubs(ctx: Ctx) -> list[reading.Hub]:
    known = reading.hubs(ctx.cw.views)
    return sorted(
        (h for h in known.values() if h.id != ctx.me), key=lambda h: (h.name.casefold(), h.id)
    )


# -- log an enquiry ---------------------------------------------------------------------


def _enquiry_form(ctx: Ctx, status: int = 200) -> Response:
    return ctx.render(
        "enquiry.html",
        status=status,
        title="Log an enquiry",
        need_options=options(CATEGORIES),
        channel_options=options(CHANNEL_LABELS),
        urgency_options=options(URGENCY_LABELS),
        hub_options=hub_options(_other_hubs(ctx)),
        purpose_options=options(PURPOSE_LABELS),
        fresh=ctx.form is None,
    )


@page("/enquiry", "log-enquiry")
async def enquiry_form(ctx: Ctx) -> Response:
    await ctx.cw.refresh()
    return _enquiry_form(ctx)


@page("/enquiry", "log-enquiry", methods=("POST",))
async def enquiry_log(ctx: Ctx) -> Response:
    await ctx.cw.refresh()
    name, needs, channel = ctx.value("name"), ctx.values("need"), ctx.value("channel")
    if not name:
        ctx.errors["name"] = "Enter the person's name"
    if not needs:
        ctx.errors["need"] = "Choose at least one thing they need help with"
    if channel not in CHANNELS:
        ctx.errors["channel"] = "Choose how the person came to the hub"
    _consent_checks(ctx)
    consent = _hubs_chosen(ctx)
    if ctx.errors:
        return _enquiry_form(ctx, 400)
    try:
        with ctx.cw.acting(ctx.account.pseudonym) as cw:
            logged = await cw.log_enquiry(
                name=name,
                needs=needs,
                channel=channel,
                phone=ctx.value("phone"),
                email=ctx.value("email"),
                dob=ctx.value("dob") or None,
                address=ctx.value("address"),
                notes=ctx.value("notes"),
                urgency=ctx.value("urgency") or "routine",
                area=ctx.value("area") or None,
                consent=consent,
                purposes=ctx.values("purpose"),
            )
    except InvalidInput as e:
        _input_error(ctx, e)
        return _enquiry_form(ctx, 400)
    except PrivacyError as e:  # a chosen hub has published no seal key yet
        ctx.errors["consent"] = plain(str(e))
        return _enquiry_form(ctx, 400)
    return ctx.redirect(
        f"/people/{urlpart(logged.subject)}",
        f"Enquiry logged. The person's pseudonym is {logged.subject}.",
    )


# -- a person ---------------------------------------------------------------------------


@page("/people", "read-person")
async def find_person(ctx: Ctx) -> Response:
    subject = ctx.request.query_params.get("subject", "").strip().lower()
    if subject and _SUBJECT.match(subject):
        return ctx.redirect(f"/people/{urlpart(subject)}")
    if subject:
        ctx.errors["subject"] = "Write the pseudonym as it was given, s- and 20 letters or digits"
    return ctx.render("find.html", status=400 if subject else 200, title="Find a person",
                      subject=subject)  # fmt: skip


def _subject(ctx: Ctx) -> str:
    subject = str(ctx.request.path_params["subject"])
    if not _SUBJECT.match(subject):
        raise NotFound(f"{subject[:40]} is not a person's pseudonym")
    return subject


def _owner(ctx: Ctx) -> bytes | None:
    """The hub that logged the person's enquiry, when the link names it (``?owner=``)."""
    text = ctx.request.query_params.get("owner", "").strip()
    if not text:
        return None
    try:
        return parse_hub(text)
    except ValueError:
        raise NotFound(f"{text[:60]} is not a hub id") from None


def _person(ctx: Ctx, subject: str, status: int = 200) -> Response:
    cw = ctx.cw
    known = reading.hubs(cw.views)
    try:
        record = cw.person(subject, _owner(ctx))
    except SeveralOwners as e:  # another hub reused the pseudonym: say whose person
        return ctx.render(
            "owners.html",
            title=f"Person {subject}",
            subject=subject,
            owners=[(owner, reading.name_of(known, owner)) for owner in e.owners],
            hub_display=hub_display,
        )
    info = record.info
    mine = info.owner == ctx.me
    posted = ctx.form is not None and "purpose" in ctx.form  # the consent form came back
    return ctx.render(
        "person.html",
        status=status,
        title=f"Person {subject}",
        record=record,
        info=info,
        mine=mine,
        referrals=[r for r in referrals(cw.views, subject=subject) if r.referrer == info.owner],
        names={h: reading.name_of(known, h) for h in known},
        name_of=lambda hub: reading.name_of(known, hub),
        hub_options=hub_options(_other_hubs(ctx)),
        purpose_options=options(PURPOSE_LABELS),
        consent_chosen=ctx.values("consent")
        if posted
        else [hub_display(h) for h in info.consent.recipients],
        purpose_chosen=ctx.values("purpose") if posted else list(info.consent.purposes),
        channels=CHANNEL_LABELS,
        statuses=STATUS_LABELS,
        categories=CATEGORIES,
    )


@page("/people/{subject}", "read-person")
async def person(ctx: Ctx) -> Response:
    subject = _subject(ctx)
    await ctx.cw.refresh()
    return _person(ctx, subject)


@page("/people/{subject}/consent", "change-consent", methods=("POST",))
async def consent_record(ctx: Ctx) -> Response:
    subject = _subject(ctx)
    await ctx.cw.refresh()
    _consent_checks(ctx)
    consent = _hubs_chosen(ctx)
    if ctx.errors:
        return _person(ctx, subject, 400)
    try:
        with ctx.cw.acting(ctx.account.pseudonym) as cw:
            saved = await cw.record_consent(subject, consent, ctx.values("purpose"))
    except InvalidInput as e:
        _input_error(ctx, e)
        return _person(ctx, subject, 400)
    except PrivacyError as e:
        ctx.errors["consent"] = plain(str(e))
        return _person(ctx, subject, 400)
    shared = len(saved.consent)
    return ctx.redirect(
        f"/people/{urlpart(subject)}",
        f"Consent recorded: {shared} other hub{'' if shared == 1 else 's'} may read their details.",
    )


@page("/people/{subject}/withdraw", "change-consent", methods=("POST",))
async def consent_withdraw(ctx: Ctx) -> Response:
    subject = _subject(ctx)
    await ctx.cw.refresh()
    try:
        with ctx.cw.acting(ctx.account.pseudonym) as cw:
            await cw.withdraw_consent(subject, ctx.value("withdraw_reason"))
    except InvalidInput as e:
        ctx.errors["withdraw_reason"] = plain(str(e))
        return _person(ctx, subject, 400)
    return ctx.redirect(
        f"/people/{urlpart(subject)}",
        "Consent withdrawn: other hubs will destroy their copy of the key.",
    )


@page("/people/{subject}/erase", "erase-person", methods=("POST",))
async def erase(ctx: Ctx) -> Response:
    subject = _subject(ctx)
    await ctx.cw.refresh()
    reason = ctx.value("reason")
    if not reason:
        ctx.errors["reason"] = "Say why the person is erased (no personal details)"
    if ctx.value("confirm") != "yes":
        ctx.errors["confirm"] = "Confirm that the person's details should be erased everywhere"
    if ctx.errors:
        return _person(ctx, subject, 400)
    try:
        with ctx.cw.acting(ctx.account.pseudonym) as cw:
            await cw.erase(subject, reason)
    except InvalidInput as e:
        ctx.errors["reason"] = plain(str(e))
        return _person(ctx, subject, 400)
    return ctx.redirect(
        f"/people/{urlpart(subject)}",
        "The person was erased. Every hub that held their details destroys its key.",
    )


routes = [
    enquiry_form,
    enquiry_log,
    find_person,
    person,
    consent_record,
    consent_withdraw,
    erase,
]
