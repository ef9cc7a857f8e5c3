"""Tenders as this hub sees them, and its local watches: one copy for the ``hubnode tender``
commands and the staff console.

:func:`tenders` reads the ``tenders`` view into plain dicts (lots, clusters with members,
assignments and bids, awards), the shape ``hubnode tender list|show --json`` prints. A
watch is a local filter (category, area, value range) kept in the hub's folder, not shared
with the network (:func:`add_watch`, :func:`remove_watch`); :func:`watch_matches` is what
"today" shows and ``tender watch run`` streams. :func:`form_cluster`, :func:`join_cluster`,
:func:`assign_lot` and :func:`submit_bid` are ``hubnode cluster form|join|assign-lot`` and
``hubnode bid submit``; each takes the pseudonym of the console's staff member who acted,
if any (``staff``), to record on its event. Bad input raises
:class:`~hubnode.casework.InvalidInput` naming the field; an unreadable watch file raises
:class:`~hubnode.errors.ConfigError`. Nothing is printed here.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec

from hubnode.casework.inputs import InvalidInput
from hubnode.config import HubFolder
from hubnode.errors import ConfigError
from hubnode.events.fields import explain
from hubnode.events.ids import parse_hub
from hubnode.events.kinds import Body
from hubnode.events.tenders import BidSubmitted, ClusterFormed, ClusterJoined, LotAssigned
from hubnode.projections.runner import ProjectionRunner
from hubnode.store.log import Appended, EventLog

WATCH_FILE: Final = "tender-watches.json"

Tender = dict[str, Any]
B = TypeVar("B", bound=Body)
Watch = dict[str, Any]
"""``{"id", "category", "area", "min_value", "max_value"}``; None: any."""


def tenders(runner: ProjectionRunner, ocid: str | None = None) -> list[dict[str, Any]]:
    """Tenders with their lots, clusters (members, assignments, bids) and awards."""
    where, params = ("WHERE ocid = ?", (ocid,)) if ocid else ("", ())
    q = runner.query
    found: list[dict[str, Any]] = []
    for row in q("tenders", f"SELECT * FROM {{tenders}} {where} ORDER BY ocid", params):
        (t_ocid, hub, seq, updated_seq, updated_ts, title, description, buyer, amount) = row[:9]
        currency, start, end, status, documents, categories, area = row[9:]
        one = (t_ocid,)
        lots = [
            {"id": lot, "title": lot_title, "value": amount_of(lot_amount, lot_currency)}
            for lot, lot_title, lot_amount, lot_currency in q(
                "tenders",
                "SELECT lot, title, amount, currency FROM {lots} WHERE ocid = ? ORDER BY position",
                one,
            )
        ]
        clusters = []
        for lead, cid, c_seq, sought in q(
            "tenders",
            "SELECT lead, cluster, seq, lots FROM {clusters} WHERE ocid = ? ORDER BY lead, cluster",
            one,
        ):
            ref = (t_ocid, lead, cid)
            members = [
                m
                for (m,) in q(
                    "tenders",
                    "SELECT member FROM {members} WHERE ocid = ? AND lead = ? AND cluster = ? "
                    "ORDER BY member != lead, member",
                    ref,
                )
            ]
            assignments = dict(
                q(
                    "tenders",
                    "SELECT lot, member FROM {assignments} "
                    "WHERE ocid = ? AND lead = ? AND cluster = ? ORDER BY lot",
                    ref,
                )
            )
            bids = [
                {"seq": b_seq, "lots": json.loads(b_lots), "value": amount_of(b_amount, b_cur)}
                for b_seq, b_lots, b_amount, b_cur in q(
                    "tenders",
                    "SELECT seq, lots, amount, currency FROM {bids} "
                    "WHERE ocid = ? AND lead = ? AND cluster = ? ORDER BY seq",
                    ref,
                )
            ]
            clusters.append(
                {
                    "lead": lead,
                    "cluster": cid,
                    "seq": c_seq,
                    "lots_sought": json.loads(sought),
                    "members": members,
                    "assignments": assignments,
                    "bids": bids,
                }
            )
        awards = [
            {
                "hub": a_hub,
                "seq": a_seq,
                "lead": a_lead,
                "cluster": a_cluster,
                "supplier": supplier,
                "lots": json.loads(a_lots),
                "value": amount_of(a_amount, a_cur),
                "awarded_on": awarded_on,
                "ts": a_ts,
            }
            for (
                a_hub,
                a_seq,
                a_lead,
                a_cluster,
                supplier,
                a_lots,
                a_amount,
                a_cur,
                awarded_on,
                a_ts,
            ) in q(
                "tenders",
                "SELECT hub, seq, lead, cluster, supplier, lots, amount, currency, awarded_on, ts "
                "FROM {awards} WHERE ocid = ? ORDER BY hub, seq",
                one,
            )
        ]
        found.append(
            {
                "ocid": t_ocid,
                "hub": hub,
                "seq": seq,
                "updated_seq": updated_seq,
                "updated_ts": updated_ts,
                "title": title,
                "description": description,
                "buyer": buyer,
                "value": amount_of(amount, currency),
                "period": {"start": start, "end": end},
                "status": status,
                "documents": json.loads(documents),
                "categories": json.loads(categories),
                "area": json.loads(area),
                "lots": lots,
                "clusters": clusters,
                "awards": awards,
            }
        )
    return found


def amount_of(amount: float | None, currency: str | None) -> dict[str, Any] | None:
    if amount is None or currency is None:
        return None
    return {"amount": int(amount) if float(amount).is_integer() else amount, "currency": currency}


def watch_path(folder: HubFolder) -> Path:
    return folder.path / WATCH_FILE


def load_watches(folder: HubFolder) -> dict[str, Any]:
    """``{"watches": [...], "shown": {ocid: fingerprint}}`` (empty when none was added)."""
    path = watch_path(folder)
    if not path.exists():
        return {"watches": [], "shown": {}}
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path}: {e}; fix or delete it") from None
    state.setdefault("watches", [])
    state.setdefault("shown", {})
    return state


def save_watches(folder: HubFolder, state: dict[str, Any]) -> None:
    path = watch_path(folder)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees half a file


def add_watch(
    folder: HubFolder,
    *,
    category: str | None = None,
    area: str | None = None,
    min_value: float | None = None,
    max_value: float | None = None,
) -> Watch:
    """Add a watch and return it (with its id); at least one filter must be given."""
    if min_value is not None and min_value < 0:
        raise InvalidInput("min-value", f"--min-value {min_value} is negative; give 0 or more")
    if min_value is not None and max_value is not None and max_value < min_value:
        raise InvalidInput("max-value", f"--max-value {max_value} is below --min-value {min_value}")
    if (category, area, min_value, max_value) == (None, None, None, None):
        raise InvalidInput(
            "watch", "give at least one of --category, --area, --min-value, --max-value"
        )
    state = load_watches(folder)
    watch: Watch = {
        "id": 1 + max((w["id"] for w in state["watches"]), default=0),
        "category": category,
        "area": area.upper() if area else None,
        "min_value": min_value,
        "max_value": max_value,
    }
    state["watches"].append(watch)
    save_watches(folder, state)
    return watch


def remove_watch(folder: HubFolder, watch_id: int) -> None:
    """Remove the watch ``watch_id``; InvalidInput if this hub has none with that id."""
    state = load_watches(folder)
    kept = [w for w in state["watches"] if w["id"] != watch_id]
    if len(kept) == len(state["watches"]):
        raise InvalidInput("watch", f"no watch {watch_id}; see `hubnode tender watch list`")
    state["watches"] = kept
    save_watches(folder, state)


def matches(watch: Watch, t: Tender) -> bool:
    """Whether tender ``t`` passes every filter ``watch`` sets."""
    if watch["category"] and watch["category"] not in t["categories"]:
        return False
    if watch["area"] and not any(d.startswith(watch["area"]) for d in t["area"]):
        return False
    amount = t["value"]["amount"]
    if watch["min_value"] is not None and amount < watch["min_value"]:
        return False
    return watch["max_value"] is None or amount <= watch["max_value"]


def fingerprint(t: Tender) -> str:
    """Changes when anything a watcher sees of the tender changes."""
    return hashlib.sha256(json.dumps(t, sort_keys=True).encode()).hexdigest()[:16]


def watch_matches(runner: ProjectionRunner, watches: list[Watch]) -> list[tuple[Tender, list[int]]]:
    """Every tender matching at least one of ``watches``, with the ids of those it matches."""
    if not watches:  # "today" asks on every load: no watch, no need to read the tenders
        return []
    found = []
    for t in tenders(runner):
        hits = [w["id"] for w in watches if matches(w, t)]
        if hits:
            found.append((t, hits))
    return found


# -- bid clusters -------------------------------------------------------------------------


def hub_text(field: str, text: str) -> str:
    """``text`` as given (stripped), checked to be a hub id."""
    try:
        parse_hub(text)
    except ValueError as e:
        raise InvalidInput(field, f"--{field}: {e}") from None
    return text.strip()


def find_cluster(found: list[Tender], lead: str, cid: str) -> tuple[Tender, dict[str, Any]]:
    """The tender and the cluster ``cid`` that ``lead`` formed for it."""
    for t in found:
        for c in t["clusters"]:
            if c["lead"] == lead and c["cluster"] == cid:
                return t, c
    raise InvalidInput(
        "cluster",
        f"no cluster {cid!r} led by {lead} in this hub's view; see `hubnode tender show OCID`",
    )


async def join_cluster(
    folder: HubFolder,
    log: EventLog,
    views: ProjectionRunner,
    lead: str,
    cluster: str,
    *,
    staff: str | None = None,
) -> Appended:
    """Join the cluster ``cluster`` another hub leads (``lead``: its hub id); ``staff``
    is the pseudonym of the console's staff member who acted, if any."""
    found = tenders(views)
    lead = hub_text("lead", lead)
    if lead == folder.config.hub_id:
        raise InvalidInput(
            "lead", "--lead is this hub: the lead is a member of its own cluster already"
        )
    _, c = find_cluster(found, lead, cluster)
    if folder.config.hub_id in c["members"]:
        raise InvalidInput("cluster", f"this hub has already joined cluster {cluster!r}")
    try:
        body = msgspec.convert({"lead": lead, "cluster": cluster, "staff": staff}, ClusterJoined)
    except msgspec.ValidationError as e:
        raise InvalidInput("cluster", f"cluster.joined: {e}") from None
    return await log.append("cluster.joined", body)


