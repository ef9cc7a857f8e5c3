"""The pathway actions that append: log an enquiry, record or withdraw consent, refer,
claim, move a referral along, follow up, open and close advocacy, erase a person.

Each action brings the keyring and views up to date, checks what the views would ignore
or the person did not agree to, seals personal fields before they leave this process, and
appends its events in one transaction (all or none).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self

import msgspec

from hubnode import crypto
from hubnode.casework.inputs import (
    InvalidInput,
    NoCapacity,
    NotFound,
    NotPermitted,
    body,
    check_clear_text,
    choice,
    date_of_birth,
    district,
    purposes_of,
    unique_hubs,
    when,
)
from hubnode.casework.reading import CaseReader
from hubnode.casework.results import (
    CaseClosed,
    CaseOpened,
    Claimed,
    ConsentSaved,
    Erased,
    FollowedUp,
    Logged,
    Moved,
    Referred,
    RefKey,
)
from hubnode.errors import ConsentRefused, PrivacyError
from hubnode.events.ids import hub_display
from hubnode.events.kinds import Body
from hubnode.events.lifecycle import STATUSES, TRANSITIONS, Party, Status, check_transition
from hubnode.events.pathway import (
    ADVOCACY_OUTCOMES,
    CHANNELS,
    URGENCIES,
    AdvocacyClosed,
    AdvocacyOpened,
    ConsentRecorded,
    ConsentWithdrawn,
    EnquiryLogged,
    FollowupRecorded,
    ReferralClaimed,
    ReferralOutcomeRecorded,
    ReferralRequested,
    ReferralStatusChanged,
    Sealed,
    SubjectErased,
)
from hubnode.privacy.keyring import catch_up_keys, seal_keys
from hubnode.privacy.seal import Note, Person, key_boxes, new_subject, seal_value, sealed_aad
from hubnode.projections.pathway_read import Referral, SubjectInfo, case
from hubnode.store.log import Appended


def new_id(prefix: str) -> str:
    """A record id this hub gives: ``prefix`` and 40 random bits (``r-1a2b3c4d5e``)."""
    return f"{prefix}-{secrets.token_hex(5)}"


def consent_command(info: SubjectInfo, hub: bytes | None = None) -> str:
    """The ``consent record`` that keeps the person's consent and adds ``hub`` and referral."""
    hubs = [*info.consent.recipients, *([hub] if hub is not None else [])]
    purposes = dict.fromkeys([*info.consent.purposes, "referral"])
    return " ".join(
        ["hubnode consent record --subject", info.subject]
        + [f"--consent {hub_display(h)}" for h in hubs]
        + [f"--purpose {p}" for p in purposes]
    )


def with_staff(body: Body, staff: str) -> Body:
    """``body`` naming ``staff`` as who acted, if its kind has a ``staff`` field."""
    if "staff" not in body.__struct_fields__:
        return body
    return msgspec.structs.replace(body, staff=staff)


