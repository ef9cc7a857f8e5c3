"""Who may do what in the staff console: one table that every route checks (STYLE §2).

Three roles. A **worker** (staff or volunteer at the point of access) logs enquiries,
refers, moves referrals along, follows up and opens advocacy when a person was let down.
A **coordinator** also closes advocacy cases, records or withdraws a person's consent
afterwards and marks referrals entered in error. An **admin** also erases people. Staff
accounts themselves are managed on the hub's server (``hubnode staff``), not in pages.

Beyond the pathway: any worker may offer or ask for a skill on the hub's behalf; moving
the hub's time credits (proposing, confirming or reversing a transfer) and committing the hub to a
tender (watching tenders, joining or leading a bid cluster) are for coordinators and admins.

What the pathway allows *this hub* to do (the referral transition table, consent) is
checked by :mod:`hubnode.casework`; this table only says which of the hub's staff may ask.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

Role = Literal["worker", "coordinator", "admin"]
ROLES: Final[tuple[Role, ...]] = ("worker", "coordinator", "admin")

Permission = Literal[
    "view",
    "log-enquiry",
    "read-person",
    "refer",
    "move-referral",
    "void-referral",
    "follow-up",
    "open-advocacy",
    "close-advocacy",
    "change-consent",
    "erase-person",
    "offer-skills",
    "move-time",
    "watch-tenders",
    "join-cluster",
    "lead-cluster",
]

_ALL: Final[frozenset[Role]] = frozenset(ROLES)
_LEADS: Final[frozenset[Role]] = frozenset({"coordinator", "admin"})

PERMISSIONS: Final[Mapping[Permission, frozenset[Role]]] = {
    "view": _ALL,  # today, referrals, follow-ups, advocacy, directory, skills, tenders, network
    "log-enquiry": _ALL,
    "read-person": _ALL,  # and only where this hub holds the person's key
    "refer": _ALL,
    "move-referral": _ALL,  # claim, accept, reject, start, hold, complete, fail, cancel
    "void-referral": _LEADS,  # entered in error
    "follow-up": _ALL,
    "open-advocacy": _ALL,
    "close-advocacy": _LEADS,
    "change-consent": _LEADS,
    "erase-person": frozenset({"admin"}),
    "offer-skills": _ALL,  # offer, request, withdraw
    "move-time": _LEADS,  # propose, confirm or reverse a time-credit transfer
    "watch-tenders": _LEADS,
    "join-cluster": _LEADS,
    "lead-cluster": _LEADS,  # form a cluster, assign its lots, submit its bid
}
"""Permission → the roles that have it."""

DESCRIPTIONS: Final[Mapping[Permission, str]] = {
    "view": "see this hub's work",
    "log-enquiry": "log an enquiry",
    "read-person": "read a person's details",
    "refer": "refer a person",
    "move-referral": "move a referral along",
    "void-referral": "mark a referral as entered in error",
    "follow-up": "record a follow-up",
    "open-advocacy": "open an advocacy case",
    "close-advocacy": "close an advocacy case",
    "change-consent": "change a person's consent",
    "erase-person": "erase a person",
    "offer-skills": "offer or ask for a skill",
    "move-time": "propose, confirm or reverse a time-credit transfer",
    "watch-tenders": "watch tenders",
    "join-cluster": "join a bid cluster",
    "lead-cluster": "lead a bid cluster",
}
"""Permission → what it lets someone do, for the page that refuses it."""


def allowed(role: Role, permission: Permission) -> bool:
    return role in PERMISSIONS[permission]


def move_permission(to: str) -> Permission:
    """The permission a referral move (a status, or ``claim``) needs: marking one entered
    in error is for coordinators and admins."""
    return "void-referral" if to == "entered-in-error" else "move-referral"