def _tender(found: list[Tender], ocid: str) -> Tender:
    for t in found:
        if t["ocid"] == ocid:
            return t
    raise InvalidInput(
        "tender", f"no tender {ocid!r} in this hub's view; see `hubnode tender list`"
    )


def _check_lots(t: Tender, lots: list[str]) -> None:
    known = [lot["id"] for lot in t["lots"]]
    for lot in lots:
        if lot not in known:
            raise InvalidInput(
                "lot",
                f"--lot {lot!r} is not in tender {t['ocid']}; its lots are "
                f"{', '.join(known) or 'none'}",
            )


def _sought(c: dict[str, Any], lots: list[str], cid: str) -> None:
    unsought = [x for x in lots if c["lots_sought"] and x not in c["lots_sought"]]
    if unsought:
        raise InvalidInput(
            "lot", f"--lot {unsought[0]!r} is not among the lots cluster {cid!r} seeks"
        )


def _led(
    folder: HubFolder, found: list[Tender], lead: str | None, cid: str
) -> tuple[Tender, dict[str, Any]]:
    """The tender and cluster ``cid``, which this hub must lead."""
    lead = folder.config.hub_id if lead is None else hub_text("lead", lead)
    if lead != folder.config.hub_id:
        raise InvalidInput("lead", f"cluster {cid!r} is led by {lead}; only its lead may do this")
    return find_cluster(found, lead, cid)


