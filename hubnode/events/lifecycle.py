"""The referral lifecycle: one transition table that code, CLI and docs all read (STYLE §2).

A referral has two parties: the **referring** hub (the point of access that logged the
enquiry and made the referral) and the **receiving** hub (the hub named, the publisher of
the service named, or the hub that claimed an open referral). Each move is allowed to one
party only. Moving to rejected, cancelled, on-hold or failed needs a reason.

A **claim** is the move requested → accepted made on an *open* referral (no receiving
hub yet) by a hub that thereby becomes the receiving hub; see :data:`CLAIM`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal

from hubnode.errors import IllegalTransition

Status = Literal[
    "requested",
    "accepted",
    "rejected",
    "cancelled",
    "in-progress",
    "on-hold",
    "completed",
    "failed",
    "entered-in-error",
]
STATUSES: Final[tuple[Status, ...]] = (
    "requested",
    "accepted",
    "rejected",
    "cancelled",
    "in-progress",
    "on-hold",
    "completed",
    "failed",
    "entered-in-error",
)
Party = Literal["referring", "receiving"]

REFERRING: Final = "referring"
RECEIVING: Final = "receiving"

TRANSITIONS: Final[Mapping[Status, Mapping[Status, Party]]] = {
    "requested": {
        "accepted": RECEIVING,
        "rejected": RECEIVING,
        "cancelled": REFERRING,
        "entered-in-error": REFERRING,
    },
    "accepted": {
        "in-progress": RECEIVING,
        "on-hold": RECEIVING,
        "completed": RECEIVING,
        "failed": RECEIVING,
        "cancelled": REFERRING,
        "entered-in-error": REFERRING,
    },
    "in-progress": {
        "on-hold": RECEIVING,
        "completed": RECEIVING,
        "failed": RECEIVING,
        "cancelled": REFERRING,
        "entered-in-error": REFERRING,
    },
    "on-hold": {
        "in-progress": RECEIVING,
        "failed": RECEIVING,
        "cancelled": REFERRING,
        "entered-in-error": REFERRING,
    },
    "rejected": {"entered-in-error": REFERRING},
    "cancelled": {"entered-in-error": REFERRING},
    "completed": {"entered-in-error": REFERRING},
    "failed": {"entered-in-error": REFERRING},
    "entered-in-error": {},
}
"""current status → {next status: the party allowed to make that move}."""

NEEDS_REASON: Final[frozenset[Status]] = frozenset({"rejected", "cancelled", "on-hold", "failed"})
TERMINAL: Final[frozenset[Status]] = frozenset(s for s, moves in TRANSITIONS.items() if not moves)
CLOSED: Final[frozenset[Status]] = frozenset(
    {"rejected", "cancelled", "completed", "failed", "entered-in-error"}
)
"""Statuses after which nothing more happens to the person's case at the receiving hub."""
OPEN: Final[frozenset[Status]] = frozenset(STATUSES) - CLOSED

CLAIM: Final[tuple[Status, Status]] = ("requested", "accepted")
"""The move a claim makes on an open referral; the claimer becomes the receiving hub."""


def allowed_moves(current: Status, party: Party) -> list[Status]:
    """The statuses ``party`` may move a referral in ``current`` to, in table order."""
    return [to for to, who in TRANSITIONS[current].items() if who == party]


def check_transition(current: Status, to: Status, party: Party, reason: str = "") -> None:
    """Raise :class:`IllegalTransition` unless ``party`` may move ``current`` → ``to``."""
    moves = TRANSITIONS[current]
    if to not in moves:
        nexts = ", ".join(moves) or "none: it is final"
        raise IllegalTransition(
            current,
            to,
            party,
            f"a referral cannot move from {current} to {to} (asked by the {party} hub); from "
            f"{current} it can move to {nexts}",
        )
    if moves[to] != party:
        raise IllegalTransition(
            current,
            to,
            party,
            f"only the {moves[to]} hub may move a referral from {current} to {to}; "
            f"this hub is the {party} hub",
        )
    if to in NEEDS_REASON and not reason.strip():
        raise IllegalTransition(
            current, to, party, f"moving a referral to {to} needs a reason (--reason)"
        )
