"""Deriving the tenders view from its facts: the rules of ``hubnode.projections.tenders``.

A **tender group** is a tender's ocid with its facts: its shares, updates, formations and
awards (``tender_facts``) and the joins, assignments and bids of the clusters first formed
for it (``cluster_facts``). Its rows in the derived tables and its facts' ignore reasons
are a pure function of those facts, computed here in three parts:

- the **tender** (owner, fields, lots) from its shares and updates;
- each **cluster** from its first formation, its own facts and the tender's owner and lots;
- the **awards** from the award facts, the tender's owner and lots, and which clusters are
  valid.

:func:`derive_group` computes all three from the facts (needed when a share or update may
change the tender). :func:`derive_parts` computes only the clusters and awards a batch
touched, taking the tender's owner and lots and the valid clusters from the derived tables:
those are up to date, since every share or update derives its whole group in its batch.
Both paths run the same judging functions, so they write the same rows.

Writes touch only what changed: each derived slice is compared with the stored rows, and
each fact keeps a copy of its ignore reason, so a group of dozens of rows whose new fact
changes one or two of them costs reads, not rewrites.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from hubnode.events.ids import hub_display, parse_hub
from hubnode.events.tenders import (
    UPDATABLE,
    AwardRecorded,
    BidSubmitted,
    ClusterFormed,
    ClusterJoined,
    LotAssigned,
    TenderShared,
    TenderUpdated,
)
from hubnode.projections.base import ProjectionTx

DERIVED: Final = ("tenders", "lots", "clusters", "members", "assignments", "bids", "awards")
CLUSTER_TABLES: Final = ("clusters", "members", "assignments", "bids")
"""The derived tables holding a cluster's rows (each has ocid, lead and cluster columns)."""

_BODIES: Final[dict[str, type[Any]]] = {
    "tender.shared": TenderShared,
    "tender.updated": TenderUpdated,
    "cluster.formed": ClusterFormed,
    "award.recorded": AwardRecorded,
    "cluster.joined": ClusterJoined,
    "lot.assigned": LotAssigned,
    "bid.submitted": BidSubmitted,
}
# Facts are stored as msgpack: a group's facts are decoded at every derivation.
fact_encoder: Final = msgspec.msgpack.Encoder()
_decoders: Final = {kind: msgspec.msgpack.Decoder(body) for kind, body in _BODIES.items()}
_json_encoder: Final = msgspec.json.Encoder()

_FACT_COLUMNS: Final = "rowid, hub, seq, kind, ts, body, reason"


def _json(value: Any) -> str:
    """JSON for the view's list columns (readers ``json.loads`` them)."""
    return _json_encoder.encode(value).decode()


def not_formed(lead: str, cluster: str) -> str:
    return f"cluster {cluster!r} of {lead} has not been formed"


def already_used(cluster: str, first_seq: int | None) -> str:
    return (
        f"cluster id {cluster!r} was already used by this lead "
        f"(seq {'?' if first_seq is None else first_seq})"
    )


@dataclass(slots=True)
class _Fact:
    table: str
    rowid: int
    hub: bytes
    seq: int
    kind: str
    ts: int
    body: Any
    reason: str | None
    """Why the fact is ignored, as last derived (a copy of its ``_ignored`` row)."""

    @property
    def key(self) -> tuple[bytes, int]:
        return (self.hub, self.seq)

    @property
    def author(self) -> str:
        return hub_display(self.hub)


def _facts(table: str, rows: Iterable[tuple[Any, ...]]) -> list[_Fact]:
    """Facts from ``(rowid, hub, seq, kind, ts, body, reason)`` rows, in (hub, seq) order."""
    facts = [
        _Fact(table, rowid, hub, seq, kind, ts, _decoders[kind].decode(body), reason)
        for rowid, hub, seq, kind, ts, body, reason in rows
    ]
    return sorted(facts, key=lambda f: f.key)


@dataclass(slots=True, frozen=True)
class _Owner:
    """What a tender's clusters and awards are judged against."""

    hub: bytes
    seq: int
    lots: frozenset[str]

    @property
    def author(self) -> str:
        return hub_display(self.hub)


@dataclass
class _Tender:
    owner: _Fact
    body: TenderShared
    updated_seq: int
    updated_ts: int


@dataclass
class _Out:
    """What judging produces: rows per derived table, ignore reasons by (hub, seq)."""

    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=lambda: {t: [] for t in DERIVED})
    reasons: dict[tuple[bytes, int], str] = field(default_factory=dict)


# -- the two ways of deriving -----------------------------------------------------------


