"""What the console's pages read besides the pathway: the hubs of the network with their
names, heads, forks and lag, the warnings the "today" page leads with, and one service of
the directory.

Lag, peers and the hubs over this hub's storage budget come from ``run/status.json``,
which the running node rewrites about once a second (:func:`hubnode.node.read_status`);
heads and forks from the log itself. A peer's lag is what *this* hub lacks of what that
peer announced; heads announcements are not signed, so the lag is a claim, one past
:data:`~hubnode.protocol.sync.LAG_CAP` is flagged rather than counted, and only a signed
record makes a hub "seen running" (docs/console.md, "The network page and the warnings").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from hubnode.commands.directory import Listing
from hubnode.events.ids import hub_display, parse_hub
from hubnode.projections.directory import decode_service
from hubnode.projections.runner import ProjectionRunner
from hubnode.protocol.sync import LAG_CAP, bounded_lag, events_lacking
from hubnode.store.intake import alert_since, day_of, megabytes
from hubnode.store.log import EventLog

STALE_AFTER: Final = 10.0
"""Seconds after which the node's status file means the node is not running."""
LAG_WARNING: Final = 50
"""Records this hub may lack of what a peer holds before "today" warns about it."""
SILENT_WARNING: Final = 10 * 60.0
"""Seconds without hearing from a peer before "today" warns about it."""


@dataclass(frozen=True)
class Hub:
    id: bytes
    name: str
    roles: tuple[str, ...]
    area: str
    admitted_by: tuple[bytes, ...] = ()
    head: int = 0
    forked_at: int | None = None
    lag: int | None = None
    """Records this hub lacks of what this peer announced (None: not heard from)."""
    lag_absurd: bool = False
    """The peer also claimed a hub more than ``LAG_CAP`` records beyond this node: not
    believed, not counted in ``lag``."""
    last_record: float | None = None
    """When a record signed by this hub last reached this node (seconds): seen running."""
    last_heard: float | None = None
    """When a heads message in this hub's name last arrived (seconds; unsigned)."""

    @property
    def shown(self) -> str:
        return hub_display(self.id)

    @property
    def lacking(self) -> str:
        """What this hub lacks of this peer's announced events, for the network page."""
        return "-" if self.lag is None else events_lacking(self.lag, self.lag_absurd)


def lag_sentence(name: str, lag: int, absurd: bool = False) -> str:
    """What this hub lacks of the events hub ``name`` announced, said the right way round.

    An implausible claim is said to be one, without its number: heads are not signed.
    """
    if absurd:
        return (
            f"{name}'s announced head is implausible: taken at its word, this hub would "
            f"lack more than {LAG_CAP:,} events of one hub. Announcements are not signed, so "
            "any client on the network can send one in a hub's name; the number is not "
            "believed. If this stays, tell whoever looks after the network's servers."
        )
    return f"This hub lacks {events_lacking(lag)} that {name} holds."


def hubs(views: ProjectionRunner) -> dict[bytes, Hub]:
    """Every registered hub by id, from the network view."""
    rows = views.query("network", "SELECT hub, name, roles, area FROM {hubs}")
    admissions: dict[bytes, list[bytes]] = {}
    for admitter, admitted in views.query("network", "SELECT admitter, admitted FROM {admissions}"):
        try:
            admissions.setdefault(parse_hub(admitted), []).append(admitter)
        except ValueError:  # a malformed admission names no hub we can show
            continue
    return {
        hub: Hub(hub, name, tuple(json.loads(roles)), area, tuple(sorted(admissions.get(hub, []))))
        for hub, name, roles, area in rows
    }


def name_of(known: dict[bytes, Hub], hub: bytes | None) -> str:
    """A hub's name for people (its short id while its registration has not arrived)."""
    if hub is None:
        return "no hub yet"
    found = known.get(hub)
    return found.name if found is not None else hub_display(hub)[:18] + "…"


def service(views: ProjectionRunner, publisher: bytes, service_id: str) -> Listing | None:
    """One live service of the directory with its latest capacity report."""
    rows = views.query(
        "directory",
        "SELECT d.data, k.status, k.as_of, k.note FROM {services} s "
        "JOIN {details} d ON d.publisher = s.publisher AND d.service = s.service "
        "LEFT JOIN {capacity} k ON k.publisher = s.publisher AND k.service = s.service "
        "WHERE s.publisher = ? AND s.service = ? AND s.withdrawn = 0",
        (publisher, service_id),
    )
    if not rows:
        return None
    data, status, as_of, note = rows[0]
    capacity = None if status is None else {"status": status, "as_of": as_of, "note": note}
    return Listing(publisher=publisher, service=decode_service(data), capacity=capacity)


@dataclass(frozen=True)
class OverBudget:
    """A hub whose records took more than this hub's storage budget on one day."""

    hub: bytes
    day: str
    bytes: int
    budget: int


