"""How much each hub sends: bytes of records stored from it, per day of receipt.

The storage budget (``storage_budget_mb_per_day`` in ``hubnode.toml``) is read from here.
Table ``received_daily`` has one row per (UTC day, hub): the records of that hub this log
stored from elsewhere (``EventLog.ingest``) on that day and the bytes of their wire
records. The store stage adds to it in the transaction that stores the records, so it
counts exactly what ``events`` gained; an event's ``ts`` is its author's claim and is not
used. The budget only reports: nothing is refused or dropped because of it
(docs/operating.md, "A hub is sending too much").
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import NamedTuple

import aiosqlite

from hubnode.events.ids import hub_display


class DailyIntake(NamedTuple):
    """What one hub's records took here on one day."""

    hub: bytes
    day: str
    """``YYYY-MM-DD``, UTC: the day this log stored them."""
    records: int
    bytes: int

    def as_json(self, budget: int) -> dict[str, object]:
        """The entry of ``over_budget`` in ``run/status.json``."""
        return {
            "hub": hub_display(self.hub),
            "day": self.day,
            "records": self.records,
            "bytes": self.bytes,
            "budget": budget,
        }


def day_of(ms: int) -> str:
    """The UTC day of a time in milliseconds since the epoch, as ``YYYY-MM-DD``."""
    return time.strftime("%Y-%m-%d", time.gmtime(ms // 1000))


def alert_since(ms: int) -> str:
    """The first day whose intake is still reported at time ``ms``: yesterday (UTC), so a
    flood late in the day still shows the next morning."""
    return day_of(ms - 86_400_000)


def megabytes(n: int | float) -> str:
    """``n`` bytes for people, in MB (10⁶ bytes) to three significant digits: "52.3 MB"."""
    value = n / 1_000_000
    digits = 0 if value >= 100 or value == 0 else 2 - math.floor(math.log10(value))
    shown = f"{value:,.{digits}f}"
    if "." in shown:
        shown = shown.rstrip("0").rstrip(".")
    return f"{shown} MB"


async def add(db: aiosqlite.Connection, day: str, counts: Mapping[bytes, list[int]]) -> None:
    """Add ``counts`` (hub → [records, bytes]) to ``day``, inside the caller's transaction."""
    await db.executemany(
        "INSERT INTO received_daily (day, hub, records, bytes) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (day, hub) DO UPDATE SET records = records + excluded.records, "
        "bytes = bytes + excluded.bytes",
        [(day, hub, records, size) for hub, (records, size) in counts.items()],
    )


async def received(
    db: aiosqlite.Connection, since: str, *, more_than: int = -1
) -> list[DailyIntake]:
    """Rows from day ``since`` on whose bytes exceed ``more_than``, by day then most bytes."""
    rows = await db.execute_fetchall(
        "SELECT hub, day, records, bytes FROM received_daily WHERE day >= ? AND bytes > ? "
        "ORDER BY day, bytes DESC, hub",
        (since, more_than),
    )
    return [DailyIntake(bytes(hub), day, records, size) for hub, day, records, size in rows]