class Casework(CaseReader):
    """The pathway actions of one hub, over its open log, keyring and views.

    Open one for a run of actions with ``async with Casework.open(folder) as cw``, or build
    one over a log, keyring and views a long-running process already holds.
    """

    staff: str | None = None
    """The pseudonym (``st-…``) of the staff member acting, put in the ``staff`` field of
    every body appended (the staff console sets it with :meth:`acting`)."""

    @contextmanager
    def acting(self, staff: str) -> Iterator[Self]:
        """Actions run inside record ``staff`` as who acted. Not for concurrent actions on
        one instance with different staff (the console runs one action at a time)."""
        self.staff = staff
        try:
            yield self
        finally:
            self.staff = None

    async def _append(self, items: list[tuple[str, Body]]) -> list[Appended]:
        """Sign and append ``items`` in one transaction, then bring the views up to date:
        once an action returns, what this casework reads includes it."""
        if self.staff is not None:
            items = [(kind, with_staff(body, self.staff)) for kind, body in items]
        done = await self.log.append_many(items)
        await self.refresh(keys=False)
        return done

    # -- sealing ------------------------------------------------------------------------

    def _data_key(self, owner: bytes, subject: str) -> bytes:
        return self.keyring.data_key(owner, subject)  # PrivacyError says why not

    def _seal_note(
        self, owner: bytes, subject: str, kind: str, record: str, text: str
    ) -> Sealed | None:
        """``text`` sealed for the subject, bound to this hub's record (None if empty)."""
        if not text.strip():
            return None
        key = self._data_key(owner, subject)
        aad = sealed_aad(self.net, owner, subject, kind, self.me, record)
        try:
            # convert, not the constructor: it checks the note's length limit.
            return seal_value(key, msgspec.convert({"text": text.strip()}, Note), aad)
        except (PrivacyError, msgspec.ValidationError) as e:
            raise InvalidInput("note", f"the note cannot be sealed: {e}") from None

    async def _consent_body(
        self, subject: str, key: bytes, recipients: Sequence[bytes], purposes: Sequence[str]
    ) -> Body:
        """``consent.recorded`` with the data key sealed to each recipient and to this hub."""
        keys = await seal_keys(self.log, [h for h in recipients if h != self.me])
        keys[self.me] = self.keyring.seal_key.public
        return body(
            ConsentRecorded,
            {
                "subject": subject,
                "purposes": list(purposes),
                "recipients": [hub_display(h) for h in recipients],
                "keys": msgspec.to_builtins(key_boxes(self.net, self.me, subject, key, keys)),
            },
        )

    # -- enquiry and consent ------------------------------------------------------------

    async def log_enquiry(
        self,
        *,
        name: str,
        needs: Sequence[str],
        channel: str,
        phone: str = "",
        email: str = "",
        dob: str | dt.date | None = None,
        address: str = "",
        notes: str = "",
        urgency: str = "routine",
        area: str | None = None,
        consent: Sequence[bytes] = (),
        purposes: Sequence[str] | None = None,
    ) -> Logged:
        """Log a person's enquiry with their consent; their details are sealed.

        Only this hub and the ``consent`` hubs can ever read the details.
        """
        choice("channel", channel, CHANNELS)
        choice("urgency", urgency, URGENCIES)
        born = date_of_birth(dob)
        fields = {"name": name, "phone": phone, "email": email, "address": address}
        try:
            person = msgspec.convert(
                {**{k: v.strip() for k, v in fields.items()}, "dob": born, "notes": notes.strip()},
                Person,
            )
        except msgspec.ValidationError as e:
            raise InvalidInput("person", f"the person's details: {e}") from None
        recipients, chosen = unique_hubs(consent), purposes_of(purposes)
        where = district(area) if area and area.strip() else None
        await self.refresh()  # publishes this hub's seal key if it has not yet
        me = self.me
        subject, enquiry = new_subject(), new_id("e")
        key = crypto.new_data_key()
        aad = sealed_aad(self.net, me, subject, "enquiry.logged", me, enquiry)
        logged = body(
            EnquiryLogged,
            {
                "enquiry": enquiry,
                "subject": subject,
                "channel": channel,
                "needs": sorted(set(n.strip().lower() for n in needs)),
                "urgency": urgency,
                "area": where,
                "person": msgspec.to_builtins(seal_value(key, person, aad)),
            },
        )
        recorded = await self._consent_body(subject, key, recipients, chosen)
        # Before the events: never a subject without its key. Grouped with other tasks'
        # (staff at the console) and written on a thread: the node's loop goes on.
        await self.keyring.remember_grouped(me, subject, key)
        done = await self._append([("enquiry.logged", logged), ("consent.recorded", recorded)])
        return Logged(subject, enquiry, done[0].seq, recipients, chosen)

    async def record_consent(
        self, subject: str, consent: Sequence[bytes], purposes: Sequence[str] | None = None
    ) -> ConsentSaved:
        """Record the person's consent again: it replaces what they agreed before (hubs
        left out lose the details)."""
        recipients, chosen = unique_hubs(consent), purposes_of(purposes)
        await self.refresh()
        self.own_subject(subject)
        key = self._data_key(self.me, subject)
        recorded = await self._consent_body(subject, key, recipients, chosen)
        (done,) = await self._append([("consent.recorded", recorded)])
        return ConsentSaved(subject, done.seq, recipients, chosen)

    async def withdraw_consent(self, subject: str, reason: str = "") -> ConsentSaved:
        """The person withdraws consent: other hubs destroy their copy of the key."""
        await self.refresh()
        self.own_subject(subject)
        check_clear_text("--reason", reason)
        withdrawn = body(ConsentWithdrawn, {"subject": subject, "reason": reason.strip()})
        (done,) = await self._append([("consent.withdrawn", withdrawn)])
        return ConsentSaved(subject, done.seq, (), ())

    # -- referrals ----------------------------------------------------------------------

    def _capacity(self, hub: bytes, service: str) -> tuple[str, str] | None:
        """(status, as of) of the service's latest capacity report, None if none."""
        rows = self.views.query(
            "directory",
            "SELECT s.withdrawn, k.status, k.as_of FROM {services} s LEFT JOIN {capacity} k "
            "ON k.publisher = s.publisher AND k.service = s.service "
            "WHERE s.publisher = ? AND s.service = ?",
            (hub, service),
        )
        if not rows or rows[0][0]:
            gone = "was withdrawn" if rows else "is not in this hub's directory"
            raise NotFound(
                f"service {hub_display(hub)}:{service} {gone}; find one with "
                "`hubnode directory search`"
            )
        _, status, as_of = rows[0]
        return None if status is None else (status, as_of)

    def _check_consent(self, info: SubjectInfo, target: bytes | None) -> None:
        subject = info.subject
        if "referral" not in info.consent.purposes:
            raise ConsentRefused(
                f"the person's consent for {subject} does not cover referral; if they agree, "
                f"record it first: {consent_command(info)}"
            )
        if target is not None and target != self.me and target not in info.consent.recipients:
            raise ConsentRefused(
                f"the person's consent does not name {hub_display(target)}, so they cannot be "
                f"referred there. If they agree, record it first: {consent_command(info, target)}"
            )
        if target is None and not info.consent.recipients:
            raise ConsentRefused(
                f"the person's consent for {subject} names no other hub, so none may claim an "
                "open referral; record their consent for the hubs they agree to first"
            )

    async def refer(
        self,
        subject: str,
        *,
        to_hub: bytes | None = None,
        service: tuple[bytes, str] | None = None,
        category: str | None = None,
        note: str = "",
        urgency: str = "routine",
        anyway: bool = False,
    ) -> Referred:
        """Refer a person to a hub, a service (hub, id) or any hub offering ``category``.

        A service whose latest capacity report is no-capacity raises :class:`NoCapacity`
        unless ``anyway``; then the result carries a warning.
        """
        if sum(x is not None for x in (to_hub, service, category)) != 1:
            raise InvalidInput(
                "to", "give exactly one of --to-hub HUB, --service HUB:SERVICE, --category NEED"
            )
        choice("urgency", urgency, URGENCIES)
        target = service[0] if service is not None else to_hub
        await self.refresh()
        info = self.own_subject(subject)
        self._check_consent(info, target)
        warning = None
        if service is not None:
            capacity = self._capacity(*service)
            if capacity is not None and capacity[0] == "no-capacity":
                shown = f"{hub_display(service[0])}:{service[1]}"
                if not anyway:
                    raise NoCapacity(shown, capacity[1])
                warning = f"{shown} reported no capacity on {capacity[1]}"
        rid = new_id("r")
        fields: dict[str, Any] = {"referral": rid, "subject": subject, "urgency": urgency}
        if service is not None:
            fields["service"] = {"hub": hub_display(service[0]), "id": service[1]}
        elif target is not None:
            fields["to_hub"] = hub_display(target)
        else:
            fields["category"] = (category or "").strip().lower()
        sealed = self._seal_note(self.me, subject, "referral.requested", rid, note)
        if sealed is not None:
            fields["note"] = msgspec.to_builtins(sealed)
        requested = body(ReferralRequested, fields)
        (done,) = await self._append([("referral.requested", requested)])
        return Referred(self.me, rid, subject, done.seq, warning)

    async def claim(self, key: RefKey) -> Claimed:
        """Take an open referral: this hub becomes the receiving hub (requested → accepted)."""
        await self.refresh()
        r = self.find_referral(key)
        if not r.claimable_by(self.me):
            why = (
                f"its receiving hub is {hub_display(r.receiver)}"
                if r.receiver is not None
                else "this hub made it"
                if r.referrer == self.me
                else f"it is {r.status}"
                if r.status != "requested"
                else "the person's consent does not name this hub"
            )
            raise NotPermitted(f"this hub cannot claim {r.ref}: {why}")
        claimed = body(
            ReferralClaimed,
            {"referral": {"hub": hub_display(r.referrer), "id": r.id}, "parent": r.root},
        )
        (done,) = await self._append([("referral.claimed", claimed)])
        return Claimed(r.ref, done.seq)

    async def move(
        self,
        key: RefKey,
        to: str,
        reason: str = "",
        outcome: str | None = None,
        satisfied: bool | None = None,
    ) -> Moved:
        """Move a referral to status ``to`` if the transition table lets this hub; with
        ``outcome`` and ``satisfied``, record the outcome in the same transaction."""
        choice("status", to, STATUSES)
        status: Status = next(s for s in STATUSES if s == to)
        if (outcome is None) != (satisfied is None):
            raise InvalidInput(
                "outcome", "give both --outcome TEXT and --satisfied yes|no to record the outcome"
            )
        check_clear_text("--reason", reason)
        check_clear_text("--outcome", outcome or "")
        await self.refresh()
        r = self.find_referral(key)
        roles = r.roles(self.me)
        if not roles:
            receiving = hub_display(r.receiver) if r.receiver else "none yet"
            raise NotPermitted(
                f"this hub is neither the referring hub ({hub_display(r.referrer)}) nor the "
                f"receiving hub ({receiving}) of {r.ref}"
            )
        needed = TRANSITIONS[r.status].get(status)
        party: Party = needed if needed is not None and needed in roles else roles[0]
        check_transition(r.status, status, party, reason)
        named = {"hub": hub_display(r.referrer), "id": r.id}
        moved = body(
            ReferralStatusChanged,
            {"referral": named, "parent": r.head, "status": status, "reason": reason.strip()},
        )
        items = [("referral.status_changed", moved)]
        if outcome is not None:
            fields = {"referral": named, "outcome": outcome.strip(), "satisfied": satisfied}
            items.append(("referral.outcome_recorded", body(ReferralOutcomeRecorded, fields)))
        done = await self._append(items)
        return Moved(r.ref, r.status, status, done[0].seq)

    # -- follow-up and advocacy ---------------------------------------------------------

    def _case_body(self, r: Referral, note: str) -> tuple[str, Body]:
        case_id = new_id("c")
        fields: dict[str, Any] = {
            "case": case_id,
            "referral": {"hub": hub_display(r.referrer), "id": r.id},
        }
        sealed = self._seal_note(r.referrer, r.subject, "advocacy.opened", case_id, note)
        if sealed is not None:
            fields["note"] = msgspec.to_builtins(sealed)
        return case_id, body(AdvocacyOpened, fields)

    async def record_followup(
        self, key: RefKey, satisfied: bool, note: str = "", *, advocacy: bool = False
    ) -> FollowedUp:
        """Record a follow-up with the person; when they are not satisfied and
        ``advocacy``, open an advocacy case in the same transaction."""
        await self.refresh()
        r = self.find_referral(key)
        self.require_involved(r, "follow up")
        followup = new_id("f")
        fields: dict[str, Any] = {
            "followup": followup,
            "referral": {"hub": hub_display(r.referrer), "id": r.id},
            "satisfied": satisfied,
        }
        sealed = self._seal_note(r.referrer, r.subject, "followup.recorded", followup, note)
        if sealed is not None:
            fields["note"] = msgspec.to_builtins(sealed)
        items = [("followup.recorded", body(FollowupRecorded, fields))]
        case_id = None
        if advocacy and not satisfied:
            case_id, opened = self._case_body(r, "")
            items.append(("advocacy.opened", opened))
        done = await self._append(items)
        return FollowedUp(followup, r.ref, case_id, done[0].seq)

    async def open_advocacy(self, key: RefKey, note: str = "") -> CaseOpened:
        """Open an advocacy case on a referral that failed the person."""
        await self.refresh()
        r = self.find_referral(key)
        self.require_involved(r, "open advocacy on")
        case_id, opened = self._case_body(r, note)
        (done,) = await self._append([("advocacy.opened", opened)])
        return CaseOpened(case_id, r.ref, done.seq)

    async def close_advocacy(self, case_id: str, outcome: str, note: str = "") -> CaseClosed:
        """Close an advocacy case this hub opened."""
        choice("outcome", outcome, ADVOCACY_OUTCOMES)
        await self.refresh()
        found = case(self.views, self.me, case_id.strip())
        if found is None:
            raise NotFound(
                f"this hub opened no advocacy case {case_id}; see `hubnode advocacy list`"
            )
        if not found.is_open:
            raise NotPermitted(
                f"advocacy case {case_id} was closed on {when(found.closed_ts or 0)}"
            )
        fields: dict[str, Any] = {"case": found.id, "outcome": outcome}
        if found.subject is not None:
            kind = "advocacy.closed"
            sealed = self._seal_note(found.referrer, found.subject, kind, found.id, note)
            if sealed is not None:
                fields["note"] = msgspec.to_builtins(sealed)
        elif note.strip():
            raise InvalidInput(
                "note", "the case's referral has not reached this hub: its note cannot be sealed"
            )
        (done,) = await self._append([("advocacy.closed", body(AdvocacyClosed, fields))])
        return CaseClosed(found.id, outcome, done.seq)

    # -- erasure ------------------------------------------------------------------------

    def erasable(self, subject: str, reason: str) -> SubjectInfo:
        """This hub's subject ``subject``, not erased yet, and a clear ``reason``: what
        :meth:`erase` checks before appending (a command asks for confirmation after it)."""
        check_clear_text("--reason", reason)
        if not reason.strip():
            raise InvalidInput("reason", "--reason: say why the person is erased")
        info = self.subject(subject, self.me)
        if info.erased:
            raise NotPermitted(f"{subject} was already erased on {when(info.erased_ts or 0)}")
        return info

    async def erase(self, subject: str, reason: str) -> Erased:
        """Erase a person everywhere: every hub holding their key destroys it.

        Only the hub that logged the enquiry can. It cannot be undone; the signed logs
        still verify. With ``keep_keys`` this hub destroys its own key at once.
        """
        await self.refresh()
        self.erasable(subject, reason)
        erased = SubjectErased(subject=subject, reason=reason.strip())
        (done,) = await self._append([("subject.erased", erased)])
        rotated = False
        if self.keep_keys:
            rotated = (await catch_up_keys(self.log, self.keyring)).rotated
            await self.refresh(keys=False)  # with this hub's confirmation
        return Erased(subject, done.seq, self.keep_keys, rotated)
