"""What the pathway actions refuse, and the checks on what callers give them.

Each refusal is a :class:`~hubnode.errors.HubnodeError`; the commands print the message
as it is (exit 2 for :class:`InvalidInput` and :class:`NoCapacity`, 1 for the others).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from hubnode.errors import HubnodeError
from hubnode.events.directory import District
from hubnode.events.fields import explain
from hubnode.events.ids import hub_display
from hubnode.events.kinds import Body
from hubnode.events.pathway import PURPOSES

DEFAULT_PURPOSES: Final = ("referral", "follow-up")

_EMAIL: Final = re.compile(r"\S+@\S+\.\S+")
_PHONE: Final = re.compile(r"(?<!\d)(?:\+\d|0)(?:[\s-]?\d){8,}")


class InvalidInput(HubnodeError, ValueError):
    """A value given to an action is not acceptable; ``field`` names it (for a form)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class SeveralOwners(InvalidInput):
    """Several hubs logged an enquiry under one pseudonym, and this hub is none of them.

    Pseudonyms are random, so this is a mistake or a hub reusing another's on purpose;
    either way the caller must say whose person it means. ``owners`` holds (hub, name)
    pairs, by name; the message names them and ``--owner``.
    """

    def __init__(self, subject: str, owners: Sequence[tuple[bytes, str]]) -> None:
        shown = "; ".join(f"{name} ({hub_display(hub)})" for hub, name in owners)
        super().__init__(
            "owner",
            f"{subject} was used by several hubs: {shown}; "
            "choose the hub that logged the person's enquiry with --owner HUB",
        )
        self.subject = subject
        self.owners = [hub for hub, _ in owners]


class NotFound(HubnodeError):
    """The referral, person or advocacy case named is not in this hub's views."""


class NotPermitted(HubnodeError):
    """This hub may not do that: it is not a party, the case is closed, the person erased."""


class NoCapacity(HubnodeError):
    """The service's latest capacity report says it has none; refer with ``anyway``."""

    def __init__(self, service: str, as_of: str) -> None:
        super().__init__(
            f"service {service} reported no capacity on {as_of}; refer anyway with "
            "--anyway, or find another with `hubnode directory search`"
        )
        self.service = service
        self.as_of = as_of


def check_clear_text(option: str, text: str) -> None:
    """Refuse ``text`` — which travels in clear to every hub — if it holds an email address
    or a phone number. (Names cannot be spotted; forms and help ask people not to.)"""
    found = (
        "email address" if _EMAIL.search(text) else "phone number" if _PHONE.search(text) else None
    )
    if found is not None:
        raise InvalidInput(
            option.removeprefix("--"),
            f"{option}: remove the {found}; this goes to every hub in clear",
        )


def when(ts: int) -> str:
    """A time (ms since the epoch) for messages: ``2030-01-31 09:30:00`` (UTC)."""
    return dt.datetime.fromtimestamp(ts / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def body(cls: type[Body], fields: dict[str, Any]) -> Body:
    """``fields`` as a ``cls`` body, its constraints checked (InvalidInput if not met)."""
    try:
        return msgspec.convert(fields, cls)
    except msgspec.ValidationError as e:
        raise InvalidInput(cls.__name__, f"{cls.__name__}: {explain(str(e))}") from None


def choice(option: str, value: str, choices: Sequence[str]) -> None:
    """Refuse ``value`` unless it is one of ``choices`` (the message lists them)."""
    if value not in choices:
        raise InvalidInput(option, f"--{option} {value!r}: use one of {', '.join(choices)}")


def unique_hubs(values: Sequence[bytes]) -> tuple[bytes, ...]:
    """``values`` without repeats, in the order given."""
    return tuple(dict.fromkeys(values))


def purposes_of(values: Sequence[str] | None) -> tuple[str, ...]:
    """The consent's purposes in their canonical order (default: referral, follow-up)."""
    chosen = list(values or DEFAULT_PURPOSES)
    for p in chosen:
        if p not in PURPOSES:
            raise InvalidInput("purpose", f"--purpose {p!r}: use {', '.join(PURPOSES)}")
    return tuple(p for p in PURPOSES if p in chosen)


def district(text: str) -> str:
    """A postcode district (``dl3`` → ``DL3``); never a full postcode."""
    try:
        return msgspec.convert(text.strip().upper(), District)
    except msgspec.ValidationError:
        raise InvalidInput(
            "area", f"--area {text!r}: give a postcode district such as DL1 or DL3"
        ) from None


def date_of_birth(value: str | dt.date | None) -> dt.date | None:
    """A date of birth given as a date or ``YYYY-MM-DD`` (empty: none)."""
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value.strip()) if value.strip() else None
    except ValueError:
        raise InvalidInput(
            "dob", f"--dob {value!r}: write the date of birth as YYYY-MM-DD"
        ) from None
