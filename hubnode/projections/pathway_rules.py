"""The pathway rules as pure functions: which referral events count, and what they make.

:mod:`hubnode.projections.pathway` stores every claim and status change of a referral and
calls :func:`derive_lifecycle` on the whole set each time one arrives; the result depends
only on the set, never on the order the events arrived in (docs/pathway.md, "Claims and
concurrent moves"). Tests drive these functions directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, cast

from hubnode.errors import IllegalTransition
from hubnode.events.ids import hub_display, parse_hub, short_id
from hubnode.events.lifecycle import (
    CLAIM,
    RECEIVING,
    REFERRING,
    TRANSITIONS,
    Party,
    Status,
    check_transition,
)
from hubnode.events.pathway import ReferralRequested

APPLIED: Final = "applied"
IGNORED: Final = "ignored"
WAITING: Final = "waiting"
"""States of a stored referral event: it counts, it was ignored, or its parent (or its
referral) has not arrived yet."""


def receiving_hub(body: ReferralRequested) -> bytes | None:
    """The hub a referral is made to: ``to_hub``, the service's hub, or None (open)."""
    if body.to_hub is not None:
        return parse_hub(body.to_hub)
    if body.service is not None:
        return parse_hub(body.service.hub)
    return None


# -- the lifecycle walk (pure) ----------------------------------------------------------


@dataclass(frozen=True)
class Move:
    """A claim or status change of one referral, as stored."""

    id: bytes
    parent: bytes
    hub: bytes
    seq: int
    ts: int
    claim: int
    status: str
    reason: str


@dataclass
class Lifecycle:
    """A referral's state derived from its moves, and which moves count."""

    status: Status
    receiver: bytes | None
    head: bytes
    head_ts: int
    responded_ts: int | None = None
    applied: list[bytes] = field(default_factory=list)
    ignored: dict[bytes, str] = field(default_factory=dict)

    def state(self, move_id: bytes) -> str:
        if move_id in self.ignored:
            return IGNORED
        return APPLIED if move_id in self.applied else WAITING


def derive_lifecycle(
    root: bytes,
    root_ts: int,
    referrer: bytes,
    target: bytes | None,
    snapshot: frozenset[bytes],
    moves: Sequence[Move],
) -> Lifecycle:
    """Walk the tree of ``moves`` from ``root``, following at each step the valid child
    with the lowest event id; everything else reachable is ignored, the rest waits."""
    children: dict[bytes, list[Move]] = {}
    for m in moves:
        children.setdefault(m.parent, []).append(m)
    for kids in children.values():
        kids.sort(key=lambda m: m.id)
    life = Lifecycle("requested", target, root, root_ts)
    current = root
    while True:
        chosen: Move | None = None
        for m in children.get(current, ()):
            why = judge(m, life.status, life.receiver, referrer, snapshot)
            if why is not None:
                life.ignored[m.id] = why
            elif chosen is None:
                chosen = m
            else:
                life.ignored[m.id] = (
                    f"another valid move from the same step won: event {short_id(chosen.id)} "
                    "(the lower event id wins)"
                )
        if chosen is None:
            break
        life.applied.append(chosen.id)
        if chosen.claim:
            life.receiver = chosen.hub
        if life.responded_ts is None and party_of(chosen, life.status) == RECEIVING:
            life.responded_ts = chosen.ts
        life.status = cast(Status, chosen.status)  # judged valid above
        life.head, life.head_ts = chosen.id, chosen.ts
        current = chosen.id
    stack = list(life.ignored)
    while stack:
        for m in children.get(stack.pop(), ()):
            life.ignored[m.id] = "follows a move that was ignored"
            stack.append(m.id)
    return life


def party_of(move: Move, current: str) -> Party | None:
    """Which party a (valid) move from ``current`` is made as: claims are receiving."""
    if move.claim:
        return RECEIVING
    return TRANSITIONS[cast(Status, current)].get(cast(Status, move.status))


def judge(
    move: Move,
    current: Status,
    receiver: bytes | None,
    referrer: bytes,
    snapshot: frozenset[bytes],
) -> str | None:
    """Why ``move`` may not follow a referral in ``current``, or None if it may."""
    who = hub_display(move.hub)
    if move.claim:
        if receiver is not None:
            return f"not an open referral: its receiving hub is {hub_display(receiver)}"
        if current != CLAIM[0]:
            return f"only a requested referral can be claimed; this one is {current}"
        if move.hub == referrer:
            return "the referring hub cannot claim its own referral"
        if move.hub not in snapshot:
            return f"the person's consent when the referral was made does not name {who}"
        return None
    roles: list[Party] = []
    if move.hub == referrer:
        roles.append(REFERRING)
    if receiver is not None and move.hub == receiver:
        roles.append(RECEIVING)
    if not roles:
        return f"{who} is neither the referring nor the receiving hub"
    to = cast(Status, move.status)  # an unknown status cannot decode: the body is typed
    needed = TRANSITIONS[current].get(to)
    party = needed if needed in roles else roles[0]
    try:
        check_transition(current, to, party, move.reason)
    except IllegalTransition as e:
        return str(e)
    return None


def judge_involved(hub: bytes, referrer: bytes, snapshot: frozenset[bytes]) -> str | None:
    """Why ``hub`` may not record a follow-up or open advocacy on a referral, or None."""
    if hub == referrer or hub in snapshot:
        return None
    return (
        f"{hub_display(hub)} is neither the referring hub nor named in the person's consent "
        "when the referral was made"
    )
