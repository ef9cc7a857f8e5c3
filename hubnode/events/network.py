"""Network kinds: hubs registering, admitting each other and updating their profile.

Roles come from the seeds (communityNET's hub roles): a **gateway** is a point of access
that logs enquiries, **direct-delivery** hubs provide services themselves, **follow-up**
hubs check that a referral reached a satisfactory outcome, **advocacy** hubs take up
cases that failed, and **new-services** hubs develop services where there are gaps.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from hubnode.events.fields import HubId, line, text, unique
from hubnode.events.kinds import KINDS, Body

Role = Literal["gateway", "direct-delivery", "follow-up", "advocacy", "new-services"]
ROLES: tuple[Role, ...] = ("gateway", "direct-delivery", "follow-up", "advocacy", "new-services")

Name = Annotated[str, line(min_length=1, max_length=120)]
Line = Annotated[str, line(min_length=1, max_length=200)]
Note = Annotated[str, text(max_length=2000)]
Roles = Annotated[tuple[Role, ...], msgspec.Meta(min_length=1, max_length=len(ROLES))]
# Both bodies leave out fields at their default (omit_defaults): a body without a seal key
# encodes exactly as before seal keys existed, and one update sends only what it changes.
# Bodies with explicit nils (written by hubnode before seal keys) decode the same.
SealPublic = Annotated[
    bytes,
    msgspec.Meta(min_length=32, max_length=32, description="X25519 public key for sealing"),
]


class HubRegistered(Body, frozen=True, kw_only=True, omit_defaults=True):
    """A hub announces itself: name, roles, area served and a public contact."""

    name: Name
    roles: Roles
    area: Line
    contact: Line
    seal_key: SealPublic | None = None
    """The key other hubs seal people's data keys to (docs/privacy.md)."""

    def __post_init__(self) -> None:
        unique("roles", self.roles)


class HubAdmitted(Body, frozen=True, kw_only=True):
    """This hub vouches for another hub joining the network."""

    hub: HubId
    """The admitted hub's id. A key no hub can have (small order, or non-canonical) fails
    the schema, so no vouch can open a write path for a key anyone can sign as."""
    name: Name | None = None
    note: Note = ""


class HubProfileUpdated(Body, frozen=True, kw_only=True, omit_defaults=True):
    """A hub changes its public profile; fields left out stay as they were."""

    name: Name | None = None
    roles: Roles | None = None
    area: Line | None = None
    contact: Line | None = None
    seal_key: SealPublic | None = None
    """A new seal key (hubs rotate it after destroying people's data keys)."""

    def __post_init__(self) -> None:
        if self.roles is not None:
            unique("roles", self.roles)
        if (self.name, self.roles, self.area, self.contact, self.seal_key) == (None,) * 5:
            raise ValueError(
                "a profile update must change at least one of name, roles, area, contact, seal_key"
            )


KINDS.register("hub.registered", HubRegistered, max_body=4096)
KINDS.register("hub.admitted", HubAdmitted, max_body=16384)
KINDS.register("hub.profile_updated", HubProfileUpdated, max_body=4096)
