"""Plain-English words for the pathway's values, and form options built from them
(seed 004 asks for plain English: pages never show a bare code like ``in-progress``)."""

from __future__ import annotations

from typing import Final

from hubnode.console import reading
from hubnode.projections.pathway_read import CLAIM_MOVE

CHANNEL_LABELS: Final = {
    "walk-in": "Walked in",
    "phone": "Phoned",
    "web": "Online",
    "paper": "On paper (letter or form)",
}
PURPOSE_LABELS: Final = {
    "referral": "Being referred to another hub or service",
    "follow-up": "Being contacted afterwards to check they got help",
    "advocacy": "A hub taking up their case if the help was not right",
}
URGENCY_LABELS: Final = {
    "routine": "Routine",
    "soon": "Soon: within a few days",
    "urgent": "Urgent: today",
}

MOVE_LABELS: Final = {
    CLAIM_MOVE: "Take this referral",
    "accepted": "Accept",
    "rejected": "Turn down",
    "in-progress": "Start work",
    "on-hold": "Put on hold",
    "completed": "Mark as completed",
    "failed": "Mark as not helped",
    "cancelled": "Cancel the referral",
    "entered-in-error": "Mark as entered in error",
}
"""Each next move (a status, or claim) → the button that makes it."""
STATUS_LABELS: Final = {
    "requested": "Waiting for an answer",
    "accepted": "Accepted",
    "rejected": "Turned down",
    "cancelled": "Cancelled",
    "in-progress": "In progress",
    "on-hold": "On hold",
    "completed": "Completed",
    "failed": "Not helped",
    "entered-in-error": "Entered in error",
}

OUTCOME_LABELS: Final = {
    "resolved": "Resolved: the person got what they needed",
    "unresolved": "Unresolved: taken as far as it can go",
    "withdrawn": "Withdrawn: the person no longer wants it taken up",
}


Option = tuple[str, str, str | None]
"""A checkbox or radio button: its value, its label and a hint (or None)."""


def options(labels: dict[str, str]) -> list[Option]:
    return [(value, label, None) for value, label in labels.items()]


def hub_options(hubs: list[reading.Hub]) -> list[Option]:
    return [
        (h.shown, h.name, ", ".join(filter(None, [", ".join(h.roles), h.area])) or None)
        for h in hubs
    ]
