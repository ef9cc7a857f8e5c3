"""Reading one hub's pathway: referrals, cases and people, with notes and details opened
only where this hub holds the person's key (docs/privacy.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Self

from hubnode.casework.inputs import NotFound, NotPermitted, SeveralOwners, when
from hubnode.casework.results import CaseDetail, PersonRecord, ReferralDetail, RefKey
from hubnode.config import HubFolder
from hubnode.errors import PrivacyError
from hubnode.events.ids import hub_display
from hubnode.events.pathway import Sealed
from hubnode.privacy.keyring import Keyring, catch_up_keys
from hubnode.privacy.seal import open_note, open_person, sealed_aad
from hubnode.projections.network import hub_names
from hubnode.projections.pathway_read import (
    Referral,
    SubjectInfo,
    cases,
    referral,
    subject_info,
    subject_owners,
    timeline,
)
from hubnode.projections.runner import ProjectionRunner
from hubnode.store.log import EventLog


class CaseReader:
    """One hub's pathway views and keyring, read; the base of :class:`Casework`.

    The reading methods read the views as they are: call :meth:`refresh` first to see
    what reached the log since. The actions of :class:`Casework` refresh before they
    check, and bring the views up to date with what they appended before returning.

    ``keep_keys``: bring the keyring up to date before each action (open key boxes, honour
    erasures, publish the seal key, confirm erasures). Pass False where the hub's running
    node already does it (the demo; a console inside ``hubnode run``): two processes
    confirming one erasure would both append a confirmation.
    """

    def __init__(
        self,
        folder: HubFolder,
        log: EventLog,
        keyring: Keyring,
        views: ProjectionRunner,
        *,
        keep_keys: bool = True,
    ) -> None:
        self.folder = folder
        self.log = log
        self.keyring = keyring
        self.views = views
        self.keep_keys = keep_keys
        self.me = folder.hub
        self.net = folder.config.network

    @classmethod
    @asynccontextmanager
    async def open(cls, folder: HubFolder) -> AsyncIterator[Self]:
        """Open ``folder``'s log (with its key), keyring and views for a run of actions;
        closed again on leaving."""
        from hubnode.node import projection_runner  # the node pulls in NATS: only here

        async with await folder.open_log(create=False) as log:
            with Keyring.open(folder) as keyring:
                views = projection_runner(folder)
                try:
                    yield cls(folder, log, keyring, views)
                finally:
                    views.close()

    async def refresh(
        self, advance: Callable[[int], None] | None = None, *, keys: bool = True
    ) -> None:
        """Bring the keyring (with ``keep_keys``; not if ``keys`` is False), then the views,
        up to date with the log.

        The keyring goes first: its catch-up may append (this hub's seal key, erasure
        confirmations), and the views then include that. ``advance`` hears how many log
        records each round of the views' catch-up read (for a progress bar).
        """
        if self.keep_keys and keys:
            await catch_up_keys(self.log, self.keyring)
        while n := self.views.step():
            if advance is not None:
                advance(n)

    def behind(self) -> int:
        """Log records the views have still to read (what :meth:`refresh` will advance)."""
        return sum(s.behind for s in self.views.status() if s.status != "stopped")

    # -- looking things up --------------------------------------------------------------

    def find_referral(self, key: RefKey) -> Referral:
        """The referral ``key`` names, or :class:`NotFound`."""
        hub, rid = key
        found = referral(self.views, hub, rid)
        if found is None:
            whose = "this hub" if hub == self.me else hub_display(hub)
            raise NotFound(
                f"no referral {rid} by {whose} in this hub's view; check the id with "
                "`hubnode referral list`, or wait for it to arrive by gossip"
            )
        return found

    def own_subject(self, subject: str) -> SubjectInfo:
        """This hub's live subject ``subject``: it logged their enquiry, not erased."""
        info = subject_info(self.views, self.me, subject)
        if info is None:
            raise NotPermitted(
                f"this hub logged no enquiry for {subject}; only the hub that logged a "
                "person's enquiry records their consent and refers them"
            )
        if info.erased:
            raise NotPermitted(
                f"{subject} was erased on {when(info.erased_ts or 0)}; nothing more can be done"
            )
        return info

    def subject(self, subject: str, owner: bytes | None = None) -> SubjectInfo:
        """The subject with pseudonym ``subject``: logged by ``owner`` if given, else this
        hub's own, else the one hub that logged it (:class:`SeveralOwners` if several did).

        This hub's own subject comes first, so another hub reusing a pseudonym (by mistake
        or on purpose) can never block the casework of the hub that gave it.
        """
        owners = subject_owners(self.views, subject)
        if owner is not None:
            owners = [o for o in owners if o == owner]
        elif self.me in owners:
            owners = [self.me]
        if not owners:
            raise NotFound(
                f"no person {subject} is known here: check the pseudonym, or wait until the "
                "hub that logged the enquiry has synced with this one"
            )
        if len(owners) > 1:
            names = hub_names(self.views)
            raise SeveralOwners(
                subject,
                sorted(
                    ((o, names.get(o) or hub_display(o)) for o in owners),
                    key=lambda pair: (pair[1].casefold(), pair[0]),
                ),
            )
        info = subject_info(self.views, owners[0], subject)
        assert info is not None, "subject_owners found it"
        return info

    def require_involved(self, r: Referral, what: str) -> None:
        """Refuse unless this hub made the referral or the person's consent named it then."""
        if self.me != r.referrer and self.me not in r.consent:
            raise NotPermitted(
                f"this hub cannot {what} {r.ref}: only the referring hub and the hubs the "
                "person's consent named when the referral was made may do so"
            )

    # -- notes, referrals, cases and people --------------------------------------------

    def open_text(
        self,
        owner: bytes,
        subject: str | None,
        kind: str,
        author: bytes,
        record: str,
        sealed: Sealed | None,
    ) -> str | None:
        """A note in clear where this hub holds the key; else why not, in brackets."""
        if sealed is None:
            return None
        if subject is None:
            return "[sealed]"
        try:
            key = self.keyring.data_key(owner, subject)
            aad = sealed_aad(self.net, owner, subject, kind, author, record)
            return open_note(key, sealed, aad).text
        except PrivacyError as e:
            return "[erased]" if "erased" in str(e) else "[sealed]"

    def referral_detail(self, key: RefKey) -> ReferralDetail:
        """One referral, its timeline and notes (opened where this hub holds the key)."""
        r = self.find_referral(key)
        note = self.open_text(r.referrer, r.subject, "referral.requested", r.referrer, r.id, r.note)
        steps = timeline(self.views, r.referrer, r.id)
        notes = [
            self.open_text(r.referrer, r.subject, s.kind, s.hub, s.record, s.note) for s in steps
        ]
        return ReferralDetail(r, note, list(zip(steps, notes, strict=True)))

    def advocacy_cases(self, hub: bytes | None = None, *, closed: bool = False) -> list[CaseDetail]:
        """Advocacy cases that count (opened by ``hub``; open ones unless ``closed``), with
        their notes opened where this hub holds the key."""
        found = [c for c in cases(self.views, hub) if closed or c.is_open]
        return [
            CaseDetail(
                c,
                self.open_text(c.referrer, c.subject, "advocacy.opened", c.hub, c.id, c.note),
                self.open_text(c.referrer, c.subject, "advocacy.closed", c.hub, c.id, c.close_note),
            )
            for c in found
        ]

    # -- people -------------------------------------------------------------------------

    def person(self, subject: str, owner: bytes | None = None) -> PersonRecord:
        """A person, with their details in clear only where this hub holds their key."""
        info = self.subject(subject, owner)
        if info.erased:
            return PersonRecord(info, [], "erased", self._destroyed_at(info))
        try:
            key = self.keyring.data_key(info.owner, info.subject)
        except PrivacyError as e:
            return PersonRecord(info, [], str(e), None)
        details = []
        for enquiry in info.enquiries:
            if enquiry.person is None:
                continue
            aad = sealed_aad(
                self.net, info.owner, info.subject, "enquiry.logged", info.owner, enquiry.id
            )
            try:
                details.append((enquiry.id, open_person(key, enquiry.person, aad)))
            except PrivacyError as e:
                return PersonRecord(info, [], f"enquiry {enquiry.id}: {e}", None)
        return PersonRecord(info, details, None, None)

    def _destroyed_at(self, info: SubjectInfo) -> int | None:
        """When this hub destroyed the key of erased ``info``; None if it never held one."""
        shown = hub_display(info.owner)
        for e in self.keyring.erasures():
            if e["owner"] == shown and e["subject"] == info.subject and e["held_key"]:
                ms = e["destroyed_ms"]
                return ms if isinstance(ms, int) else None
        return None
