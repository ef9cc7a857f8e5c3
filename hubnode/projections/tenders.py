"""The tenders view: tenders, lots, bid clusters, members, lot assignments, bids, awards.

**Why facts, then a derivation.** A tender's events come from many hubs: one hub shares
it, a lead hub forms a cluster for it, others join, the lead assigns lots and bids, the
sharing hub records the award. Hubs receive these in different orders — a
``cluster.joined`` may arrive before the ``cluster.formed`` it refers to, a
``cluster.formed`` before the ``tender.shared``, two hubs may share the same ocid. Rules
checked against "what has arrived so far" would give different answers on different
hubs. So this projection never decides on arrival:

1. every event is first stored as a **fact** keyed by ``(hub, seq)`` (``tender_facts``
   for events that name the tender, ``cluster_facts`` for events that name a cluster);
2. then the whole **tender group** it belongs to (the tender's ocid: its shares, updates,
   formations and awards, plus the joins, assignments and bids of the clusters formed for
   it) is **derived again** from its facts by one pure function, which rewrites the group's
   rows and its ignore reasons.

The derived state is therefore a function of the set of facts, not of their order: once
two hubs hold the same events, their tables are byte-identical. An event whose cluster has
not been formed (yet) is kept as a fact and ignored with "has not been formed"; when the
formation arrives, its group is derived again and the event is judged for real (and its
ignore reason dropped if it passes). Rules, the same on every hub:

- an ocid belongs to the lowest ``(hub, seq)`` ``tender.shared`` naming it; other shares
  of it are ignored. Only that hub's ``tender.updated`` (after its share) apply, in seq
  order; each changes only the fields it names.
- a cluster id belongs to its lead's first ``cluster.formed`` with that id (one hub's
  events arrive in seq order, so the first seen is the lowest seq). It is valid if the
  tender has been shared and the lots it seeks are in the tender.
- members are the lead and every other hub whose first ``cluster.joined`` names it.
- a ``lot.assigned`` or ``bid.submitted`` counts only from the lead, for lots in the
  tender (and among the lots the cluster seeks, if it named any), and an assignment only
  to a member; the lead's latest assignment of a lot wins (its own seq order).
- an ``award.recorded`` counts only from the hub that owns the tender, for lots in the
  tender, and for a cluster formed for that tender when it names one.

Lots are checked against the tender as it stands after all of its updates, and membership
against every join held: both are properties of the set of facts. Deriving a group costs
time in its number of events, which stays small (tens per tender).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

import msgspec

from hubnode.events.ids import hub_display
from hubnode.events.tenders import (
    UPDATABLE,
    AwardRecorded,
    BidSubmitted,
    ClusterFormed,
    ClusterJoined,
    Lot,
    LotAssigned,
    TenderShared,
    TenderUpdated,
)
from hubnode.events.verify import Event
from hubnode.projections.base import Projection, ProjectionTx

TENDER_KINDS: Final = ("tender.shared", "tender.updated", "cluster.formed", "award.recorded")
CLUSTER_KINDS: Final = ("cluster.joined", "lot.assigned", "bid.submitted")

_BODIES: Final[dict[str, type[Any]]] = {
    "tender.shared": TenderShared,
    "tender.updated": TenderUpdated,
    "cluster.formed": ClusterFormed,
    "award.recorded": AwardRecorded,
    "cluster.joined": ClusterJoined,
    "lot.assigned": LotAssigned,
    "bid.submitted": BidSubmitted,
}
_decoders: Final = {kind: msgspec.json.Decoder(body) for kind, body in _BODIES.items()}
_encoder: Final = msgspec.json.Encoder()


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass
class _Fact:
    hub: bytes
    seq: int
    kind: str
    ts: int
    body: Any

    @property
    def key(self) -> tuple[bytes, int]:
        return (self.hub, self.seq)

    @property
    def author(self) -> str:
        return hub_display(self.hub)


@dataclass
class _Tender:
    owner: _Fact
    body: TenderShared
    updated_seq: int
    updated_ts: int
    lots: dict[str, Lot] = field(default_factory=dict)


class TendersProjection(Projection):
    name: ClassVar[str] = "tenders"
    version: ClassVar[int] = 1
    kinds: ClassVar[frozenset[str]] = frozenset(TENDER_KINDS + CLUSTER_KINDS)
    # Primary keys start with the column the derivation looks rows up by (the runner's
    # tables have no other indexes).
    tables: ClassVar[dict[str, str]] = {
        "tender_facts": "ocid TEXT NOT NULL, hub BLOB NOT NULL, seq INTEGER NOT NULL, "
        "kind TEXT NOT NULL, ts INTEGER NOT NULL, body TEXT NOT NULL, "
        "PRIMARY KEY (ocid, hub, seq)",
        "cluster_facts": "lead TEXT NOT NULL, cluster TEXT NOT NULL, hub BLOB NOT NULL, "
        "seq INTEGER NOT NULL, kind TEXT NOT NULL, ts INTEGER NOT NULL, body TEXT NOT NULL, "
        "PRIMARY KEY (lead, cluster, hub, seq)",
        "cluster_index": "lead TEXT NOT NULL, cluster TEXT NOT NULL, ocid TEXT NOT NULL, "
        "seq INTEGER NOT NULL, PRIMARY KEY (lead, cluster)",
        "tenders": "ocid TEXT PRIMARY KEY, hub TEXT NOT NULL, seq INTEGER NOT NULL, "
        "updated_seq INTEGER NOT NULL, updated_ts INTEGER NOT NULL, title TEXT NOT NULL, "
        "description TEXT NOT NULL, buyer TEXT NOT NULL, amount REAL NOT NULL, "
        "currency TEXT NOT NULL, period_start TEXT NOT NULL, period_end TEXT NOT NULL, "
        "status TEXT NOT NULL, documents TEXT NOT NULL, categories TEXT NOT NULL, "
        "area TEXT NOT NULL",
        "lots": "ocid TEXT NOT NULL, lot TEXT NOT NULL, position INTEGER NOT NULL, "
        "title TEXT NOT NULL, amount REAL, currency TEXT, PRIMARY KEY (ocid, lot)",
        "clusters": "ocid TEXT NOT NULL, lead TEXT NOT NULL, cluster TEXT NOT NULL, "
        "seq INTEGER NOT NULL, lots TEXT NOT NULL, PRIMARY KEY (ocid, lead, cluster)",
        "members": "ocid TEXT NOT NULL, lead TEXT NOT NULL, cluster TEXT NOT NULL, "
        "member TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (ocid, lead, cluster, member)",
        "assignments": "ocid TEXT NOT NULL, lead TEXT NOT NULL, cluster TEXT NOT NULL, "
        "lot TEXT NOT NULL, member TEXT NOT NULL, seq INTEGER NOT NULL, "
        "PRIMARY KEY (ocid, lead, cluster, lot)",
        "bids": "ocid TEXT NOT NULL, lead TEXT NOT NULL, seq INTEGER NOT NULL, "
        "cluster TEXT NOT NULL, lots TEXT NOT NULL, amount REAL NOT NULL, "
        "currency TEXT NOT NULL, PRIMARY KEY (ocid, lead, seq)",
        "awards": "ocid TEXT NOT NULL, hub TEXT NOT NULL, seq INTEGER NOT NULL, lead TEXT, "
        "cluster TEXT, supplier TEXT, lots TEXT NOT NULL, amount REAL NOT NULL, "
        "currency TEXT NOT NULL, awarded_on TEXT, ts INTEGER NOT NULL, "
        "PRIMARY KEY (ocid, hub, seq)",
    }
    DERIVED: ClassVar[tuple[str, ...]] = (
        "tenders",
        "lots",
        "clusters",
        "members",
        "assignments",
        "bids",
        "awards",
    )

    def apply(self, event: Event, tx: ProjectionTx) -> None:
        body = event.body
        data = _encoder.encode(body).decode()
        if isinstance(body, TenderShared | TenderUpdated | ClusterFormed | AwardRecorded):
            ocid = body.tender if isinstance(body, ClusterFormed | AwardRecorded) else body.ocid
            tx.execute(
                "INSERT OR IGNORE INTO {tender_facts} VALUES (?, ?, ?, ?, ?, ?)",
                (ocid, event.hub, event.seq, event.kind, event.ts, data),
            )
            if isinstance(body, ClusterFormed):
                tx.execute(
                    "INSERT OR IGNORE INTO {cluster_index} VALUES (?, ?, ?, ?)",
                    (hub_display(event.hub), body.cluster, ocid, event.seq),
                )
            _derive(tx, ocid)
        elif isinstance(body, ClusterJoined | LotAssigned | BidSubmitted):
            tx.execute(
                "INSERT OR IGNORE INTO {cluster_facts} VALUES (?, ?, ?, ?, ?, ?, ?)",
                (body.lead, body.cluster, event.hub, event.seq, event.kind, event.ts, data),
            )
            formed = tx.one(
                "SELECT ocid FROM {cluster_index} WHERE lead = ? AND cluster = ?",
                (body.lead, body.cluster),
            )
            if formed is None:
                tx.ignore(event, _not_formed(body.lead, body.cluster))
            else:
                _derive(tx, formed[0])


def _not_formed(lead: str, cluster: str) -> str:
    return f"cluster {cluster!r} of {lead} has not been formed"


def _facts(rows: Iterable[tuple[Any, ...]]) -> list[_Fact]:
    facts = [
        _Fact(hub, seq, kind, ts, _decoders[kind].decode(body)) for hub, seq, kind, ts, body in rows
    ]
    return sorted(facts, key=lambda f: f.key)


def _derive(tx: ProjectionTx, ocid: str) -> None:
    """Rewrite the rows and ignore reasons of tender ``ocid`` from its facts."""
    facts = _facts(
        tx.all("SELECT hub, seq, kind, ts, body FROM {tender_facts} WHERE ocid = ?", (ocid,))
    )
    reasons: dict[tuple[bytes, int], str] = {}
    judged: list[tuple[bytes, int]] = [f.key for f in facts]
    for table in TendersProjection.DERIVED:
        tx.execute(f"DELETE FROM {{{table}}} WHERE ocid = ?", (ocid,))

    tender = _tender(ocid, facts, reasons)
    if tender is not None:
        _write_tender(tx, ocid, tender)

    valid_clusters: set[tuple[str, str]] = set()
    for f in facts:
        if f.kind != "cluster.formed":
            continue
        formed: ClusterFormed = f.body
        lead = f.author
        first = tx.one(
            "SELECT seq FROM {cluster_index} WHERE lead = ? AND cluster = ?",
            (lead, formed.cluster),
        )
        if first is None or first[0] != f.seq:
            owner_seq = first[0] if first else "?"
            reasons[f.key] = (
                f"cluster id {formed.cluster!r} was already used by this lead (seq {owner_seq})"
            )
            continue  # the events naming this cluster belong to the first formation
        cluster_facts = _facts(
            tx.all(
                "SELECT hub, seq, kind, ts, body FROM {cluster_facts} "
                "WHERE lead = ? AND cluster = ?",
                (lead, formed.cluster),
            )
        )
        judged += [c.key for c in cluster_facts]
        problem = None
        if tender is None:
            problem = f"tender {ocid} has not been shared"
        else:
            missing = [lot for lot in formed.lots if lot not in tender.lots]
            if missing:
                problem = f"lots {missing} are not in tender {ocid}"
        if problem is not None:
            reasons[f.key] = problem
            for c in cluster_facts:
                reasons[c.key] = f"cluster {formed.cluster!r} of {lead} is ignored: {problem}"
            continue
        assert tender is not None
        valid_clusters.add((lead, formed.cluster))
        _derive_cluster(tx, ocid, tender, f, cluster_facts, reasons)

    for f in facts:
        if f.kind == "award.recorded":
            _award(tx, ocid, tender, f, valid_clusters, reasons)

    for hub, seq in judged:
        tx.execute("DELETE FROM {_ignored} WHERE hub = ? AND seq = ?", (hub, seq))
    for (hub, seq), reason in sorted(reasons.items()):
        tx.execute(
            "INSERT OR REPLACE INTO {_ignored} (hub, seq, reason) VALUES (?, ?, ?)",
            (hub, seq, reason),
        )


def _tender(ocid: str, facts: list[_Fact], reasons: dict[tuple[bytes, int], str]) -> _Tender | None:
    """The tender as its owner's share and updates make it, or None if not shared."""
    shares = [f for f in facts if f.kind == "tender.shared"]
    tender: _Tender | None = None
    if shares:
        owner = shares[0]
        tender = _Tender(owner, owner.body, owner.seq, owner.ts)
        for other in shares[1:]:
            reasons[other.key] = (
                f"ocid {ocid} was already shared by {owner.author} (seq {owner.seq})"
            )
    for f in facts:
        if f.kind != "tender.updated":
            continue
        if tender is None:
            reasons[f.key] = f"tender {ocid} has not been shared"
        elif f.hub != tender.owner.hub:
            reasons[f.key] = f"only {tender.owner.author}, which shared {ocid}, may update it"
        elif f.seq < tender.owner.seq:
            reasons[f.key] = f"update of {ocid} comes before its share"
        else:
            update: TenderUpdated = f.body
            changes = {
                name: getattr(update, name)
                for name in UPDATABLE
                if getattr(update, name) is not None
            }
            tender.body = msgspec.structs.replace(tender.body, **changes)
            tender.updated_seq, tender.updated_ts = f.seq, f.ts
    if tender is not None:
        tender.lots = {lot.id: lot for lot in tender.body.lots}
    return tender


