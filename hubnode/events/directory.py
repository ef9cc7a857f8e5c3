"""Directory kinds: services a hub publishes, shaped after Open Referral HSDS 3.0.

A service is identified by its publishing hub and an id that hub chooses (a short slug
such as ``debt-advice`` or a uuid), unique per hub. Only the publisher may update or
withdraw its service or report its capacity; a peer naming another hub's service is
stored (it is validly signed) but ignored by the ``directory`` projection.

Categories are tags from :data:`CATEGORIES`, the vocabulary drawn from the seeds. The
vocabulary is extensible: bodies accept any well-formed tag so that a hub running an
older hubnode still accepts a service tagged with a category added later; the
``hubnode service`` commands accept only the categories this version knows.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final, Literal

import msgspec
from msgspec import UNSET, UnsetType

from hubnode.events.fields import REFUSED_CHARS, HubId, Url, line, text, unique
from hubnode.events.kinds import KINDS, Body

CATEGORIES: Final[dict[str, str]] = {
    "advice": "Advice and information",
    "benefits": "Benefits",
    "debt": "Debt and money",
    "housing": "Housing",
    "health": "Health",
    "mental-health": "Mental health",
    "carers": "Carers",
    "employment": "Employment and training",
    "food": "Food",
    "older-people": "Older people",
    "young-people": "Young people",
    "family": "Families and children",
    "disability": "Disability",
    "volunteering": "Volunteering",
    "transport": "Transport",
    "community": "Community groups and activities",
}
"""Category tag → the plain-English heading used in search results and print."""

Day = Literal["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
DAYS: Final[tuple[Day, ...]] = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
CapacityStatus = Literal["accepting", "waitlist", "no-capacity"]
CAPACITY_STATUSES: Final[tuple[CapacityStatus, ...]] = ("accepting", "waitlist", "no-capacity")

ServiceId = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z",
        description="the publisher's id for the service: a slug or uuid",
    ),
]
Name = Annotated[str, line(min_length=1, max_length=200)]
Label = Annotated[str, line(max_length=200)]
Text = Annotated[str, text(max_length=5000)]
Description = Annotated[str, text(min_length=1, max_length=5000)]
Category = Annotated[
    str, msgspec.Meta(pattern=r"^[a-z][a-z0-9-]{1,39}\Z", description="category tag")
]
District = Annotated[
    str,
    msgspec.Meta(pattern=r"^[A-Z]{1,2}[0-9][0-9A-Z]?\Z", description="postcode district, e.g. DL1"),
]
Postcode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9][A-Z0-9 -]{1,15}\Z")]
Country = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}\Z", description="ISO 3166-1 code")]
Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}\Z", description="ISO 4217 code")]
Language = Annotated[
    str,
    msgspec.Meta(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*\Z", description="BCP 47 tag, e.g. en"),
]
ClockTime = Annotated[
    str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]\Z", description="HH:MM")
]
_E = rf"[^@\s{REFUSED_CHARS}]"  # a character of an email address
Email = Annotated[str, msgspec.Meta(pattern=rf"^{_E}{{1,64}}@{_E}+\.{_E}+\Z", max_length=254)]
Phone = Annotated[str, msgspec.Meta(pattern=r"^\+?[0-9][0-9 ()-]{4,24}\Z")]
Amount = Annotated[float, msgspec.Meta(ge=0, le=1_000_000)]

Categories = Annotated[tuple[Category, ...], msgspec.Meta(min_length=1, max_length=10)]
Languages = Annotated[tuple[Language, ...], msgspec.Meta(max_length=30)]
Areas = Annotated[tuple[District, ...], msgspec.Meta(max_length=200)]
Days = Annotated[tuple[Day, ...], msgspec.Meta(min_length=1, max_length=7)]
AddressLines = Annotated[
    tuple[Annotated[str, line(min_length=1, max_length=200)], ...],
    msgspec.Meta(min_length=1, max_length=4),
]


class CostOption(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Free, or a fee with amount and currency; ``option`` says who it applies to."""

    kind: Literal["free", "fee"]
    amount: Amount | None = None
    currency: Currency | None = None
    option: Label = ""
    description: Label = ""

    def __post_init__(self) -> None:
        if self.kind == "fee" and (self.amount is None or self.currency is None):
            raise ValueError("a fee needs an amount and a currency (e.g. 12.5 and GBP)")
        if self.kind == "free" and (self.amount is not None or self.currency is not None):
            raise ValueError("a free option has no amount or currency")


