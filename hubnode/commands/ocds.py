"""OCDS 1.1 from the tenders view: releases (with the lots extension), release and record
packages, and compiled releases (``hubnode tender export``)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Final

LOTS_EXTENSION: Final = (
    "https://raw.githubusercontent.com/open-contracting-extensions/ocds_lots_extension/"
    "master/extension.json"
)


def _datetime(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ocds_release(t: dict[str, Any]) -> dict[str, Any]:
    """One OCDS 1.1 release (with the lots extension) for a tender of the view."""
    buyer = {"id": f"buyer:{t['buyer']}", "name": t["buyer"]}
    parties: dict[str, dict[str, Any]] = {buyer["id"]: {**buyer, "roles": ["buyer"]}}
    tender: dict[str, Any] = {
        "id": t["ocid"],
        "title": t["title"],
        "status": t["status"],
        "value": t["value"],
        "tenderPeriod": {
            "startDate": f"{t['period']['start']}T00:00:00Z",
            "endDate": f"{t['period']['end']}T23:59:59Z",
        },
        "procuringEntity": buyer,
    }
    if t["description"]:
        tender["description"] = t["description"]
    if t["documents"]:
        tender["documents"] = [
            {"id": str(i), "title": d["title"], "url": d["url"]}
            for i, d in enumerate(t["documents"], 1)
        ]
    if t["categories"]:
        tender["items"] = [
            {
                "id": f"category-{i}",
                "description": cat,
                "classification": {"scheme": "hubnode-category", "id": cat},
            }
            for i, cat in enumerate(t["categories"], 1)
        ]
    if t["lots"]:
        tender["lots"] = [
            {
                "id": lot["id"],
                "title": lot["title"],
                **({"value": lot["value"]} if lot["value"] else {}),
            }
            for lot in t["lots"]
        ]
    awards = []
    for a in t["awards"]:
        if a["supplier"] is not None:
            supplier = {"id": f"supplier:{a['supplier']}", "name": a["supplier"]}
        else:
            supplier = {
                "id": f"{a['lead']}/{a['cluster']}",
                "name": f"cluster {a['cluster']} led by {a['lead']}",
            }
        parties.setdefault(supplier["id"], {**supplier, "roles": ["supplier"]})
        award: dict[str, Any] = {
            "id": f"{t['ocid']}-award-{a['seq']}",
            "status": "active",
            "value": a["value"],
            "suppliers": [supplier],
        }
        if a["awarded_on"]:
            award["date"] = f"{a['awarded_on']}T00:00:00Z"
        if a["lots"]:
            award["relatedLots"] = a["lots"]
        awards.append(award)
    release: dict[str, Any] = {
        "ocid": t["ocid"],
        "id": f"{t['ocid']}-{t['updated_seq']}-{len(t['awards'])}",
        "date": _datetime(max([t["updated_ts"], *(a["ts"] for a in t["awards"])])),
        "tag": ["tender", "award"] if awards else ["tender"],
        "initiationType": "tender",
        "parties": list(parties.values()),
        "buyer": buyer,
        "tender": tender,
    }
    if awards:
        release["awards"] = awards
    return release


def ocds_package(tenders: list[dict[str, Any]], publisher: str, uri: str) -> dict[str, Any]:
    """An OCDS 1.1 release package: one release per tender."""
    return {**_package(publisher, uri), "releases": [ocds_release(t) for t in tenders]}


def _package(publisher: str, uri: str) -> dict[str, Any]:
    """The fields every OCDS 1.1 package of this hub starts with."""
    return {
        "uri": uri,
        "version": "1.1",
        "publishedDate": _datetime(time.time_ns() // 1_000_000),
        "publisher": {"name": publisher},
        "extensions": [LOTS_EXTENSION],
    }


def _merge(old: Any, new: Any) -> Any:
    """OCDS 1.1 merge of one value over another, for the fields hubnode emits.

    Objects merge field by field (a null removes the field); arrays whose items are all objects
    with an ``id`` merge item by item on that ``id`` (new ids append); any other value, including
    other arrays, replaces the earlier one. (hubnode emits none of the ``wholeListMerge`` fields.)
    """
    if isinstance(new, dict):
        merged = dict(old) if isinstance(old, dict) else {}
        for key, value in new.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = _merge(merged.get(key), value)
        return merged
    if isinstance(new, list) and new and all(isinstance(x, dict) and "id" in x for x in new):
        by_id: dict[str, Any] = {}
        if isinstance(old, list) and all(isinstance(x, dict) and "id" in x for x in old):
            by_id = {str(x["id"]): x for x in old}
        for item in new:
            by_id[str(item["id"])] = _merge(by_id.get(str(item["id"])), item)
        return list(by_id.values())
    if isinstance(new, list):
        return [_merge(None, x) for x in new]
    return new


def _by_date(releases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Releases oldest first (dates are all UTC ``...Z``, so text order is time order)."""
    return sorted(releases, key=lambda r: (r["date"], r["id"]))


def ocds_compiled(releases: list[dict[str, Any]]) -> dict[str, Any]:
    """The compiled release of one ocid: its releases merged in date order (OCDS 1.1 rules).

    ``id``, ``date`` and ``tag`` are omitted when merging; the compiled release takes the latest
    date, the id ``<ocid>-<date>`` and the tag ``compiled``.
    """
    ordered = _by_date(releases)
    merged: dict[str, Any] = {}
    for release in ordered:
        merged = _merge(
            merged, {k: v for k, v in release.items() if k not in ("id", "date", "tag")}
        )
    ocid, when = ordered[-1]["ocid"], ordered[-1]["date"]
    return {"ocid": ocid, "id": f"{ocid}-{when}", "date": when, "tag": ["compiled"], **merged}


def ocds_record_package(tenders: list[dict[str, Any]], publisher: str, uri: str) -> dict[str, Any]:
    """An OCDS 1.1 record package: per ocid, its releases (embedded, oldest first) and the
    compiled release."""
    by_ocid: dict[str, list[dict[str, Any]]] = {}
    for release in (ocds_release(t) for t in tenders):
        by_ocid.setdefault(release["ocid"], []).append(release)
    records = [
        {
            "ocid": ocid,
            "releases": _by_date(releases),
            "compiledRelease": ocds_compiled(releases),
        }
        for ocid, releases in by_ocid.items()
    ]
    return {**_package(publisher, uri), "records": records}