def _body(kind: str, body_type: type[B], fields: dict[str, Any], field: str) -> B:
    try:
        return msgspec.convert(fields, body_type)
    except (msgspec.ValidationError, ValueError) as e:
        raise InvalidInput(field, f"{kind}: {explain(str(e))}") from None


async def form_cluster(
    folder: HubFolder,
    log: EventLog,
    views: ProjectionRunner,
    tender: str,
    lots: list[str],
    cluster: str | None = None,
    *,
    staff: str | None = None,
) -> tuple[str, Appended]:
    """Form a bid cluster led by this hub for ``tender``, seeking ``lots`` (none: any);
    ``cluster`` is its id, unique among this hub's clusters (default ``c<n>``)."""
    found = tenders(views)
    _check_lots(_tender(found, tender), lots)
    me = folder.config.hub_id
    mine = {c["cluster"] for t in found for c in t["clusters"] if c["lead"] == me}
    if cluster is None:
        n = len(mine) + 1
        while f"c{n}" in mine:
            n += 1
        cluster = f"c{n}"
    elif cluster in mine:
        raise InvalidInput("id", f"--id {cluster!r}: this hub already leads a cluster with that id")
    fields = {"cluster": cluster, "tender": tender, "lots": lots, "staff": staff}
    body = _body("cluster.formed", ClusterFormed, fields, "id")
    return cluster, await log.append("cluster.formed", body)


async def assign_lot(
    folder: HubFolder,
    log: EventLog,
    views: ProjectionRunner,
    cluster: str,
    lot: str,
    member: str,
    lead: str | None = None,
    *,
    staff: str | None = None,
) -> Appended:
    """Assign ``lot`` to ``member`` (a hub id) of the cluster this hub leads."""
    t, c = _led(folder, tenders(views), lead, cluster)
    _check_lots(t, [lot])
    _sought(c, [lot], cluster)
    member = hub_text("member", member)
    if member not in c["members"]:
        raise InvalidInput(
            "member", f"--member {member} has not joined cluster {cluster!r}; it must join first"
        )
    fields = {"lead": c["lead"], "cluster": cluster, "lot": lot, "member": member, "staff": staff}
    return await log.append("lot.assigned", _body("lot.assigned", LotAssigned, fields, "lot"))


async def submit_bid(
    folder: HubFolder,
    log: EventLog,
    views: ProjectionRunner,
    cluster: str,
    lots: list[str],
    amount: float,
    currency: str = "GBP",
    lead: str | None = None,
    *,
    staff: str | None = None,
) -> Appended:
    """Submit the bid of the cluster this hub leads for ``lots`` at ``amount``."""
    t, c = _led(folder, tenders(views), lead, cluster)
    if not lots:
        raise InvalidInput("lot", "give at least one --lot the bid is for")
    _check_lots(t, lots)
    _sought(c, lots, cluster)
    if amount < 0:
        raise InvalidInput("amount", f"--amount {amount} is negative; give the value as 0 or more")
    fields = {
        "lead": c["lead"],
        "cluster": cluster,
        "lots": lots,
        "value": {"amount": amount, "currency": currency.upper()},
        "staff": staff,
    }
    return await log.append("bid.submitted", _body("bid.submitted", BidSubmitted, fields, "amount"))
