"""The pathway view: enquiries, consent, referrals, follow-up, advocacy and erasure.

Closed-loop referral (DESIGN §7, §8 and docs/pathway.md). A *subject* is (owner hub,
pseudonym); its owner is the hub whose ``enquiry.logged`` introduced it. Only the owner's
``consent.recorded``, ``consent.withdrawn``, ``referral.requested`` and ``subject.erased``
count; the same events from any other hub are ignored with a reason. One hub's events
arrive in seq order, so these owner-only facts come out the same on every hub.

**Consent.** ``consent.recorded`` replaces the current consent (purposes, recipient
hubs); its key boxes must be sealed to exactly the recipients and the owner itself.
``consent.withdrawn`` leaves no recipients. A referral is ignored if the subject is
unknown or erased at that point of the owner's log, if ``referral`` is not among the
consent's purposes, or if the receiving hub (``to_hub``, the service's hub, or none for an
open referral) is neither the owner nor a recipient. The referral keeps a *snapshot* of the
recipients at request time: claims, follow-ups and advocacy by other hubs are judged
against it, so they do not depend on when a later consent event arrives.

**Lifecycle, claims and concurrent moves.** Claims and status changes name a ``parent``:
the id of the referral event they follow. They form a tree rooted at the
``referral.requested`` event. Every such event is stored, and the referral's state is
*re-derived from the whole set* whenever one of them arrives: walk from the root; at each
node take the children in ascending event-id order and follow the first *valid* one (a
claim: an open referral with no receiving hub yet, by a hub in the consent snapshot other
than the owner; a status change: allowed by :func:`lifecycle.check_transition` for the
author's party — the owner is the referring hub, the receiving hub the receiving one, a
hub that is both may act as either). Invalid and losing children, and everything below
them, are ignored; events whose parent has not arrived wait (and are not ignored). The
state is therefore a function of the set of events held, not of their arrival order: two
hubs claiming one open referral, or a cancel racing an accept, resolve the same way on
every hub (the lower event id wins).

Outcomes count only from the derived receiving hub (its latest by seq); follow-ups and
advocacy cases only from the owner or a hub in the snapshot; an advocacy case is closed
only by the hub that opened it. These are re-judged with the lifecycle, since the
receiving hub of an open referral is known only once its claim has arrived.

**Erasure.** ``subject.erased`` marks the subject erased and drops every sealed byte of
it held here (the enquiries' person, the notes of its referrals, follow-ups and cases),
also for events arriving later; the owner's later events about the subject are ignored.
Statuses and dates stay: they hold nothing personal. ``subject.erasure_confirmed`` is
recorded per confirming hub.

Only sealed bytes (nonce and ciphertext) are stored, never anything decrypted; dates are
the authors' clocks (``ts``), never the time of arrival. Read functions live in
:mod:`hubnode.projections.pathway_read`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, ClassVar, Final

from hubnode.events.ids import hub_display, parse_hub
from hubnode.events.lifecycle import CLAIM
from hubnode.events.pathway import (
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
    SubjectErasureConfirmed,
)
from hubnode.events.verify import Event
from hubnode.projections.base import Projection, ProjectionTx
from hubnode.projections.pathway_rules import (
    APPLIED,
    IGNORED,
    WAITING,
    Move,
    derive_lifecycle,
    judge_involved,
    receiving_hub,
)

NAME: Final = "pathway"


def _hubs_json(hubs: Iterable[str]) -> str:
    return json.dumps(sorted(hubs))


class PathwayProjection(Projection):
    name: ClassVar[str] = NAME
    version: ClassVar[int] = 1
    kinds: ClassVar[frozenset[str]] = frozenset(
        {
            "enquiry.logged",
            "consent.recorded",
            "consent.withdrawn",
            "referral.requested",
            "referral.claimed",
            "referral.status_changed",
            "referral.outcome_recorded",
            "followup.recorded",
            "advocacy.opened",
            "advocacy.closed",
            "subject.erased",
            "subject.erasure_confirmed",
        }
    )
    # Hub lists are JSON arrays of sorted hub:… ids. UNIQUE keys that start with
    # (referrer, referral) index each table by referral for the re-derivation.
    tables: ClassVar[dict[str, str]] = {
        "subjects": "owner BLOB NOT NULL, subject TEXT NOT NULL, seq INTEGER NOT NULL, "
        "ts INTEGER NOT NULL, purposes TEXT NOT NULL, recipients TEXT NOT NULL, "
        "consent_seq INTEGER, consent_ts INTEGER, withdrawn INTEGER NOT NULL, "
        "erased_seq INTEGER, erased_ts INTEGER, erase_reason TEXT, "
        "PRIMARY KEY (owner, subject)",
        "enquiries": "owner BLOB NOT NULL, enquiry TEXT NOT NULL, subject TEXT NOT NULL, "
        "channel TEXT NOT NULL, needs TEXT NOT NULL, urgency TEXT NOT NULL, area TEXT, "
        "nonce BLOB, sealed BLOB, seq INTEGER NOT NULL, ts INTEGER NOT NULL, "
        "PRIMARY KEY (owner, enquiry), UNIQUE (owner, subject, enquiry)",
        "referrals": "referrer BLOB NOT NULL, referral TEXT NOT NULL, subject TEXT NOT NULL, "
        "root BLOB NOT NULL UNIQUE, seq INTEGER NOT NULL, ts INTEGER NOT NULL, target BLOB, "
        "service_hub BLOB, service_id TEXT, category TEXT, urgency TEXT NOT NULL, "
        "nonce BLOB, sealed BLOB, snapshot TEXT NOT NULL, "
        # derived from the referral's events (see _derive)
        "receiver BLOB, status TEXT NOT NULL, head BLOB NOT NULL, status_ts INTEGER NOT NULL, "
        "responded_ts INTEGER, outcome TEXT, satisfied INTEGER, outcome_ts INTEGER, "
        "followups INTEGER NOT NULL, "
        "PRIMARY KEY (referrer, referral), UNIQUE (referrer, subject, referral)",
        "moves": "id BLOB PRIMARY KEY, referrer BLOB NOT NULL, referral TEXT NOT NULL, "
        "hub BLOB NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL, parent BLOB NOT NULL, "
        "claim INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT NOT NULL, "
        "state TEXT NOT NULL, UNIQUE (referrer, referral, id)",
        "outcomes": "hub BLOB NOT NULL, seq INTEGER NOT NULL, referrer BLOB NOT NULL, "
        "referral TEXT NOT NULL, ts INTEGER NOT NULL, outcome TEXT NOT NULL, "
        "satisfied INTEGER NOT NULL, state TEXT NOT NULL, PRIMARY KEY (hub, seq), "
        "UNIQUE (referrer, referral, hub, seq)",
        "followups": "hub BLOB NOT NULL, followup TEXT NOT NULL, referrer BLOB NOT NULL, "
        "referral TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL, "
        "satisfied INTEGER NOT NULL, nonce BLOB, sealed BLOB, state TEXT NOT NULL, "
        "PRIMARY KEY (hub, followup), UNIQUE (referrer, referral, hub, followup)",
        "cases": "hub BLOB NOT NULL, case_id TEXT NOT NULL, referrer BLOB NOT NULL, "
        "referral TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL, nonce BLOB, "
        "sealed BLOB, closed_seq INTEGER, closed_ts INTEGER, outcome TEXT, close_nonce BLOB, "
        "close_sealed BLOB, state TEXT NOT NULL, PRIMARY KEY (hub, case_id), "
        "UNIQUE (referrer, referral, hub, case_id)",
        "confirmations": "owner BLOB NOT NULL, subject TEXT NOT NULL, hub BLOB NOT NULL, "
        "seq INTEGER NOT NULL, ts INTEGER NOT NULL, PRIMARY KEY (owner, subject, hub)",
    }

    def apply(self, event: Event, tx: ProjectionTx) -> None:
        body = event.body
        if isinstance(body, EnquiryLogged):
            self._enquiry(event, body, tx)
        elif isinstance(body, ConsentRecorded):
            self._consent(event, body, tx)
        elif isinstance(body, ConsentWithdrawn):
            if self._live_subject(event, body.subject, "withdraw consent for", tx):
                tx.execute(
                    "UPDATE {subjects} SET recipients = '[]', consent_seq = ?, consent_ts = ?, "
                    "withdrawn = 1 WHERE owner = ? AND subject = ?",
                    (event.seq, event.ts, event.hub, body.subject),
                )
        elif isinstance(body, ReferralRequested):
            self._referral(event, body, tx)
        elif isinstance(body, ReferralClaimed | ReferralStatusChanged):
            self._move(event, body, tx)
        elif isinstance(body, ReferralOutcomeRecorded):
            self._outcome(event, body, tx)
        elif isinstance(body, FollowupRecorded):
            self._followup(event, body, tx)
        elif isinstance(body, AdvocacyOpened):
            self._case_opened(event, body, tx)
        elif isinstance(body, AdvocacyClosed):
            self._case_closed(event, body, tx)
        elif isinstance(body, SubjectErased):
            self._erased(event, body, tx)
        elif isinstance(body, SubjectErasureConfirmed):
            self._confirmed(event, body, tx)

    # -- subjects -----------------------------------------------------------------------

    def _live_subject(self, event: Event, subject: str, what: str, tx: ProjectionTx) -> bool:
        """True if ``event``'s hub owns ``subject`` and has not erased it; else ignore."""
        row = tx.one(
            "SELECT erased_seq FROM {subjects} WHERE owner = ? AND subject = ?",
            (event.hub, subject),
        )
        if row is None:
            tx.ignore(
                event,
                f"{hub_display(event.hub)} logged no enquiry for {subject}; only the hub "
                f"that logged a person's enquiry may {what} them",
            )
            return False
        if row[0] is not None:
            tx.ignore(event, f"{subject} was erased by its hub (seq {row[0]})")
            return False
        return True

    def _enquiry(self, event: Event, body: EnquiryLogged, tx: ProjectionTx) -> None:
        owner = event.hub
        if tx.one(
            "SELECT 1 FROM {enquiries} WHERE owner = ? AND enquiry = ?", (owner, body.enquiry)
        ):
            tx.ignore(event, f"this hub already logged an enquiry with id {body.enquiry}")
            return
        row = tx.one(
            "SELECT erased_seq FROM {subjects} WHERE owner = ? AND subject = ?",
            (owner, body.subject),
        )
        if row is not None and row[0] is not None:
            tx.ignore(event, f"{body.subject} was erased by its hub (seq {row[0]})")
            return
        if row is None:
            tx.execute(
                "INSERT INTO {subjects} VALUES (?, ?, ?, ?, '[]', '[]', NULL, NULL, 0, "
                "NULL, NULL, NULL)",
                (owner, body.subject, event.seq, event.ts),
            )
        tx.execute(
            "INSERT INTO {enquiries} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                owner,
                body.enquiry,
                body.subject,
                body.channel,
                json.dumps(list(body.needs)),
                body.urgency,
                body.area,
                body.person.nonce,
                body.person.data,
                event.seq,
                event.ts,
            ),
        )

    def _consent(self, event: Event, body: ConsentRecorded, tx: ProjectionTx) -> None:
        if not self._live_subject(event, body.subject, "record consent for", tx):
            return
        boxed = {k.hub for k in body.keys}
        wanted = {*body.recipients, hub_display(event.hub)}
        if boxed != wanted:
            tx.ignore(
                event,
                "consent keys must be sealed to exactly the recipients and the recording "
                f"hub; missing {sorted(wanted - boxed)}, extra {sorted(boxed - wanted)}",
            )
            return
        purposes = [p for p in ("referral", "follow-up", "advocacy") if p in body.purposes]
        tx.execute(
            "UPDATE {subjects} SET purposes = ?, recipients = ?, consent_seq = ?, "
            "consent_ts = ?, withdrawn = 0 WHERE owner = ? AND subject = ?",
            (
                json.dumps(purposes),
                _hubs_json(body.recipients),
                event.seq,
                event.ts,
                event.hub,
                body.subject,
            ),
        )

    def _erased(self, event: Event, body: SubjectErased, tx: ProjectionTx) -> None:
        if not self._live_subject(event, body.subject, "erase", tx):
            return
        key = (event.hub, body.subject)
        tx.execute(
            "UPDATE {subjects} SET erased_seq = ?, erased_ts = ?, erase_reason = ? "
            "WHERE owner = ? AND subject = ?",
            (event.seq, event.ts, body.reason, *key),
        )
        tx.execute(
            "UPDATE {enquiries} SET nonce = NULL, sealed = NULL WHERE owner = ? AND subject = ?",
            key,
        )
        refs = tx.all("SELECT referral FROM {referrals} WHERE referrer = ? AND subject = ?", key)
        for (referral,) in refs:
            _drop_notes(tx, event.hub, referral)

    def _confirmed(self, event: Event, body: SubjectErasureConfirmed, tx: ProjectionTx) -> None:
        # Stored whatever arrived first: a confirmation may overtake the erasure it confirms.
        owner = parse_hub(body.owner)
        if tx.one(
            "SELECT 1 FROM {confirmations} WHERE owner = ? AND subject = ? AND hub = ?",
            (owner, body.subject, event.hub),
        ):
            tx.ignore(event, f"this hub already confirmed the erasure of {body.subject}")
            return
        tx.execute(
            "INSERT INTO {confirmations} VALUES (?, ?, ?, ?, ?)",
            (owner, body.subject, event.hub, event.seq, event.ts),
        )

    # -- referrals and what follows them --------------------------------------------------

    def _referral(self, event: Event, body: ReferralRequested, tx: ProjectionTx) -> None:
        referrer = event.hub
        if tx.one(
            "SELECT 1 FROM {referrals} WHERE referrer = ? AND referral = ?",
            (referrer, body.referral),
        ):
            tx.ignore(event, f"this hub already made a referral with id {body.referral}")
            return
        if not self._live_subject(event, body.subject, "refer", tx):
            return
        purposes, recipients = tx.one(  # type: ignore[misc]  # the subject row exists
            "SELECT purposes, recipients FROM {subjects} WHERE owner = ? AND subject = ?",
            (referrer, body.subject),
        )
        if "referral" not in json.loads(purposes):
            tx.ignore(
                event,
                f"the person's consent for {body.subject} does not cover referral "
                f"(purposes: {', '.join(json.loads(purposes)) or 'none'})",
            )
            return
        target = receiving_hub(body)
        consented = json.loads(recipients)
        if target is not None and target != referrer and hub_display(target) not in consented:
            tx.ignore(
                event,
                f"the person's consent for {body.subject} does not name {hub_display(target)}",
            )
            return
        service = body.service
        tx.execute(
            "INSERT INTO {referrals} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
            "?, 'requested', ?, ?, NULL, NULL, NULL, NULL, 0)",
            (
                referrer,
                body.referral,
                body.subject,
                event.id,
                event.seq,
                event.ts,
                target,
                None if service is None else parse_hub(service.hub),
                None if service is None else service.id,
                body.category,
                body.urgency,
                *_columns(body.note),
                recipients,
                target,
                event.id,
                event.ts,
            ),
        )
        self._derive(tx, referrer, body.referral)

    def _move(
        self, event: Event, body: ReferralClaimed | ReferralStatusChanged, tx: ProjectionTx
    ) -> None:
        referrer = parse_hub(body.referral.hub)
        claim = isinstance(body, ReferralClaimed)
        if isinstance(body, ReferralStatusChanged):
            status, reason = body.status, body.reason
        else:
            status, reason = CLAIM[1], ""
        tx.execute(
            "INSERT INTO {moves} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.id,
                referrer,
                body.referral.id,
                event.hub,
                event.seq,
                event.ts,
                body.parent,
                int(claim),
                status,
                reason,
                WAITING,
            ),
        )
        self._derive(tx, referrer, body.referral.id)

    def _outcome(self, event: Event, body: ReferralOutcomeRecorded, tx: ProjectionTx) -> None:
        referrer = parse_hub(body.referral.hub)
        tx.execute(
            "INSERT INTO {outcomes} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.hub,
                event.seq,
                referrer,
                body.referral.id,
                event.ts,
                body.outcome,
                int(body.satisfied),
                WAITING,
            ),
        )
        self._derive(tx, referrer, body.referral.id)

    def _followup(self, event: Event, body: FollowupRecorded, tx: ProjectionTx) -> None:
        if tx.one(
            "SELECT 1 FROM {followups} WHERE hub = ? AND followup = ?", (event.hub, body.followup)
        ):
            tx.ignore(event, f"this hub already recorded a follow-up with id {body.followup}")
            return
        referrer = parse_hub(body.referral.hub)
        tx.execute(
            "INSERT INTO {followups} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                event.hub,
                body.followup,
                referrer,
                body.referral.id,
                event.seq,
                event.ts,
                int(body.satisfied),
                *_columns(body.note),
                WAITING,
            ),
        )
        self._derive(tx, referrer, body.referral.id)

    def _case_opened(self, event: Event, body: AdvocacyOpened, tx: ProjectionTx) -> None:
        if tx.one("SELECT 1 FROM {cases} WHERE hub = ? AND case_id = ?", (event.hub, body.case)):
            tx.ignore(event, f"this hub already opened an advocacy case with id {body.case}")
            return
        referrer = parse_hub(body.referral.hub)
        tx.execute(
            "INSERT INTO {cases} VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL, ?)",
            (
                event.hub,
                body.case,
                referrer,
                body.referral.id,
                event.seq,
                event.ts,
                *_columns(body.note),
                WAITING,
            ),
        )
        self._derive(tx, referrer, body.referral.id)

    def _case_closed(self, event: Event, body: AdvocacyClosed, tx: ProjectionTx) -> None:
        row = tx.one(
            "SELECT referrer, referral, closed_seq FROM {cases} WHERE hub = ? AND case_id = ?",
            (event.hub, body.case),
        )
        if row is None:
            tx.ignore(
                event,
                f"{hub_display(event.hub)} opened no advocacy case {body.case}; only the hub "
                "that opened a case may close it",
            )
            return
        referrer, referral, closed = row
        if closed is not None:
            tx.ignore(event, f"advocacy case {body.case} was already closed (seq {closed})")
            return
        tx.execute(
            "UPDATE {cases} SET closed_seq = ?, closed_ts = ?, outcome = ?, close_nonce = ?, "
            "close_sealed = ? WHERE hub = ? AND case_id = ?",
            (
                event.seq,
                event.ts,
                body.outcome,
                *_columns(body.note),
                event.hub,
                body.case,
            ),
        )
        self._derive(tx, referrer, referral)

    # -- re-derivation ------------------------------------------------------------------

    def _derive(self, tx: ProjectionTx, referrer: bytes, referral: str) -> None:
        """Recompute one referral's state, and which of its events count, from all of them."""
        key = (referrer, referral)
        moves = [
            Move(*r)
            for r in tx.all(
                "SELECT id, parent, hub, seq, ts, claim, status, reason FROM {moves} "
                "WHERE referrer = ? AND referral = ?",
                key,
            )
        ]
        outcomes = tx.all(
            "SELECT hub, seq, ts, outcome, satisfied FROM {outcomes} "
            "WHERE referrer = ? AND referral = ? ORDER BY seq",
            key,
        )
        followups = tx.all(
            "SELECT hub, followup, seq FROM {followups} WHERE referrer = ? AND referral = ?", key
        )
        cases = tx.all(
            "SELECT hub, case_id, seq, closed_seq FROM {cases} WHERE referrer = ? AND referral = ?",
            key,
        )
        authored = [(m.hub, m.seq) for m in moves]
        authored += [(h, s) for h, s, *_ in outcomes]
        authored += [(h, s) for h, _, s in followups]
        authored += [(h, s) for h, _, s, _ in cases]
        authored += [(h, c) for h, _, _, c in cases if c is not None]
        tx.executemany("DELETE FROM {_ignored} WHERE hub = ? AND seq = ?", authored)
        ref = tx.one(
            "SELECT subject, root, ts, target, snapshot FROM {referrals} "
            "WHERE referrer = ? AND referral = ?",
            key,
        )
        if ref is None:  # not arrived yet (or ignored): everything about it waits
            for table in ("moves", "outcomes", "followups", "cases"):
                tx.execute(
                    f"UPDATE {{{table}}} SET state = ? WHERE referrer = ? AND referral = ?",
                    (WAITING, *key),
                )
            return
        subject, root, root_ts, target, snapshot_json = ref
        snapshot = frozenset(parse_hub(h) for h in json.loads(snapshot_json))
        life = derive_lifecycle(root, root_ts, referrer, target, snapshot, moves)
        ignored: list[tuple[bytes, int, str]] = []
        by_id = {m.id: m for m in moves}
        for move_id, why in life.ignored.items():
            ignored.append((by_id[move_id].hub, by_id[move_id].seq, why))
        tx.executemany(
            "UPDATE {moves} SET state = ? WHERE id = ?",
            [(life.state(m.id), m.id) for m in moves],
        )

        receiver = life.receiver
        outcome: tuple[Any, ...] | None = None
        outcome_states = []
        for hub, seq, ts, text, satisfied in outcomes:
            if receiver is not None and hub == receiver:
                outcome = (text, satisfied, ts)  # ordered by seq: the latest wins
                outcome_states.append((APPLIED, hub, seq))
            else:
                why = (
                    "the referral has no receiving hub yet"
                    if receiver is None
                    else f"only the receiving hub ({hub_display(receiver)}) records the outcome"
                )
                ignored.append((hub, seq, why))
                outcome_states.append((IGNORED, hub, seq))
        tx.executemany("UPDATE {outcomes} SET state = ? WHERE hub = ? AND seq = ?", outcome_states)

        counted = 0
        followup_states = []
        for hub, followup, seq in followups:
            refused = judge_involved(hub, referrer, snapshot)
            if refused is None:
                counted += 1
            else:
                ignored.append((hub, seq, refused))
            followup_states.append((APPLIED if refused is None else IGNORED, hub, followup))
        tx.executemany(
            "UPDATE {followups} SET state = ? WHERE hub = ? AND followup = ?", followup_states
        )
        case_states = []
        for hub, case_id, seq, closed_seq in cases:
            refused = judge_involved(hub, referrer, snapshot)
            if refused is not None:
                ignored.append((hub, seq, refused))
                if closed_seq is not None:
                    ignored.append((hub, closed_seq, f"closes case {case_id}, which was ignored"))
            case_states.append((APPLIED if refused is None else IGNORED, hub, case_id))
        tx.executemany("UPDATE {cases} SET state = ? WHERE hub = ? AND case_id = ?", case_states)

        tx.executemany("INSERT OR REPLACE INTO {_ignored} VALUES (?, ?, ?)", ignored)
        text, satisfied, outcome_ts = outcome if outcome is not None else (None, None, None)
        tx.execute(
            "UPDATE {referrals} SET receiver = ?, status = ?, head = ?, status_ts = ?, "
            "responded_ts = ?, outcome = ?, satisfied = ?, outcome_ts = ?, followups = ? "
            "WHERE referrer = ? AND referral = ?",
            (
                receiver,
                life.status,
                life.head,
                life.head_ts,
                life.responded_ts,
                text,
                satisfied,
                outcome_ts,
                counted,
                *key,
            ),
        )
        erased = tx.one(
            "SELECT erased_seq FROM {subjects} WHERE owner = ? AND subject = ?",
            (referrer, subject),
        )
        if erased is not None and erased[0] is not None:
            _drop_notes(tx, referrer, referral)  # also from events arriving after the erasure


def _columns(sealed: Sealed | None) -> tuple[bytes | None, bytes | None]:
    """How sealed bytes are stored: nonce and ciphertext columns, or two NULLs."""
    return (None, None) if sealed is None else (sealed.nonce, sealed.data)


def _drop_notes(tx: ProjectionTx, referrer: bytes, referral: str) -> None:
    key = (referrer, referral)
    tx.execute(
        "UPDATE {referrals} SET nonce = NULL, sealed = NULL WHERE referrer = ? AND referral = ?",
        key,
    )
    tx.execute(
        "UPDATE {followups} SET nonce = NULL, sealed = NULL WHERE referrer = ? AND referral = ?",
        key,
    )
    tx.execute(
        "UPDATE {cases} SET nonce = NULL, sealed = NULL, close_nonce = NULL, "
        "close_sealed = NULL WHERE referrer = ? AND referral = ?",
        key,
    )


PROJECTIONS = (PathwayProjection,)
