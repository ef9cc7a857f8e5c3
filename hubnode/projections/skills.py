"""The skills view: offers, requests, their matches, and the time-credit ledger (DESIGN §7).

**Offers and requests** belong to their author: ``(hub, id)`` names one, a second use of
an id by the same hub is ignored, and only the author withdraws (a withdrawal names the
author's own id). A hub's events arrive in seq order, so these rules see the same thing
everywhere. **Matches** pair an open offer with an open request of another hub sharing at
least one tag and one postcode district; the table is kept equal to that join of the
current open offers and requests, so it depends only on which events are held.

**The ledger** counts time in seconds, by double entry: a counted transfer debits
``from_hub`` and credits ``to_hub`` by the same amount, so the balances always sum to 0.
A transfer counts when its proposal (by one party) and a confirmation by the *other*
party are both held, and stops counting when a reversal by either party is held.

Events of different hubs arrive in different orders (a confirmation may come before the
proposal it confirms, a reversal before the confirmation), so the ledger never decides on
arrival. It stores every proposal, confirmation and reversal as a fact and, whenever a
fact about a transfer arrives, settles that transfer again from all of its facts:

- the first valid proposal by ``(proposer, transfer_id)`` defines the transfer; a later one
  with the same id is ignored, as is one whose proposer is not a party;
- the counterparty's lowest-seq confirmation confirms it; its later ones are ignored
  ("already confirmed"), as are confirmations by the proposer or by a third hub;
- the reversal with the lowest ``(hub, seq)`` by a party, made after that party's own
  consent (its proposal, or its confirmation), reverses a confirmed transfer; other
  reversals are ignored ("already reversed"), and so are reversals of a transfer that is
  not (or not yet) confirmed;
- a confirmation or reversal of a transfer whose proposal is not held is ignored as
  "unknown transfer" until the proposal arrives, when its record is settled again.

So the state, the balances and the ignored records are a function of the set of events
held, whatever order they came in; a balance moves by the difference between a transfer's
counted amount before and after settling, which sums to the same total in any order.

**Overdrafts.** Whether a hub may go below zero is its own local setting
(``time_overdraft_seconds`` in ``hubnode.toml``, default 0), which other hubs cannot see.
A rule applied by the projection with one hub's setting, or on the running balance at the
time a confirmation arrives, would compute different ledgers on different hubs. So the
limit is enforced where consent is signed: the *debited* hub's own command refuses to
propose or confirm a transfer that would take its balance (minus its own proposals still
awaiting confirmation) below ``-time_overdraft_seconds``. The projection records balances
as they are and flags a negative one (``negative`` = 1): a reversal by the other party can
still take a hub below zero, and that is shown rather than hidden.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from typing import ClassVar

from hubnode.events.ids import hub_display, parse_hub
from hubnode.events.skills import (
    SkillOffered,
    SkillRequested,
    SkillWithdrawn,
    TransferConfirmed,
    TransferProposed,
    TransferReversed,
)
from hubnode.events.verify import Event
from hubnode.projections.base import Projection, ProjectionTx

OFFER = "offer"
REQUEST = "request"

PROPOSED = "proposed"
CONFIRMED = "confirmed"
REVERSED = "reversed"


class SkillsProjection(Projection):
    name: ClassVar[str] = "skills"
    # 2: one match_keys table (tag x district) of open items replaces tags and districts.
    version: ClassVar[int] = 2
    cost_per_event: ClassVar[float] = 2.2  # bench/projections.py, 2026-11-26
    kinds: ClassVar[frozenset[str]] = frozenset(
        {
            "skill.offered",
            "skill.requested",
            "skill.withdrawn",
            "time.transfer_proposed",
            "time.transfer_confirmed",
            "time.transfer_reversed",
        }
    )
    tables: ClassVar[dict[str, str]] = {
        "offers": "hub BLOB NOT NULL, offer_id TEXT NOT NULL, seq INTEGER NOT NULL, "
        "title TEXT NOT NULL, description TEXT NOT NULL, tags TEXT NOT NULL, "
        "area TEXT NOT NULL, hours_per_week REAL, status TEXT NOT NULL, "
        "withdrawn_seq INTEGER, PRIMARY KEY (hub, offer_id)",
        "requests": "hub BLOB NOT NULL, request_id TEXT NOT NULL, seq INTEGER NOT NULL, "
        "title TEXT NOT NULL, description TEXT NOT NULL, tags TEXT NOT NULL, "
        "area TEXT NOT NULL, needed_by TEXT, status TEXT NOT NULL, "
        "withdrawn_seq INTEGER, PRIMARY KEY (hub, request_id)",
        # One row per open offer or request and (tag, district) pair of it: the index
        # matching runs on. Looking up the new item's pairs finds exactly the items sharing
        # a tag and a district with it; a withdrawal deletes the item's rows, so matching
        # never reads the ever-growing history of withdrawn items.
        "match_keys": "item TEXT NOT NULL, tag TEXT NOT NULL, district TEXT NOT NULL, "
        "hub BLOB NOT NULL, item_id TEXT NOT NULL, "
        "PRIMARY KEY (item, tag, district, hub, item_id) WITHOUT ROWID",
        "matches": "offer_hub BLOB NOT NULL, offer_id TEXT NOT NULL, "
        "request_hub BLOB NOT NULL, request_id TEXT NOT NULL, tags TEXT NOT NULL, "
        "districts TEXT NOT NULL, PRIMARY KEY (offer_hub, offer_id, request_hub, request_id), "
        "UNIQUE (request_hub, request_id, offer_hub, offer_id) WITHOUT ROWID",
        "transfers": "proposer BLOB NOT NULL, transfer_id TEXT NOT NULL, seq INTEGER NOT NULL, "
        "from_hub BLOB NOT NULL, to_hub BLOB NOT NULL, seconds INTEGER NOT NULL, "
        "memo TEXT NOT NULL, offer_hub BLOB, offer_id TEXT, request_hub BLOB, request_id TEXT, "
        "state TEXT NOT NULL, confirmed_seq INTEGER, reversed_by BLOB, reversed_seq INTEGER, "
        "reversal_reason TEXT, PRIMARY KEY (proposer, transfer_id)",
        "confirmations": "hub BLOB NOT NULL, seq INTEGER NOT NULL, proposer BLOB NOT NULL, "
        "transfer_id TEXT NOT NULL, PRIMARY KEY (hub, seq), "
        "UNIQUE (proposer, transfer_id, hub, seq) WITHOUT ROWID",
        "reversals": "hub BLOB NOT NULL, seq INTEGER NOT NULL, proposer BLOB NOT NULL, "
        "transfer_id TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (hub, seq), "
        "UNIQUE (proposer, transfer_id, hub, seq)",
        "balances": "hub BLOB PRIMARY KEY, seconds INTEGER NOT NULL, negative INTEGER NOT NULL",
    }

    def apply(self, event: Event, tx: ProjectionTx) -> None:
        body = event.body
        if isinstance(body, SkillOffered):
            self._offered(event, body, tx)
        elif isinstance(body, SkillRequested):
            self._requested(event, body, tx)
        elif isinstance(body, SkillWithdrawn):
            self._withdrawn(event, body, tx)
        elif isinstance(body, TransferProposed):
            self._proposed(event, body, tx)
        elif isinstance(body, TransferConfirmed):
            proposer = parse_hub(body.proposer)
            tx.execute(
                "INSERT INTO {confirmations} VALUES (?, ?, ?, ?)",
                (event.hub, event.seq, proposer, body.transfer_id),
            )
            _settle(proposer, body.transfer_id, tx)
        elif isinstance(body, TransferReversed):
            proposer = parse_hub(body.proposer)
            tx.execute(
                "INSERT INTO {reversals} VALUES (?, ?, ?, ?, ?)",
                (event.hub, event.seq, proposer, body.transfer_id, body.reason),
            )
            _settle(proposer, body.transfer_id, tx)

    # -- offers and requests ------------------------------------------------------------

    def _offered(self, event: Event, body: SkillOffered, tx: ProjectionTx) -> None:
        stored = tx.execute(
            "INSERT INTO {offers} VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', NULL) "
            "ON CONFLICT (hub, offer_id) DO NOTHING",
            (
                event.hub,
                body.offer_id,
                event.seq,
                body.title,
                body.description,
                _json_list(body.tags),
                _json_list(body.area),
                body.hours_per_week,
            ),
        )
        if not stored.rowcount:
            tx.ignore(event, f"offer id {body.offer_id!r} is already used by this hub")
            return
        _index(OFFER, event.hub, body.offer_id, body.tags, body.area, tx)
        tx.executemany(
            "INSERT INTO {matches} VALUES (?, ?, ?, ?, ?, ?)",
            [
                (event.hub, body.offer_id, hub, item_id, tags, districts)
                for hub, item_id, tags, districts in _counterparts(
                    REQUEST, event.hub, body.tags, body.area, tx
                )
            ],
        )

    def _requested(self, event: Event, body: SkillRequested, tx: ProjectionTx) -> None:
        stored = tx.execute(
            "INSERT INTO {requests} VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', NULL) "
            "ON CONFLICT (hub, request_id) DO NOTHING",
            (
                event.hub,
                body.request_id,
                event.seq,
                body.title,
                body.description,
                _json_list(body.tags),
                _json_list(body.area),
                body.needed_by.isoformat() if body.needed_by else None,
            ),
        )
        if not stored.rowcount:
            tx.ignore(event, f"request id {body.request_id!r} is already used by this hub")
            return
        _index(REQUEST, event.hub, body.request_id, body.tags, body.area, tx)
        tx.executemany(
            "INSERT INTO {matches} VALUES (?, ?, ?, ?, ?, ?)",
            [
                (hub, item_id, event.hub, body.request_id, tags, districts)
                for hub, item_id, tags, districts in _counterparts(
                    OFFER, event.hub, body.tags, body.area, tx
                )
            ],
        )

    def _withdrawn(self, event: Event, body: SkillWithdrawn, tx: ProjectionTx) -> None:
        if body.offer_id is not None:
            item, item_id, table, column = OFFER, body.offer_id, "{offers}", "offer_id"
        else:
            assert body.request_id is not None  # the body allows exactly one
            item, item_id, table, column = REQUEST, body.request_id, "{requests}", "request_id"
        row = tx.one(
            f"SELECT status, tags, area FROM {table} WHERE hub = ? AND {column} = ?",
            (event.hub, item_id),
        )
        if row is None:
            tx.ignore(event, f"this hub has no {item} {item_id!r} to withdraw")
            return
        if row[0] != "open":
            tx.ignore(event, f"{item} {item_id!r} is already withdrawn")
            return
        tx.execute(
            f"UPDATE {table} SET status = 'withdrawn', withdrawn_seq = ? "
            f"WHERE hub = ? AND {column} = ?",
            (event.seq, event.hub, item_id),
        )
        tx.execute(
            f"DELETE FROM {{matches}} WHERE {item}_hub = ? AND {item}_id = ?",
            (event.hub, item_id),
        )
        tx.executemany(
            "DELETE FROM {match_keys} "
            "WHERE item = ? AND tag = ? AND district = ? AND hub = ? AND item_id = ?",
            _keys(item, event.hub, item_id, json.loads(row[1]), json.loads(row[2])),
        )

    # -- the ledger ---------------------------------------------------------------------

    def _proposed(self, event: Event, body: TransferProposed, tx: ProjectionTx) -> None:
        from_hub, to_hub = parse_hub(body.from_hub), parse_hub(body.to_hub)
        if event.hub not in (from_hub, to_hub):
            tx.ignore(
                event,
                f"transfer {body.transfer_id!r}: the proposer must be from_hub or to_hub",
            )
            return
        stored = tx.execute(
            "INSERT INTO {transfers} VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'proposed', NULL, NULL, NULL, NULL) "
            "ON CONFLICT (proposer, transfer_id) DO NOTHING",
            (
                event.hub,
                body.transfer_id,
                event.seq,
                from_hub,
                to_hub,
                body.seconds,
                body.memo,
                parse_hub(body.offer.hub) if body.offer else None,
                body.offer.id if body.offer else None,
                parse_hub(body.request.hub) if body.request else None,
                body.request.id if body.request else None,
            ),
        )
        if not stored.rowcount:
            tx.ignore(event, f"transfer id {body.transfer_id!r} is already used by this hub")
            return
        for party in (from_hub, to_hub):
            tx.execute("INSERT OR IGNORE INTO {balances} VALUES (?, 0, 0)", (party,))
        _settle(event.hub, body.transfer_id, tx)


def _keys(
    item: str, hub: bytes, item_id: str, tags: Iterable[str], area: Iterable[str]
) -> list[tuple[str, str, str, bytes, str]]:
    return [(item, tag, district, hub, item_id) for tag in tags for district in area]


def _index(
    item: str,
    hub: bytes,
    item_id: str,
    tags: tuple[str, ...],
    area: tuple[str, ...],
    tx: ProjectionTx,
) -> None:
    tx.executemany(
        "INSERT INTO {match_keys} VALUES (?, ?, ?, ?, ?)", _keys(item, hub, item_id, tags, area)
    )


def _counterparts(
    item: str, hub: bytes, tags: tuple[str, ...], area: tuple[str, ...], tx: ProjectionTx
) -> list[tuple[bytes, str, str, str]]:
    """Open ``item``s of other hubs sharing a tag and a district with these:
    (hub, id, shared tags JSON, shared districts JSON), in (hub, id) order."""
    shared: dict[tuple[bytes, str], tuple[set[str], set[str]]] = {}
    for tag, district, other, item_id in tx.all(
        "SELECT tag, district, hub, item_id FROM {match_keys} "
        f"WHERE item = ? AND tag IN ({', '.join('?' * len(tags))}) "
        f"AND district IN ({', '.join('?' * len(area))}) AND hub != ?",
        (item, *tags, *area, hub),
    ):
        common, districts = shared.setdefault((other, item_id), (set(), set()))
        common.add(tag)
        districts.add(district)
    return [
        (other, item_id, _json_list(common), _json_list(districts))
        for (other, item_id), (common, districts) in sorted(shared.items())
    ]


def _json_list(items: Iterable[str]) -> str:
    """The sorted JSON list stored for a set of tags or districts."""
    return _sorted_json(tuple(sorted(items)))


@functools.lru_cache(maxsize=4096)  # a few hundred distinct sets, asked for constantly
def _sorted_json(items: tuple[str, ...]) -> str:
    return json.dumps(items)


def _settle(proposer: bytes, transfer_id: str, tx: ProjectionTx) -> None:
    """Recompute one transfer's state and its facts' ignore records from all its facts."""
    confirmations = tx.all(
        "SELECT hub, seq FROM {confirmations} WHERE proposer = ? AND transfer_id = ? "
        "ORDER BY hub, seq",
        (proposer, transfer_id),
    )
    reversals = tx.all(
        "SELECT hub, seq, reason FROM {reversals} WHERE proposer = ? AND transfer_id = ? "
        "ORDER BY hub, seq",
        (proposer, transfer_id),
    )
    name = f"transfer {hub_display(proposer)}/{transfer_id}"
    transfer = tx.one(
        "SELECT seq, from_hub, to_hub, seconds, state FROM {transfers} "
        "WHERE proposer = ? AND transfer_id = ?",
        (proposer, transfer_id),
    )
    verdicts: dict[tuple[bytes, int], str | None] = {}
    if transfer is None:
        for hub, seq, *_ in (*confirmations, *reversals):
            verdicts[hub, seq] = f"unknown {name}: its proposal is not held here"
        _record(verdicts, tx)
        return
    proposed_seq, from_hub, to_hub, seconds, old_state = transfer
    other = to_hub if proposer == from_hub else from_hub

    confirmed_seq: int | None = None
    for hub, seq in confirmations:
        if hub == proposer:
            verdicts[hub, seq] = f"{name}: the proposer cannot confirm its own proposal"
        elif hub != other:
            verdicts[hub, seq] = f"{name}: only the other party, {hub_display(other)}, confirms"
        elif confirmed_seq is None:
            confirmed_seq, verdicts[hub, seq] = seq, None
        else:
            verdicts[hub, seq] = f"{name} is already confirmed (seq {confirmed_seq})"

    consent = {proposer: proposed_seq, other: confirmed_seq}
    reversal: tuple[bytes, int, str] | None = None
    for hub, seq, reason in reversals:
        if hub not in consent:
            verdicts[hub, seq] = f"{name}: {hub_display(hub)} is not a party to it"
        elif confirmed_seq is None:
            verdicts[hub, seq] = f"{name} is not confirmed, so there is nothing to reverse"
        elif seq < (consent[hub] or 0):
            verdicts[hub, seq] = f"{name}: the reversal came before its author's own consent"
        elif reversal is None:
            reversal, verdicts[hub, seq] = (hub, seq, reason), None
        else:
            verdicts[hub, seq] = f"{name} is already reversed (by {hub_display(reversal[0])})"
    _record(verdicts, tx)

    state = PROPOSED if confirmed_seq is None else CONFIRMED if reversal is None else REVERSED
    tx.execute(
        "UPDATE {transfers} SET state = ?, confirmed_seq = ?, reversed_by = ?, "
        "reversed_seq = ?, reversal_reason = ? WHERE proposer = ? AND transfer_id = ?",
        (
            state,
            confirmed_seq,
            reversal[0] if reversal else None,
            reversal[1] if reversal else None,
            reversal[2] if reversal else None,
            proposer,
            transfer_id,
        ),
    )
    delta = seconds * ((state == CONFIRMED) - (old_state == CONFIRMED))
    if delta:
        for hub, change in ((from_hub, -delta), (to_hub, delta)):
            tx.execute(
                "UPDATE {balances} SET seconds = seconds + ?, negative = (seconds + ? < 0) "
                "WHERE hub = ?",
                (change, change, hub),
            )


def _record(verdicts: dict[tuple[bytes, int], str | None], tx: ProjectionTx) -> None:
    """Set or clear the ignore record of each fact: a settled fact may change its verdict."""
    for (hub, seq), reason in verdicts.items():
        if reason is None:
            tx.execute("DELETE FROM {_ignored} WHERE hub = ? AND seq = ?", (hub, seq))
        else:
            tx.execute(
                "INSERT OR REPLACE INTO {_ignored} (hub, seq, reason) VALUES (?, ?, ?)",
                (hub, seq, reason),
            )


PROJECTIONS = (SkillsProjection,)
