"""Skills-exchange kinds: offers and requests of skills, and the time-credit ledger.

The seeds ask hubs to "broker skills exchanges between Community Hubs to trap money
within the network": a hub offers a skill (gardening, form filling, minibus driving) or
asks for one, and the hubs settle in time credits, counted in seconds.

Offers, requests and transfers are named by an id chosen by the authoring hub, unique
within that hub (``(hub, id)`` is the global identity). A withdrawal names the author's
own offer or request, so only the author can withdraw it. A transfer moves ``seconds``
from ``from_hub`` (debited) to ``to_hub`` (credited); one of them proposes it and the
other confirms it (``hubnode.projections.skills`` explains how the ledger counts them).

Each body has an optional ``staff`` field, as pathway bodies do: the pseudonym (``st-…``)
of the staff member who acted in the console. It was added after release, so it must not
change the bytes of a body encoded without it. Bodies whose other fields are all required
omit it when unset (``omit_defaults``); the others encode it (as nil from the command
line), since ``omit_defaults`` there would also drop their other defaults.
"""

from __future__ import annotations

import datetime
from typing import Annotated

import msgspec

from hubnode.events.fields import HubId, line, text, unique
from hubnode.events.kinds import KINDS, Body
from hubnode.events.pathway import StaffId

ItemId = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z",
        description="an id chosen by its hub: letters, digits, '.', '_', '-'; up to 64",
    ),
]
Tag = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[a-z0-9]+(-[a-z0-9]+)*\Z",
        max_length=40,
        description="a lower-case slug, e.g. form-filling",
    ),
]
Tags = Annotated[tuple[Tag, ...], msgspec.Meta(min_length=1, max_length=20)]
District = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Z]{1,2}[0-9][0-9A-Z]?\Z",
        description="a UK postcode district in capitals, e.g. DL1, DL14, EC1A",
    ),
]
Area = Annotated[tuple[District, ...], msgspec.Meta(min_length=1, max_length=50)]
Title = Annotated[str, line(min_length=1, max_length=120)]
Text = Annotated[str, text(max_length=4000)]
Memo = Annotated[str, line(max_length=500)]
Reason = Annotated[str, line(min_length=1, max_length=500)]
HoursPerWeek = Annotated[float, msgspec.Meta(gt=0, le=168)]
Seconds = Annotated[int, msgspec.Meta(gt=0, le=366 * 24 * 3600)]
"""One transfer moves at most a (leap) year of time: anything more is a typing slip."""


class ItemRef(msgspec.Struct, frozen=True, kw_only=True):
    """An offer or request of some hub, named by that hub's id for it."""

    hub: HubId
    id: ItemId


class SkillOffered(Body, frozen=True, kw_only=True):
    """This hub offers a skill to the network, in the postcode districts it names."""

    offer_id: ItemId
    tags: Tags
    title: Title
    description: Text = ""
    area: Area
    hours_per_week: HoursPerWeek | None = None
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""

    def __post_init__(self) -> None:
        unique("tags", self.tags)
        unique("area", self.area)


class SkillRequested(Body, frozen=True, kw_only=True):
    """This hub asks the network for a skill, in the postcode districts it names."""

    request_id: ItemId
    tags: Tags
    title: Title
    description: Text = ""
    area: Area
    needed_by: datetime.date | None = None
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""

    def __post_init__(self) -> None:
        unique("tags", self.tags)
        unique("area", self.area)


class SkillWithdrawn(Body, frozen=True, kw_only=True):
    """This hub withdraws one of its own offers or requests (exactly one id is set)."""

    offer_id: ItemId | None = None
    request_id: ItemId | None = None
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""

    def __post_init__(self) -> None:
        if (self.offer_id is None) == (self.request_id is None):
            raise ValueError("a withdrawal names exactly one of offer_id, request_id")


class TransferProposed(Body, frozen=True, kw_only=True):
    """This hub proposes moving time credits from ``from_hub`` to ``to_hub``.

    The proposer is one of the two parties (the projection ignores a proposal by a third
    hub); the other party's confirmation makes the transfer count.
    """

    transfer_id: ItemId
    from_hub: HubId
    to_hub: HubId
    seconds: Seconds
    memo: Memo = ""
    offer: ItemRef | None = None
    request: ItemRef | None = None
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""

    def __post_init__(self) -> None:
        if self.from_hub == self.to_hub:
            raise ValueError("from_hub and to_hub must be two different hubs")


class TransferConfirmed(Body, frozen=True, kw_only=True, omit_defaults=True):
    """This hub, the other party, confirms the transfer ``transfer_id`` of ``proposer``."""

    proposer: HubId
    transfer_id: ItemId
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""


class TransferReversed(Body, frozen=True, kw_only=True, omit_defaults=True):
    """This hub, a party to a confirmed transfer, reverses it and says why."""

    proposer: HubId
    transfer_id: ItemId
    reason: Reason
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""


KINDS.register("skill.offered", SkillOffered, max_body=24576)
KINDS.register("skill.requested", SkillRequested, max_body=24576)
KINDS.register("skill.withdrawn", SkillWithdrawn, max_body=2048)
KINDS.register("time.transfer_proposed", TransferProposed, max_body=4096)
KINDS.register("time.transfer_confirmed", TransferConfirmed, max_body=2048)
KINDS.register("time.transfer_reversed", TransferReversed, max_body=4096)
