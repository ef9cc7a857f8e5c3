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
2. then, at the end of the runner's batch, what the batch touched is **derived again**,
   once, from the facts, by pure functions that rewrite the rows and ignore reasons
   (``hubnode.projections.tender_groups``): the whole **tender group** (the tender's ocid:
   its shares, updates, formations and awards, plus the joins, assignments and bids of
   the clusters formed for it) when a share or update may have changed the tender, else
   only the clusters and the awards the batch's events name.

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
against every join held: both are properties of the set of facts. Deriving costs time in
the number of facts read, which stays small (tens per tender); deriving once per batch
rather than once per event gives the same tables (a function of the facts held), whatever
the batch boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final

from hubnode.events.ids import hub_display
from hubnode.events.tenders import (
    AwardRecorded,
    BidSubmitted,
    ClusterFormed,
    ClusterJoined,
    LotAssigned,
    TenderShared,
    TenderUpdated,
)
from hubnode.events.verify import Event
from hubnode.projections.base import Projection, ProjectionTx
from hubnode.projections.tender_groups import (
    already_used,
    derive_group,
    derive_parts,
    fact_encoder,
    not_formed,
)

TENDER_KINDS: Final = ("tender.shared", "tender.updated", "cluster.formed", "award.recorded")
CLUSTER_KINDS: Final = ("cluster.joined", "lot.assigned", "bid.submitted")


class TendersProjection(Projection):
    name: ClassVar[str] = "tenders"
    # 2: facts stored as msgpack with their ignore reason, cluster_index indexed by ocid,
    # derived once per batch.
    version: ClassVar[int] = 2
    cost_per_event: ClassVar[float] = 4.2  # bench/projections.py, 2026-11-26
    kinds: ClassVar[frozenset[str]] = frozenset(TENDER_KINDS + CLUSTER_KINDS)
    # Primary keys start with the column the derivation looks rows up by (the runner's
    # tables have no other indexes; UNIQUE adds one where a second lookup needs it).
    tables: ClassVar[dict[str, str]] = {
        "tender_facts": "ocid TEXT NOT NULL, hub BLOB NOT NULL, seq INTEGER NOT NULL, "
        "kind TEXT NOT NULL, ts INTEGER NOT NULL, body BLOB NOT NULL, reason TEXT, "
        "PRIMARY KEY (ocid, hub, seq)",
        "cluster_facts": "lead TEXT NOT NULL, cluster TEXT NOT NULL, hub BLOB NOT NULL, "
        "seq INTEGER NOT NULL, kind TEXT NOT NULL, ts INTEGER NOT NULL, body BLOB NOT NULL, "
        "reason TEXT, PRIMARY KEY (lead, cluster, hub, seq)",
        "cluster_index": "lead TEXT NOT NULL, cluster TEXT NOT NULL, ocid TEXT NOT NULL, "
        "seq INTEGER NOT NULL, PRIMARY KEY (lead, cluster), UNIQUE (ocid, lead, cluster) "
        "WITHOUT ROWID",
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

    def apply(self, event: Event, tx: ProjectionTx) -> None:
        self.apply_batch([event], tx)

    def apply_batch(self, events: Sequence[Event], tx: ProjectionTx) -> None:
        """Store every event as a fact, then derive what the batch touched, once."""
        touched = _Touched()
        for event in events:
            _store(event, tx, touched)
        for ocid in sorted(touched.groups):
            derive_group(tx, ocid)
        for ocid in sorted((touched.clusters.keys() | touched.awards) - touched.groups):
            derive_parts(tx, ocid, touched.clusters.get(ocid, ()), ocid in touched.awards)


@dataclass
class _Touched:
    """What a batch's facts touched, by tender ocid."""

    groups: set[str] = field(default_factory=set)
    """Tenders shared or updated: their whole group is derived again."""
    clusters: dict[str, set[tuple[str, str, int]]] = field(default_factory=dict)
    """Clusters (lead, cluster, seq of the first formation) whose facts came."""
    awards: set[str] = field(default_factory=set)
    """Tenders whose awards must be judged again: an award came, or a cluster was formed."""


def _store(event: Event, tx: ProjectionTx, touched: _Touched) -> None:
    """Store ``event`` as a fact and note what it touched.

    What can be judged on arrival is judged here, the same on every hub: a formation
    reusing a cluster id (its lead's first formation with that id, the lowest seq, is
    always held before it), and an event naming a cluster not formed yet ("not formed",
    judged again when the formation comes).
    """
    body = event.body
    data = fact_encoder.encode(body)
    reason: str | None = None
    if isinstance(body, TenderShared | TenderUpdated | AwardRecorded):
        ocid = body.tender if isinstance(body, AwardRecorded) else body.ocid
        if isinstance(body, AwardRecorded):
            touched.awards.add(ocid)
        else:
            touched.groups.add(ocid)
    elif isinstance(body, ClusterFormed):
        ocid, lead = body.tender, hub_display(event.hub)
        tx.execute(
            "INSERT OR IGNORE INTO {cluster_index} VALUES (?, ?, ?, ?)",
            (lead, body.cluster, ocid, event.seq),
        )
        first = tx.one(
            "SELECT seq FROM {cluster_index} WHERE lead = ? AND cluster = ?",
            (lead, body.cluster),
        )
        if first is not None and first[0] == event.seq:
            touched.clusters.setdefault(ocid, set()).add((lead, body.cluster, event.seq))
            touched.awards.add(ocid)
        else:
            reason = already_used(body.cluster, first[0] if first else None)
    elif isinstance(body, ClusterJoined | LotAssigned | BidSubmitted):
        formed = tx.one(
            "SELECT ocid, seq FROM {cluster_index} WHERE lead = ? AND cluster = ?",
            (body.lead, body.cluster),
        )
        if formed is None:
            reason = not_formed(body.lead, body.cluster)
        else:
            touched.clusters.setdefault(formed[0], set()).add((body.lead, body.cluster, formed[1]))
        tx.execute(
            "INSERT INTO {cluster_facts} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (body.lead, body.cluster, event.hub, event.seq, event.kind, event.ts, data, reason),
        )
        if reason is not None:
            tx.ignore(event, reason)
        return
    else:
        return
    tx.execute(
        "INSERT INTO {tender_facts} VALUES (?, ?, ?, ?, ?, ?, ?)",
        (ocid, event.hub, event.seq, event.kind, event.ts, data, reason),
    )
    if reason is not None:
        tx.ignore(event, reason)


PROJECTIONS = (TendersProjection,)