def derive_group(tx: ProjectionTx, ocid: str) -> None:
    """Rewrite the rows and ignore reasons of tender ``ocid`` from all of its facts."""
    facts = _facts(
        "tender_facts",
        tx.all(f"SELECT {_FACT_COLUMNS} FROM {{tender_facts}} WHERE ocid = ?", (ocid,)),
    )
    # The clusters whose first formation names this tender, and the facts naming them.
    firsts: dict[tuple[str, str], int] = {}
    cluster_rows: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
    for lead, cid, seq in tx.all(
        "SELECT lead, cluster, seq FROM {cluster_index} WHERE ocid = ?", (ocid,)
    ):
        firsts[lead, cid] = seq
        cluster_rows[lead, cid] = []
    if firsts:
        for lead, cid, *row in tx.all(
            "SELECT f.lead, f.cluster, f.rowid, f.hub, f.seq, f.kind, f.ts, f.body, f.reason "
            "FROM {cluster_index} i JOIN {cluster_facts} f "
            "ON f.lead = i.lead AND f.cluster = i.cluster WHERE i.ocid = ?",
            (ocid,),
        ):
            cluster_rows[lead, cid].append(tuple(row))

    out = _Out()
    judged: list[_Fact] = list(facts)
    tender = _tender(ocid, facts, out.reasons)
    owner = None
    if tender is not None:
        owner = _Owner(
            tender.owner.hub, tender.owner.seq, frozenset(x.id for x in tender.body.lots)
        )
        _tender_rows(out, ocid, tender)

    valid: set[tuple[str, str]] = set()
    for f in facts:
        if f.kind != "cluster.formed":
            continue
        formed: ClusterFormed = f.body
        first = firsts.get((f.author, formed.cluster))
        if first != f.seq:
            if first is None:  # its id's first formation names another tender
                found = tx.one(
                    "SELECT seq FROM {cluster_index} WHERE lead = ? AND cluster = ?",
                    (f.author, formed.cluster),
                )
                first = found[0] if found else None
            out.reasons[f.key] = already_used(formed.cluster, first)
            continue  # the events naming this cluster belong to the first formation
        cluster_facts = _facts("cluster_facts", cluster_rows[f.author, formed.cluster])
        judged += cluster_facts
        if _cluster(out, ocid, owner, f, cluster_facts):
            valid.add((f.author, formed.cluster))

    for f in facts:
        if f.kind == "award.recorded":
            _award(out, ocid, owner, f, valid)

    for table in DERIVED:
        _write_rows(tx, table, "ocid = ?", (ocid,), out.rows[table])
    _write_reasons(tx, judged, out.reasons)


def derive_parts(
    tx: ProjectionTx, ocid: str, clusters: Iterable[tuple[str, str, int]], awards: bool
) -> None:
    """Rewrite the rows and reasons of some clusters ``(lead, cluster, seq of its first
    formation)`` of tender ``ocid``, then of its awards if ``awards``.

    The tender must not have changed since its group was last derived whole.
    """
    owner = _stored_owner(tx, ocid)
    for lead, cid, seq in sorted(clusters):
        formation = _facts(
            "tender_facts",
            tx.all(
                f"SELECT {_FACT_COLUMNS} FROM {{tender_facts}} "
                "WHERE ocid = ? AND hub = ? AND seq = ?",
                (ocid, parse_hub(lead), seq),
            ),
        )
        cluster_facts = _facts(
            "cluster_facts",
            tx.all(
                f"SELECT {_FACT_COLUMNS} FROM {{cluster_facts}} WHERE lead = ? AND cluster = ?",
                (lead, cid),
            ),
        )
        out = _Out()
        _cluster(out, ocid, owner, formation[0], cluster_facts)
        for table in CLUSTER_TABLES:
            _write_rows(
                tx,
                table,
                "ocid = ? AND lead = ? AND cluster = ?",
                (ocid, lead, cid),
                out.rows[table],
            )
        _write_reasons(tx, formation + cluster_facts, out.reasons)
    if awards:
        facts = _facts(
            "tender_facts",
            tx.all(
                f"SELECT {_FACT_COLUMNS} FROM {{tender_facts}} "
                "WHERE ocid = ? AND kind = 'award.recorded'",
                (ocid,),
            ),
        )
        valid = {
            (lead, cid)
            for lead, cid in tx.all("SELECT lead, cluster FROM {clusters} WHERE ocid = ?", (ocid,))
        }
        out = _Out()
        for f in facts:
            _award(out, ocid, owner, f, valid)
        _write_rows(tx, "awards", "ocid = ?", (ocid,), out.rows["awards"])
        _write_reasons(tx, facts, out.reasons)


def _stored_owner(tx: ProjectionTx, ocid: str) -> _Owner | None:
    """The tender's owner and lots as last derived, or None if it has not been shared."""
    row = tx.one("SELECT hub, seq FROM {tenders} WHERE ocid = ?", (ocid,))
    if row is None:
        return None
    lots = frozenset(lot for (lot,) in tx.all("SELECT lot FROM {lots} WHERE ocid = ?", (ocid,)))
    return _Owner(parse_hub(row[0]), row[1], lots)


