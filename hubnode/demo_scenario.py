"""The shared work of ``hubnode demo``: what the hubs append, and what their views then show.

Issue 5's scenario, in steps. Each step's events are appended at the hubs named, and the
demo waits until every hub holds them before the next step, because later steps answer
earlier ones (a transfer is confirmed by the hub that received the proposal, members join
a cluster they have seen formed, the lead assigns lots to the members it has seen join):

1. two hubs publish a service each; the first hub offers a skill (help with benefit
   forms) and the second asks for it; the last hub shares a council tender with three lots;
2. the second hub proposes paying the first 3 hours of time credits for the help; the
   first hub forms a bid cluster for the tender; two hubs rate the first hub's service;
3. the first hub confirms the transfer; the second and third hubs join the cluster;
4. the lead assigns one lot to each member and submits the cluster's bid.

Hubs are numbered from 0 here (the demo prints them from 1); the scenario needs three.
The hubs themselves — names, roles, areas — are :data:`PROFILES`.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Final, NamedTuple

from hubnode.commands.directory import costs_text, rating_text, search_listings
from hubnode.events.directory import Contact, CostOption, Location, ServicePublished, WeeklyHours
from hubnode.events.feedback import FeedbackSubmitted, ServiceRef
from hubnode.events.ids import hub_display, parse_hub
from hubnode.events.kinds import Body
from hubnode.events.network import HubProfileUpdated, Role
from hubnode.events.skills import (
    ItemRef,
    SkillOffered,
    SkillRequested,
    TransferConfirmed,
    TransferProposed,
)
from hubnode.events.tenders import (
    BidSubmitted,
    ClusterFormed,
    ClusterJoined,
    Lot,
    LotAssigned,
    Period,
    TenderShared,
    Value,
)
from hubnode.projections.feedback import service_summaries
from hubnode.projections.runner import ProjectionRunner


class Profile(NamedTuple):
    name: str
    roles: tuple[Role, ...]
    area: str
    contact: str


PROFILES: Final[tuple[Profile, ...]] = (
    Profile(
        "Darlington Advice Hub",
        ("gateway", "follow-up"),
        "Darlington town centre",
        "advice@example.org",
    ),
    Profile(
        "Care Navigators North",
        ("follow-up", "advocacy"),
        "Harrowgate Hill and Cockerton",
        "navigators@example.org",
    ),
    Profile(
        "Volunteer Centre",
        ("direct-delivery", "new-services"),
        "Borough-wide",
        "volunteer@example.org",
    ),
    Profile(
        "Eastbourne Community Hub",
        ("gateway", "direct-delivery"),
        "Eastbourne and Firthmoor",
        "eastbourne@example.org",
    ),
    Profile(
        "Red Hall Family Centre",
        ("direct-delivery", "follow-up"),
        "Red Hall and Lingfield",
        "redhall@example.org",
    ),
    Profile(
        "Skerne Park Residents' Hub",
        ("advocacy", "gateway"),
        "Skerne Park and Bank Top",
        "skernepark@example.org",
    ),
    Profile(
        "Haughton Food Pantry",
        ("direct-delivery",),
        "Haughton and Springfield",
        "pantry@example.org",
    ),
    Profile(
        "Rural Darlington Outreach",
        ("gateway", "new-services"),
        "Hurworth, Middleton St George and Heighington",
        "rural@example.org",
    ),
)


def profile_update(profile: Profile, n: int) -> HubProfileUpdated:
    """The ``n``-th profile update of a hub: its drop-in rota, week after week."""
    if n % 10 == 0:
        return HubProfileUpdated(contact=f"duty-desk-{n // 10}@{profile.contact.split('@')[1]}")
    return HubProfileUpdated(area=f"{profile.area} (drop-in rota, week {n})")


MIN_HUBS: Final = 3
"""A cluster of three hubs bids for the tender."""
SEARCH_AREA: Final = "DL3"
"""The postcode district the demo searches the directory for: both services cover it."""

OCID: Final = "ocds-dlcsn-2026-014"
CLUSTER: Final = "dl-support"
OFFER: Final = "form-filling"
REQUEST: Final = "pip-forms"
TRANSFER: Final = "pip-forms-1"
HOURS: Final = 3
LOTS: Final = (
    Lot(id="lot-1", title="Advice and debt casework", value=Value(amount=120_000, currency="GBP")),
    Lot(id="lot-2", title="Support for unpaid carers", value=Value(amount=80_000, currency="GBP")),
    Lot(id="lot-3", title="Volunteer transport", value=Value(amount=40_000, currency="GBP")),
)
BID: Final = Value(amount=232_000, currency="GBP")


class Append(NamedTuple):
    hub: int
    """Which hub appends: an index into the demo's hubs."""
    kind: str
    body: Body


class Step(NamedTuple):
    what: str
    """What happens, in a few words; ``{0}``, ``{1}`` … stand for the hubs' names."""
    appends: list[Append]