def _write_tender(tx: ProjectionTx, ocid: str, tender: _Tender) -> None:
    b = tender.body
    tx.execute(
        "INSERT INTO {tenders} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            ocid,
            tender.owner.author,
            tender.owner.seq,
            tender.updated_seq,
            tender.updated_ts,
            b.title,
            b.description,
            b.buyer,
            b.value.amount,
            b.value.currency,
            b.period.start.isoformat(),
            b.period.end.isoformat(),
            b.status,
            _json([{"title": d.title, "url": d.url} for d in b.documents]),
            _json(list(b.categories)),
            _json(list(b.area)),
        ),
    )
    tx.executemany(
        "INSERT INTO {lots} VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                ocid,
                lot.id,
                i,
                lot.title,
                lot.value.amount if lot.value else None,
                lot.value.currency if lot.value else None,
            )
            for i, lot in enumerate(b.lots)
        ],
    )


def _derive_cluster(
    tx: ProjectionTx,
    ocid: str,
    tender: _Tender,
    formation: _Fact,
    facts: list[_Fact],
    reasons: dict[tuple[bytes, int], str],
) -> None:
    formed: ClusterFormed = formation.body
    lead, cid = formation.author, formed.cluster
    tx.execute(
        "INSERT INTO {clusters} VALUES (?, ?, ?, ?, ?)",
        (ocid, lead, cid, formation.seq, _json(list(formed.lots))),
    )
    members = {lead: formation.seq}
    for f in facts:
        if f.kind != "cluster.joined":
            continue
        if f.author == lead:
            reasons[f.key] = f"the lead {lead} is a member of its cluster {cid!r} already"
        elif f.author in members:
            reasons[f.key] = f"{f.author} already joined cluster {cid!r} (seq {members[f.author]})"
        else:
            members[f.author] = f.seq
    tx.executemany(
        "INSERT INTO {members} VALUES (?, ?, ?, ?, ?)",
        [(ocid, lead, cid, member, seq) for member, seq in members.items()],
    )

    def lot_problem(lots: Iterable[str]) -> str | None:
        missing = [lot for lot in lots if lot not in tender.lots]
        if missing:
            return f"lots {missing} are not in tender {ocid}"
        unsought = [lot for lot in lots if formed.lots and lot not in formed.lots]
        if unsought:
            return f"lots {unsought} are not among the lots cluster {cid!r} seeks"
        return None

    assigned: dict[str, tuple[str, int]] = {}
    for f in facts:
        if f.kind == "lot.assigned":
            a: LotAssigned = f.body
            problem = lot_problem([a.lot])
            if f.author != lead:
                reasons[f.key] = f"only the lead {lead} may assign lots of cluster {cid!r}"
            elif problem is not None:
                reasons[f.key] = problem
            elif a.member not in members:
                reasons[f.key] = f"{a.member} has not joined cluster {cid!r}"
            else:
                assigned[a.lot] = (a.member, f.seq)  # the lead's facts come in seq order
        elif f.kind == "bid.submitted":
            bid: BidSubmitted = f.body
            problem = lot_problem(bid.lots)
            if f.author != lead:
                reasons[f.key] = f"only the lead {lead} may submit the bid of cluster {cid!r}"
            elif problem is not None:
                reasons[f.key] = problem
            else:
                tx.execute(
                    "INSERT INTO {bids} VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        ocid,
                        lead,
                        f.seq,
                        cid,
                        _json(list(bid.lots)),
                        bid.value.amount,
                        bid.value.currency,
                    ),
                )
    tx.executemany(
        "INSERT INTO {assignments} VALUES (?, ?, ?, ?, ?, ?)",
        [(ocid, lead, cid, lot, member, seq) for lot, (member, seq) in assigned.items()],
    )


def _award(
    tx: ProjectionTx,
    ocid: str,
    tender: _Tender | None,
    f: _Fact,
    clusters: set[tuple[str, str]],
    reasons: dict[tuple[bytes, int], str],
) -> None:
    award: AwardRecorded = f.body
    if tender is None:
        reasons[f.key] = f"tender {ocid} has not been shared"
        return
    if f.hub != tender.owner.hub:
        reasons[f.key] = f"only {tender.owner.author}, which shared {ocid}, may record its award"
        return
    missing = [lot for lot in award.lots if lot not in tender.lots]
    if missing:
        reasons[f.key] = f"lots {missing} are not in tender {ocid}"
        return
    if award.lead is not None and (award.lead, award.cluster) not in clusters:
        reasons[f.key] = f"cluster {award.cluster!r} of {award.lead} is not a cluster for {ocid}"
        return
    tx.execute(
        "INSERT INTO {awards} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            ocid,
            f.author,
            f.seq,
            award.lead,
            award.cluster,
            award.supplier,
            _json(list(award.lots)),
            award.value.amount,
            award.value.currency,
            award.awarded_on.isoformat() if award.awarded_on else None,
            f.ts,
        ),
    )


PROJECTIONS = (TendersProjection,)
