"""Pathway kinds: enquiries, consent, referrals, follow-up, advocacy and erasure (DESIGN §8).

From the seeds: a person comes to any hub (a *point of access*, by walk-in, phone, web or
paper); the enquiry is logged; they are referred to the hub or service that can help, or
to any hub offering what they need (an open referral another hub *claims*); someone then
checks they got a satisfactory response (*follow-up*) and, where it failed, takes it up
(*advocacy*).

Only coordinating fields travel in clear: a random subject pseudonym, need categories,
postcode district, urgency, channel, statuses, dates and the pseudonym of the staff
member who acted (``staff``, never a name). Everything personal — name,
contact details, date of birth, address, notes about the person — travels as
:class:`Sealed` bytes encrypted with the subject's data key, and that key is sealed to
each hub in the person's consent (:class:`KeyBox`, in ``consent.recorded``). See
docs/privacy.md for the construction and :mod:`hubnode.privacy` for the code.

A subject is named by (owning hub, pseudonym): the owner is the hub that logged the
enquiry; only it records consent, refers and erases. Reasons and outcomes are short clear
text for coordination and must not hold personal data. Bodies leave out fields at their
default (``omit_defaults``): an absent note or staff member costs no bytes.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from hubnode.events.directory import Category, District
from hubnode.events.feedback import ServiceRef
from hubnode.events.fields import HubId, LocalId, line, unique
from hubnode.events.kinds import KINDS, Body
from hubnode.events.lifecycle import Status

SUBJECT_PATTERN: Final = r"^s-[a-z2-7]{20}\Z"
Subject = Annotated[
    str,
    msgspec.Meta(pattern=SUBJECT_PATTERN, description="a random subject pseudonym, s-…"),
]
STAFF_PATTERN: Final = r"^st-[a-z2-7]{16}\Z"
StaffId = Annotated[
    str,
    msgspec.Meta(
        pattern=STAFF_PATTERN,
        description="the pseudonym of the hub's staff member who acted, st-… (never a name)",
    ),
]
Channel = Literal["walk-in", "phone", "web", "paper"]
CHANNELS: Final[tuple[Channel, ...]] = ("walk-in", "phone", "web", "paper")
Urgency = Literal["routine", "soon", "urgent"]
URGENCIES: Final[tuple[Urgency, ...]] = ("routine", "soon", "urgent")
Purpose = Literal["referral", "follow-up", "advocacy"]
PURPOSES: Final[tuple[Purpose, ...]] = ("referral", "follow-up", "advocacy")
AdvocacyOutcome = Literal["resolved", "unresolved", "withdrawn"]
ADVOCACY_OUTCOMES: Final[tuple[AdvocacyOutcome, ...]] = ("resolved", "unresolved", "withdrawn")

Needs = Annotated[tuple[Category, ...], msgspec.Meta(min_length=1, max_length=10)]
Reason = Annotated[str, line(max_length=300)]
Outcome = Annotated[str, line(min_length=1, max_length=300)]
EventId = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
Key32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
MAX_SEALED: Final = 16 * 1024


class Sealed(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Personal fields encrypted with the subject's data key (ChaCha20-Poly1305)."""

    nonce: Annotated[bytes, msgspec.Meta(min_length=12, max_length=12)]
    data: Annotated[bytes, msgspec.Meta(min_length=16, max_length=MAX_SEALED + 16)]