def steps(hubs: Sequence[bytes]) -> list[Step]:
    """The scenario's steps for ``hubs`` (their ids, at least :data:`MIN_HUBS`)."""
    assert len(hubs) >= MIN_HUBS
    ids = [hub_display(h) for h in hubs]
    a, b, c, last = 0, 1, 2, len(hubs) - 1
    advice = ServicePublished(
        id="debt-advice",
        organisation="Darlington Advice Hub",
        name="Debt and benefits advice",
        description="Free, confidential help with debts, benefits and council tax arrears.",
        categories=("debt", "benefits", "advice"),
        costs=(CostOption(kind="free"),),
        languages=("en", "pl"),
        schedules=(WeeklyHours(days=("MO", "WE", "FR"), opens="09:30", closes="16:00"),),
        areas=("DL1", "DL2", "DL3"),
        location=Location(address=("Crown Street",), town="Darlington", postcode="DL1 1ND"),
        contacts=(Contact(label="Advice line", phone="01325 000100"),),
    )
    cafe = ServicePublished(
        id="carers-cafe",
        organisation="Care Navigators North",
        name="Carers' café",
        description="A weekly drop-in for unpaid carers: a break, a brew and practical help.",
        categories=("carers", "community"),
        costs=(CostOption(kind="free"),),
        schedules=(WeeklyHours(days=("TU",), opens="10:00", closes="12:30"),),
        areas=("DL3", "DL5"),
    )
    tender = TenderShared(
        ocid=OCID,
        title="Community support and advice, 2027-2029",
        description="Advice, carers' support and volunteer transport across the borough.",
        buyer="Darlington Borough Council",
        value=Value(amount=240_000, currency="GBP"),
        period=Period(start=dt.date(2026, 12, 1), end=dt.date(2027, 1, 29)),
        lots=LOTS,
        categories=("advice", "carers", "transport"),
        area=("DL1", "DL2", "DL3"),
    )
    service = ServiceRef(hub=ids[a], id=advice.id)
    return [
        Step(
            "{0} and {1} published a service each; {0} offered help with benefit forms and "
            f"{{1}} asked for it; {{{last}}} shared a council tender with {len(LOTS)} lots",
            [
                Append(a, "service.published", advice),
                Append(b, "service.published", cafe),
                Append(
                    a,
                    "skill.offered",
                    SkillOffered(
                        offer_id=OFFER,
                        tags=("form-filling", "benefits"),
                        title="Help with benefit forms",
                        area=("DL1", "DL3"),
                        hours_per_week=6,
                    ),
                ),
                Append(
                    b,
                    "skill.requested",
                    SkillRequested(
                        request_id=REQUEST,
                        tags=("form-filling",),
                        title="Help for carers with PIP forms",
                        area=("DL3",),
                    ),
                ),
                Append(last, "tender.shared", tender),
            ],
        ),
        Step(
            f"{{1}} proposed paying {{0}} {HOURS} hours of time credits for the forms; "
            "{0} formed a bid cluster for the tender; {1} and {2} rated {0}'s service",
            [
                Append(
                    b,
                    "time.transfer_proposed",
                    TransferProposed(
                        transfer_id=TRANSFER,
                        from_hub=ids[b],
                        to_hub=ids[a],
                        seconds=HOURS * 3600,
                        memo="PIP forms for three carers",
                        offer=ItemRef(hub=ids[a], id=OFFER),
                        request=ItemRef(hub=ids[b], id=REQUEST),
                    ),
                ),
                Append(
                    a,
                    "cluster.formed",
                    ClusterFormed(cluster=CLUSTER, tender=OCID, lots=tuple(lot.id for lot in LOTS)),
                ),
                Append(
                    b,
                    "feedback.submitted",
                    FeedbackSubmitted(
                        feedback="f-1", service=service, rating=4, comment="Clear next steps."
                    ),
                ),
                Append(
                    c,
                    "feedback.submitted",
                    FeedbackSubmitted(
                        feedback="f-1",
                        service=service,
                        rating=5,
                        comment="Sorted council tax arrears in one visit.",
                    ),
                ),
            ],
        ),
        Step(
            "{0} confirmed the transfer; {1} and {2} joined {0}'s cluster",
            [
                Append(
                    a,
                    "time.transfer_confirmed",
                    TransferConfirmed(proposer=ids[b], transfer_id=TRANSFER),
                ),
                Append(b, "cluster.joined", ClusterJoined(lead=ids[a], cluster=CLUSTER)),
                Append(c, "cluster.joined", ClusterJoined(lead=ids[a], cluster=CLUSTER)),
            ],
        ),
        Step(
            f"{{0}}, the lead, assigned a lot to each of the {MIN_HUBS} members and submitted "
            "the bid",
            [
                *(
                    Append(
                        a,
                        "lot.assigned",
                        LotAssigned(lead=ids[a], cluster=CLUSTER, lot=lot.id, member=ids[member]),
                    )
                    for lot, member in zip(LOTS, (a, b, c), strict=True)
                ),
                Append(
                    a,
                    "bid.submitted",
                    BidSubmitted(
                        lead=ids[a],
                        cluster=CLUSTER,
                        lots=tuple(lot.id for lot in LOTS),
                        value=BID,
                    ),
                ),
            ],
        ),
    ]