# -- writing only what changed ----------------------------------------------------------


def _write_rows(
    tx: ProjectionTx, table: str, where: str, params: tuple[Any, ...], rows: list[tuple[Any, ...]]
) -> None:
    """Make ``table``'s rows matching ``where`` equal to ``rows``, writing only changes."""
    old = {
        tuple(row): rowid
        for rowid, *row in tx.all(f"SELECT rowid, * FROM {{{table}}} WHERE {where}", params)
    }
    new = set(rows)
    gone = [(rowid,) for row, rowid in old.items() if row not in new]
    if gone:
        tx.executemany(f"DELETE FROM {{{table}}} WHERE rowid = ?", gone)
    added = [row for row in rows if row not in old]
    if added:
        marks = ", ".join("?" * len(added[0]))
        tx.executemany(f"INSERT INTO {{{table}}} VALUES ({marks})", added)


def _write_reasons(
    tx: ProjectionTx, judged: list[_Fact], reasons: dict[tuple[bytes, int], str]
) -> None:
    """Set each judged fact's reason (or none) in ``_ignored`` and in the fact's copy."""
    changed = [(f, reasons.get(f.key)) for f in judged]
    changed = [(f, reason) for f, reason in changed if reason != f.reason]
    for table in ("tender_facts", "cluster_facts"):
        updates = [(reason, f.rowid) for f, reason in changed if f.table == table]
        if updates:
            tx.executemany(f"UPDATE {{{table}}} SET reason = ? WHERE rowid = ?", updates)
    cleared = [(f.hub, f.seq) for f, reason in changed if reason is None]
    if cleared:
        tx.executemany("DELETE FROM {_ignored} WHERE hub = ? AND seq = ?", cleared)
    ignored = [(f.hub, f.seq, reason) for f, reason in changed if reason is not None]
    if ignored:
        tx.executemany(
            "INSERT OR REPLACE INTO {_ignored} (hub, seq, reason) VALUES (?, ?, ?)", ignored
        )


# -- the rules --------------------------------------------------------------------------


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
    return tender


def _tender_rows(out: _Out, ocid: str, tender: _Tender) -> None:
    b = tender.body
    out.rows["tenders"].append(
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
        )
    )
    out.rows["lots"] += [
        (
            ocid,
            lot.id,
            i,
            lot.title,
            lot.value.amount if lot.value else None,
            lot.value.currency if lot.value else None,
        )
        for i, lot in enumerate(b.lots)
    ]


def _cluster(
    out: _Out, ocid: str, owner: _Owner | None, formation: _Fact, facts: list[_Fact]
) -> bool:
    """Judge a cluster: its first formation and the facts naming it. True if it is valid."""
    formed: ClusterFormed = formation.body
    lead, cid = formation.author, formed.cluster
    problem = None
    if owner is None:
        problem = f"tender {ocid} has not been shared"
    else:
        missing = [lot for lot in formed.lots if lot not in owner.lots]
        if missing:
            problem = f"lots {missing} are not in tender {ocid}"
    if problem is not None:
        out.reasons[formation.key] = problem
        for c in facts:
            out.reasons[c.key] = f"cluster {cid!r} of {lead} is ignored: {problem}"
        return False
    assert owner is not None
    reasons = out.reasons
    out.rows["clusters"].append((ocid, lead, cid, formation.seq, _json(list(formed.lots))))
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
    out.rows["members"] += [(ocid, lead, cid, member, seq) for member, seq in members.items()]

    def lot_problem(lots: Iterable[str]) -> str | None:
        missing = [lot for lot in lots if lot not in owner.lots]
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
                out.rows["bids"].append(
                    (
                        ocid,
                        lead,
                        f.seq,
                        cid,
                        _json(list(bid.lots)),
                        bid.value.amount,
                        bid.value.currency,
                    )
                )
    out.rows["assignments"] += [
        (ocid, lead, cid, lot, member, seq) for lot, (member, seq) in assigned.items()
    ]
    return True


def _award(
    out: _Out, ocid: str, owner: _Owner | None, f: _Fact, clusters: set[tuple[str, str]]
) -> None:
    reasons = out.reasons
    award: AwardRecorded = f.body
    if owner is None:
        reasons[f.key] = f"tender {ocid} has not been shared"
        return
    if f.hub != owner.hub:
        reasons[f.key] = f"only {owner.author}, which shared {ocid}, may record its award"
        return
    missing = [lot for lot in award.lots if lot not in owner.lots]
    if missing:
        reasons[f.key] = f"lots {missing} are not in tender {ocid}"
        return
    if award.lead is not None and (award.lead, award.cluster) not in clusters:
        reasons[f.key] = f"cluster {award.cluster!r} of {award.lead} is not a cluster for {ocid}"
        return
    out.rows["awards"].append(
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
        )
    )
