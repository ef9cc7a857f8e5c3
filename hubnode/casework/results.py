"""What the pathway actions return: small frozen records of what was appended or read."""

from __future__ import annotations

from dataclasses import dataclass

from hubnode.privacy.seal import Person
from hubnode.projections.pathway_read import Case, Referral, Step, SubjectInfo, referral_ref

RefKey = tuple[bytes, str]
"""A referral: (the referring hub, the id it gave the referral)."""


@dataclass(frozen=True)
class Logged:
    """An enquiry logged: the person's pseudonym, the enquiry id, its seq."""

    subject: str
    enquiry: str
    seq: int
    consent: tuple[bytes, ...]
    purposes: tuple[str, ...]


@dataclass(frozen=True)
class ConsentSaved:
    subject: str
    seq: int
    consent: tuple[bytes, ...]
    """The hubs that may hold the person's details now (none once withdrawn)."""
    purposes: tuple[str, ...]


@dataclass(frozen=True)
class Referred:
    referrer: bytes
    referral: str
    subject: str
    seq: int
    warning: str | None
    """Set when the service reported no capacity and the referral was made anyway."""

    @property
    def key(self) -> RefKey:
        return (self.referrer, self.referral)

    @property
    def ref(self) -> str:
        return referral_ref(self.referrer, self.referral)


@dataclass(frozen=True)
class Claimed:
    ref: str
    seq: int


@dataclass(frozen=True)
class Moved:
    ref: str
    was: str
    to: str
    seq: int


@dataclass(frozen=True)
class FollowedUp:
    followup: str
    ref: str
    case: str | None
    """The advocacy case opened with it, if one was."""
    seq: int


@dataclass(frozen=True)
class CaseOpened:
    case: str
    ref: str
    seq: int


@dataclass(frozen=True)
class CaseClosed:
    case: str
    outcome: str
    seq: int


@dataclass(frozen=True)
class Erased:
    subject: str
    seq: int
    destroyed: bool
    """This hub destroyed its key already (False: its running node will do it)."""
    rotated: bool
    """This hub's seal key was rotated and the new key published."""


@dataclass(frozen=True)
class PersonRecord:
    """A subject as this hub sees them: details only where it holds their key."""

    info: SubjectInfo
    details: list[tuple[str, Person]]
    """(enquiry id, the person's details) for each enquiry, where readable."""
    why_not: str | None
    """Why the details are not readable here (``erased``, no key …); None if they are."""
    destroyed_ms: int | None
    """When this hub destroyed its copy of the key on erasure; None if it held none."""


@dataclass(frozen=True)
class ReferralDetail:
    referral: Referral
    note: str | None
    """The referral's note in clear where readable; ``[sealed]``/``[erased]`` if not."""
    timeline: list[tuple[Step, str | None]]
    """Each later event with its note, opened the same way."""


@dataclass(frozen=True)
class CaseDetail:
    case: Case
    note: str | None
    close_note: str | None