def _hours(seconds: int) -> str:
    return f"{seconds / 3600:+g} h"


def _listed(stored: str) -> str:
    """A JSON list as the views store it, for people: ``a, b``."""
    return ", ".join(json.loads(stored))


def _money(amount: float, currency: str) -> str:
    return f"{amount:,.0f} {currency}"


def view_lines(runner: ProjectionRunner, names: dict[bytes, str]) -> list[str]:
    """A few lines of each area's view, as ``runner`` (one hub's views) holds them.

    ``names`` gives each hub's name by its id. Plain text (no rich markup).
    """

    def name(hub: bytes | str) -> str:
        key = parse_hub(hub) if isinstance(hub, str) else hub
        return names.get(key, hub_display(key))

    lines = [f"directory search --area {SEARCH_AREA}:"]
    for found in search_listings(runner, area=SEARCH_AREA, ratings=True):
        s = found.service
        lines.append(
            f"  {s.name} — {name(found.publisher)} ({', '.join(s.categories)}); "
            f"{costs_text(s)}; "
            + (f"rated {rating_text(found.rating)}" if found.rating else "not rated yet")
        )

    for offer_hub, offered, request_hub, requested, tags, districts in runner.query(
        "skills",
        "SELECT m.offer_hub, o.title, m.request_hub, r.title, m.tags, m.districts "
        "FROM {matches} m "
        "JOIN {offers} o ON o.hub = m.offer_hub AND o.offer_id = m.offer_id "
        "JOIN {requests} r ON r.hub = m.request_hub AND r.request_id = m.request_id "
        "ORDER BY m.offer_hub, m.offer_id, m.request_hub, m.request_id",
    ):
        lines.append(
            f"skills match: {offered!r} offered by {name(offer_hub)} ↔ {requested!r} "
            f"requested by {name(request_hub)} (tags {_listed(tags)}; "
            f"districts {_listed(districts)})"
        )
    for from_hub, to_hub, seconds, state in runner.query(
        "skills",
        "SELECT from_hub, to_hub, seconds, state FROM {transfers} ORDER BY proposer, transfer_id",
    ):
        lines.append(
            f"time credits: {seconds // 3600} h from {name(from_hub)} to {name(to_hub)}, {state}"
        )
    balances = runner.query(
        "skills", "SELECT hub, seconds FROM {balances} WHERE seconds != 0 ORDER BY seconds DESC"
    )
    lines.append(
        "balances: " + ", ".join(f"{name(hub)} {_hours(seconds)}" for hub, seconds in balances)
    )

    for ocid, title, buyer, amount, currency, sharer in runner.query(
        "tenders", "SELECT ocid, title, buyer, amount, currency, hub FROM {tenders} ORDER BY ocid"
    ):
        lines.append(
            f"tender {ocid}: {title!r} for {buyer}, {_money(amount, currency)}, "
            f"shared by {name(sharer)}"
        )
        for lead, cluster in runner.query(
            "tenders",
            "SELECT lead, cluster FROM {clusters} WHERE ocid = ? ORDER BY lead, cluster",
            (ocid,),
        ):
            members = runner.query(
                "tenders",
                "SELECT member FROM {members} WHERE ocid = ? AND lead = ? AND cluster = ? "
                "ORDER BY member != lead, member",
                (ocid, lead, cluster),
            )
            lines.append(
                f"  cluster {cluster} led by {name(lead)}: "
                + ", ".join(name(member) for (member,) in members)
            )
            lots = runner.query(
                "tenders",
                "SELECT l.lot, l.title, a.member FROM {lots} l LEFT JOIN {assignments} a "
                "ON a.ocid = l.ocid AND a.lot = l.lot AND a.lead = ? AND a.cluster = ? "
                "WHERE l.ocid = ? ORDER BY l.position",
                (lead, cluster, ocid),
            )
            lines += [
                f"  {lot} {title!r} → {name(member) if member else 'not assigned'}"
                for lot, title, member in lots
            ]
            for bid_lots, bid_amount, bid_currency in runner.query(
                "tenders",
                "SELECT lots, amount, currency FROM {bids} WHERE ocid = ? AND lead = ? "
                "AND cluster = ? ORDER BY seq",
                (ocid, lead, cluster),
            ):
                lines.append(
                    f"  bid for lots {_listed(bid_lots)}: {_money(bid_amount, bid_currency)}"
                )

    services = {(f.publisher, f.service.id): f.service.name for f in search_listings(runner)}
    for (hub, service_id), rating in sorted(service_summaries(runner).items()):
        what = services.get((hub, service_id), service_id)
        lines.append(f"feedback: {what} of {name(hub)}: {rating_text(rating)}")
    return lines
