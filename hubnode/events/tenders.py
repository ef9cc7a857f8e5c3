"""Tender kinds: tenders shared with the network and won together by clusters of hubs.

Shaped after the Open Contracting Data Standard (OCDS 1.1 with the lots extension): a
tender has an ``ocid``, a buyer, a value and currency, a tender period, lots, documents
(links), categories and an area (postcode districts). Seed 000 asks that contracts
"beyond the capability or capacity of any Hub" be "delivered by clusters of Hubs": a
**cluster** is formed by a lead hub for one tender, other hubs join it, the lead assigns
lots to members and submits the bid; the hub that shared the tender records the award.

Bodies are checked for shape only. Rules between events (only the lead assigns lots, a
lot must be in the tender, …) are the projection's (``hubnode/projections/tenders.py``):
a peer's event that breaks one is stored and ignored there with a reason.

Cluster bodies have an optional ``staff`` field: the pseudonym of the staff member who
acted in the console, as in pathway and skills bodies (``hubnode.events.skills`` says why
some omit it when unset and some do not).
"""

from __future__ import annotations

import math
from datetime import date
from typing import Annotated, Literal

import msgspec

from hubnode.events.fields import HubId, Url, line, text, unique
from hubnode.events.kinds import KINDS, Body
from hubnode.events.pathway import StaffId

Ocid = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^ocds-[a-z0-9]{1,20}-[A-Za-z0-9][A-Za-z0-9._/-]{0,99}\Z",
        description="Open Contracting id: ocds-<prefix>-<local id>",
    ),
]
LotId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}\Z")]
ClusterId = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9._-]{0,39}\Z")]
Title = Annotated[str, line(min_length=1, max_length=200)]
Text = Annotated[str, text(max_length=5000)]
Name = Annotated[str, line(min_length=1, max_length=200)]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}\Z", description="ISO 4217 code")]
Amount = Annotated[float, msgspec.Meta(ge=0, le=1e13)]
Category = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,39}\Z")]
District = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Z]{1,2}[0-9][0-9A-Z]?\Z", description="postcode district")
]
Status = Literal["planning", "active", "cancelled", "unsuccessful", "complete", "withdrawn"]

MAX_LOTS = 100


class Value(Body, frozen=True, kw_only=True):
    """An amount of money (OCDS Value)."""

    amount: Amount
    currency: Currency

    def __post_init__(self) -> None:
        if not math.isfinite(self.amount):
            raise ValueError(f"amount must be a finite number, not {self.amount}")


class Period(Body, frozen=True, kw_only=True):
    """The tender period: bids are accepted from ``start`` to ``end`` (dates, inclusive)."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"period end {self.end} is before its start {self.start}")


class Lot(Body, frozen=True, kw_only=True):
    id: LotId
    title: Title
    value: Value | None = None


class Document(Body, frozen=True, kw_only=True):
    title: Title
    url: Url


Lots = Annotated[tuple[Lot, ...], msgspec.Meta(max_length=MAX_LOTS)]
LotIds = Annotated[tuple[LotId, ...], msgspec.Meta(max_length=MAX_LOTS)]
Documents = Annotated[tuple[Document, ...], msgspec.Meta(max_length=50)]
Categories = Annotated[tuple[Category, ...], msgspec.Meta(max_length=20)]
Area = Annotated[tuple[District, ...], msgspec.Meta(max_length=100)]


class TenderShared(Body, frozen=True, kw_only=True):
    """A hub shares a tender with the network (OCDS-shaped)."""

    ocid: Ocid
    title: Title
    description: Text = ""
    buyer: Name
    value: Value
    period: Period
    lots: Lots = ()
    documents: Documents = ()
    categories: Categories = ()
    area: Area = ()
    status: Status = "active"

    def __post_init__(self) -> None:
        unique("lot ids", [lot.id for lot in self.lots])
        unique("categories", self.categories)
        unique("area districts", self.area)


class TenderUpdated(Body, frozen=True, kw_only=True):
    """The hub that shared a tender changes it; fields left out stay as they were."""

    ocid: Ocid
    title: Title | None = None
    description: Text | None = None
    buyer: Name | None = None
    value: Value | None = None
    period: Period | None = None
    lots: Lots | None = None
    documents: Documents | None = None
    categories: Categories | None = None
    area: Area | None = None
    status: Status | None = None

    def __post_init__(self) -> None:
        if self.lots is not None:
            unique("lot ids", [lot.id for lot in self.lots])
        if self.categories is not None:
            unique("categories", self.categories)
        if self.area is not None:
            unique("area districts", self.area)
        changed = [f for f in UPDATABLE if getattr(self, f) is not None]
        if not changed:
            raise ValueError(f"a tender update must change at least one of {', '.join(UPDATABLE)}")


UPDATABLE = (
    "title",
    "description",
    "buyer",
    "value",
    "period",
    "lots",
    "documents",
    "categories",
    "area",
    "status",
)


class ClusterFormed(Body, frozen=True, kw_only=True):
    """This hub (the lead) forms a bid cluster for a tender; ``cluster`` is unique per lead."""

    cluster: ClusterId
    tender: Ocid
    lots: LotIds = ()
    """The lots the cluster will bid for; empty means not said (any lot of the tender)."""
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""

    def __post_init__(self) -> None:
        unique("lots", self.lots)


class ClusterJoined(Body, frozen=True, kw_only=True, omit_defaults=True):
    """This hub joins the cluster ``cluster`` led by ``lead``."""

    lead: HubId
    cluster: ClusterId
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""


class LotAssigned(Body, frozen=True, kw_only=True, omit_defaults=True):
    """The lead assigns a lot of the tender to a member of its cluster."""

    lead: HubId
    cluster: ClusterId
    lot: LotId
    member: HubId
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""


class BidSubmitted(Body, frozen=True, kw_only=True, omit_defaults=True):
    """The lead submits the cluster's bid for some lots of the tender."""

    lead: HubId
    cluster: ClusterId
    lots: Annotated[tuple[LotId, ...], msgspec.Meta(min_length=1, max_length=MAX_LOTS)]
    value: Value
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""

    def __post_init__(self) -> None:
        unique("lots", self.lots)


class AwardRecorded(Body, frozen=True, kw_only=True):
    """The hub that shared a tender records who won which lots: a cluster or a supplier."""

    tender: Ocid
    lead: HubId | None = None
    cluster: ClusterId | None = None
    supplier: Name | None = None
    lots: LotIds = ()
    value: Value
    awarded_on: date | None = None

    def __post_init__(self) -> None:
        if (self.lead is None) != (self.cluster is None):
            raise ValueError("an award to a cluster names both lead and cluster")
        if (self.cluster is None) == (self.supplier is None):
            raise ValueError("an award names either a cluster (lead and cluster) or a supplier")
        unique("lots", self.lots)


KINDS.register("tender.shared", TenderShared, max_body=65536)
KINDS.register("tender.updated", TenderUpdated, max_body=65536)
KINDS.register("cluster.formed", ClusterFormed, max_body=8192)
KINDS.register("cluster.joined", ClusterJoined, max_body=2048)
KINDS.register("lot.assigned", LotAssigned, max_body=2048)
KINDS.register("bid.submitted", BidSubmitted, max_body=8192)
KINDS.register("award.recorded", AwardRecorded, max_body=8192)