class KeyBox(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The subject's data key sealed to one hub's X25519 key (X25519 + HKDF + AEAD)."""

    hub: HubId
    key: Key32
    """The recipient's seal key the box was made for (hubs rotate it on erasure)."""
    epk: Key32
    box: Annotated[bytes, msgspec.Meta(min_length=48, max_length=48)]


class ReferralRef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A referral by the referring hub and the id it gave the referral."""

    hub: HubId
    id: LocalId


class EnquiryLogged(Body, frozen=True, kw_only=True, omit_defaults=True):
    """A person's enquiry at a point of access; their details are sealed."""

    enquiry: LocalId
    subject: Subject
    channel: Channel
    needs: Needs
    urgency: Urgency = "routine"
    area: District | None = None
    person: Sealed
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""

    def __post_init__(self) -> None:
        unique("needs", self.needs)


class ConsentRecorded(Body, frozen=True, kw_only=True, omit_defaults=True):
    """The person's consent: purposes and the hubs that may hold their details.

    Replaces any earlier consent for the subject. ``keys`` seals the data key to every
    recipient and to the recording hub itself (which keeps the record).
    """

    subject: Subject
    purposes: Annotated[tuple[Purpose, ...], msgspec.Meta(min_length=1, max_length=3)]
    recipients: Annotated[tuple[HubId, ...], msgspec.Meta(max_length=50)]
    keys: Annotated[tuple[KeyBox, ...], msgspec.Meta(min_length=1, max_length=51)]
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""

    def __post_init__(self) -> None:
        unique("purposes", self.purposes)
        unique("recipients", self.recipients)
        unique("key box hubs", [k.hub for k in self.keys])
        if len({bytes(k.key) for k in self.keys}) != len(self.keys):
            raise ValueError("two key boxes are sealed to the same seal key")
        boxed = {k.hub for k in self.keys}
        missing = sorted(set(self.recipients) - boxed)
        if missing:
            raise ValueError(f"no sealed key for recipients {missing}")
        if len(boxed - set(self.recipients)) > 1:
            raise ValueError("keys may add only the recording hub to the recipients")


class ConsentWithdrawn(Body, frozen=True, kw_only=True, omit_defaults=True):
    """The person withdraws consent: other hubs destroy their copy of the data key."""

    subject: Subject
    reason: Reason = ""
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""


class ReferralRequested(Body, frozen=True, kw_only=True, omit_defaults=True):
    """A referral of a subject to a hub, to a service, or open to any hub offering a need."""

    referral: LocalId
    subject: Subject
    to_hub: HubId | None = None
    service: ServiceRef | None = None
    category: Category | None = None
    """For an open referral: the need any consented hub offering it may claim."""
    urgency: Urgency = "routine"
    note: Sealed | None = None
    """Notes about the person for the receiving hub, sealed with the subject's data key."""
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""

    def __post_init__(self) -> None:
        targets = sum(x is not None for x in (self.to_hub, self.service, self.category))
        if targets != 1:
            raise ValueError(
                "a referral goes to exactly one of: a hub (to_hub), a service, "
                "or any hub offering a category (category)"
            )


class ReferralClaimed(Body, frozen=True, kw_only=True, omit_defaults=True):
    """A hub takes an open referral; it becomes the receiving hub (requested → accepted)."""

    referral: ReferralRef
    parent: EventId
    """The id of the referral.requested event."""
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""


class ReferralStatusChanged(Body, frozen=True, kw_only=True, omit_defaults=True):
    """A move in the referral lifecycle (hubnode.events.lifecycle.TRANSITIONS)."""

    referral: ReferralRef
    parent: EventId
    """The id of the referral event this move follows (the latest the author had seen)."""
    status: Status
    reason: Reason = ""
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""


class ReferralOutcomeRecorded(Body, frozen=True, kw_only=True, omit_defaults=True):
    """The receiving hub records the outcome and whether the person was satisfied."""

    referral: ReferralRef
    outcome: Outcome
    satisfied: bool
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""


class FollowupRecorded(Body, frozen=True, kw_only=True, omit_defaults=True):
    """Someone checked with the person whether the referral met their need."""

    followup: LocalId
    referral: ReferralRef
    satisfied: bool
    note: Sealed | None = None
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""


class AdvocacyOpened(Body, frozen=True, kw_only=True, omit_defaults=True):
    """A hub takes up a referral that failed the person."""

    case: LocalId
    referral: ReferralRef
    note: Sealed | None = None
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""


class AdvocacyClosed(Body, frozen=True, kw_only=True, omit_defaults=True):
    """The hub that opened an advocacy case closes it."""

    case: LocalId
    outcome: AdvocacyOutcome
    note: Sealed | None = None
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""


class SubjectErased(Body, frozen=True, kw_only=True, omit_defaults=True):
    """The owning hub erases a subject: every holder destroys its copy of the data key."""

    subject: Subject
    reason: Annotated[str, line(min_length=1, max_length=300)]
    staff: StaffId | None = None
    """Which staff member acted, by pseudonym (the staff console fills it in)."""


class SubjectErasureConfirmed(Body, frozen=True, kw_only=True, omit_defaults=True):
    """This hub destroyed its copy of a subject's data key (and rotated its seal key)."""

    owner: HubId
    subject: Subject


SEALED_FIELDS: Final[dict[str, str]] = {
    "enquiry.logged": "person",
    "referral.requested": "note",
    "followup.recorded": "note",
    "advocacy.opened": "note",
    "advocacy.closed": "note",
}
"""Kind → its field holding :class:`Sealed` personal data."""

KINDS.register("enquiry.logged", EnquiryLogged, max_body=24576)
KINDS.register("consent.recorded", ConsentRecorded, max_body=16384)
KINDS.register("consent.withdrawn", ConsentWithdrawn, max_body=4096)
KINDS.register("referral.requested", ReferralRequested, max_body=24576)
KINDS.register("referral.claimed", ReferralClaimed, max_body=2048)
KINDS.register("referral.status_changed", ReferralStatusChanged, max_body=4096)
KINDS.register("referral.outcome_recorded", ReferralOutcomeRecorded, max_body=4096)
KINDS.register("followup.recorded", FollowupRecorded, max_body=24576)
KINDS.register("advocacy.opened", AdvocacyOpened, max_body=24576)
KINDS.register("advocacy.closed", AdvocacyClosed, max_body=24576)
KINDS.register("subject.erased", SubjectErased, max_body=4096)
KINDS.register("subject.erasure_confirmed", SubjectErasureConfirmed, max_body=2048)