class WeeklyHours(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Open on ``days`` from ``opens`` to ``closes`` (local time), every week."""

    days: Days
    opens: ClockTime
    closes: ClockTime
    note: Label = ""

    def __post_init__(self) -> None:
        unique("days", self.days)
        if self.opens >= self.closes:
            raise ValueError(f"opens {self.opens} must be before closes {self.closes}")


class Location(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where the service is delivered."""

    name: Label = ""
    address: AddressLines
    town: Label = ""
    region: Label = ""
    postcode: Postcode
    country: Country = "GB"


class Contact(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A public, organisational contact (a desk or team, never a person's own details)."""

    label: Label = ""
    phone: Phone | None = None
    email: Email | None = None

    def __post_init__(self) -> None:
        if self.phone is None and self.email is None:
            raise ValueError("a contact needs a phone or an email")


Costs = Annotated[tuple[CostOption, ...], msgspec.Meta(max_length=20)]
Schedules = Annotated[tuple[WeeklyHours, ...], msgspec.Meta(max_length=20)]
Contacts = Annotated[tuple[Contact, ...], msgspec.Meta(max_length=10)]


class ServicePublished(Body, frozen=True, kw_only=True):
    """A hub publishes a service (or republishes it whole, which also undoes a withdrawal)."""

    id: ServiceId
    organisation: Name
    organisation_description: Text = ""
    name: Name
    description: Description
    categories: Categories
    eligibility: Text = ""
    costs: Costs = ()
    languages: Languages = ()
    schedules: Schedules = ()
    areas: Areas = ()
    location: Location | None = None
    contacts: Contacts = ()
    url: Url | None = None
    email: Email | None = None

    def __post_init__(self) -> None:
        _check_lists(self.categories, self.languages, self.areas)


class ServiceUpdated(Body, frozen=True, kw_only=True):
    """The publisher changes some fields of its service; fields left out stay as they were.

    ``location``, ``url`` and ``email`` may be set to null to remove them.
    """

    id: ServiceId
    publisher: HubId | None = None
    """The publishing hub; left out means the author (only the publisher may update)."""
    organisation: Name | UnsetType = UNSET
    organisation_description: Text | UnsetType = UNSET
    name: Name | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    categories: Categories | UnsetType = UNSET
    eligibility: Text | UnsetType = UNSET
    costs: Costs | UnsetType = UNSET
    languages: Languages | UnsetType = UNSET
    schedules: Schedules | UnsetType = UNSET
    areas: Areas | UnsetType = UNSET
    location: Location | UnsetType | None = UNSET
    contacts: Contacts | UnsetType = UNSET
    url: Url | UnsetType | None = UNSET
    email: Email | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        if not self.changes():
            raise ValueError(
                f"an update of service {self.id!r} must change at least one of "
                + ", ".join(UPDATABLE)
            )
        _check_lists(
            None if self.categories is UNSET else self.categories,
            None if self.languages is UNSET else self.languages,
            None if self.areas is UNSET else self.areas,
        )

    def changes(self) -> dict[str, object]:
        """The fields this update sets, by name."""
        return {f: getattr(self, f) for f in UPDATABLE if getattr(self, f) is not UNSET}


class ServiceWithdrawn(Body, frozen=True, kw_only=True):
    """The publisher withdraws its service from the directory."""

    service: ServiceId
    publisher: HubId | None = None
    reason: Text = ""


class CapacityReported(Body, frozen=True, kw_only=True):
    """The publisher says whether its service is taking people on, as of a date."""

    service: ServiceId
    publisher: HubId | None = None
    status: CapacityStatus
    as_of: dt.date
    note: Text = ""


UPDATABLE: Final[tuple[str, ...]] = tuple(
    f.name for f in msgspec.structs.fields(ServicePublished) if f.name != "id"
)


def _check_lists(
    categories: tuple[str, ...] | None,
    languages: tuple[str, ...] | None,
    areas: tuple[str, ...] | None,
) -> None:
    for what, items in (("categories", categories), ("languages", languages), ("areas", areas)):
        if items is not None:
            unique(what, items)


KINDS.register("service.published", ServicePublished, max_body=65536)
KINDS.register("service.updated", ServiceUpdated, max_body=65536)
KINDS.register("service.withdrawn", ServiceWithdrawn, max_body=24576)
KINDS.register("capacity.reported", CapacityReported, max_body=24576)