@dataclass(frozen=True)
class NodeState:
    running: bool
    connected: bool
    updated_at: float | None
    over_budget: tuple[OverBudget, ...] = ()
    failing: tuple[str, ...] = ()
    """What the running node reports it cannot do (its status file's ``failing``)."""


def _over_budget(entries: Any) -> tuple[OverBudget, ...]:
    """The ``over_budget`` entries of the status file; any that do not parse are skipped."""
    found = []
    for entry in entries if isinstance(entries, list) else ():
        try:
            found.append(
                OverBudget(
                    parse_hub(entry["hub"]),
                    str(entry["day"]),
                    int(entry["bytes"]),
                    int(entry["budget"]),
                )
            )
        except (KeyError, TypeError, ValueError):
            continue
    return tuple(found)


def node_state(status: dict[str, Any] | None, now: float) -> NodeState:
    if not status:
        return NodeState(False, False, None)
    updated = status.get("updated_at")
    fresh = (
        bool(status.get("running"))
        and isinstance(updated, int | float)
        and now - updated < STALE_AFTER
    )
    nats = status.get("nats") or {}
    over = _over_budget(status.get("over_budget"))  # kept when the node stops: still true
    failing = status.get("failing") if fresh else None
    reasons = tuple(str(v) for v in failing.values()) if isinstance(failing, dict) else ()
    return NodeState(fresh, fresh and bool(nats.get("connected")), updated, over, reasons)


async def network(
    views: ProjectionRunner, log: EventLog, status: dict[str, Any] | None, now: float
) -> list[Hub]:
    """Every hub with its head here, fork and (while the node runs) lag, by name."""
    known = hubs(views)
    heads = await log.heads()
    forked = await log.forked_hubs()
    running = node_state(status, now).running
    peers: dict[str, Any] = (status or {}).get("peers", {}) if running else {}
    found = []
    for hub in set(known) | set(heads) | set(forked):
        base = known.get(hub) or Hub(hub, name_of(known, hub), (), "")
        peer = peers.get(hub_display(hub)) or {}
        head = heads.get(hub)
        lag, absurd = bounded_lag(peer.get("lag"), peer.get("lag_claim_absurd"))
        found.append(
            Hub(
                hub,
                base.name,
                base.roles,
                base.area,
                base.admitted_by,
                head.seq if head is not None else 0,
                forked.get(hub),
                lag,
                absurd,
                _moment(peer.get("last_record")),
                _moment(peer.get("last_heard")),
            )
        )
    return sorted(found, key=lambda h: (h.name.casefold(), h.id))


def _moment(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def warnings(me: bytes, found: list[Hub], state: NodeState, now: float) -> list[str]:
    """Plain-English warnings for the top of "today": node down, forks, this hub lacking
    many events a peer announced (or an implausible announcement), peers silent."""
    said = []
    if not state.running:
        said.append(
            "This hub's node is not running: nothing is sent to other hubs or received "
            "from them. Ask whoever looks after the server to start it (hubnode run)."
        )
    elif state.failing:
        said.append(
            f"This hub's node is running but cannot do all its work: {'; '.join(state.failing)}. "
            "Ask whoever looks after the server to check it (hubnode status)."
        )
    elif not state.connected:
        said.append("This hub's node cannot reach the network right now; it keeps trying.")
    for hub in found:
        if hub.forked_at is not None:
            who = "This hub" if hub.id == me else hub.name
            said.append(
                f"{who} signed two different events at number {hub.forked_at} (a fork): its "
                "later events are not accepted. Tell the network's coordinators."
            )
        heard = max((t for t in (hub.last_heard, hub.last_record) if t is not None), default=None)
        if hub.id == me or not state.running or heard is None:
            continue
        if hub.lag is not None and (hub.lag_absurd or hub.lag >= LAG_WARNING):
            said.append(lag_sentence(hub.name, hub.lag, hub.lag_absurd))
        elif now - heard >= SILENT_WARNING:
            minutes = int((now - heard) // 60)
            said.append(f"Nothing heard from {hub.name} for {minutes} minutes.")
    said += budget_warnings(me, found, state, now)
    return said


def budget_warnings(me: bytes, found: list[Hub], state: NodeState, now: float) -> list[str]:
    """One warning per hub that sent more than the storage budget today or yesterday."""
    today, since = day_of(int(now * 1000)), alert_since(int(now * 1000))
    known = {hub.id: hub for hub in found}
    return [
        f"{name_of(known, row.hub)} sent {megabytes(row.bytes)} "
        f"{'today' if row.day == today else 'yesterday'}, over this hub's storage budget of "
        f"{megabytes(row.budget)} a day. Nothing was dropped: ask whoever looks after the "
        "server to check with that hub's operator."
        for row in state.over_budget
        if row.hub != me and since <= row.day <= today
    ]
