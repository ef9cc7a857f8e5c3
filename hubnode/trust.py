"""Whom a node accepts events from (DESIGN §5). Pure: no I/O.

The trust set is this hub, the hubs added locally (``hubnode peers add``), and every hub
admitted by ``hub.admitted`` events from at least ``threshold`` distinct hubs that are
themselves trusted — a fixpoint, so admissions chain (A trusts B locally, B admits C,
C admits D). Admissions only count once their author is trusted, and the set is the same
whatever order the events arrived in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from hubnode.crypto import weak_key_reason
from hubnode.events.ids import hub_display, parse_hub
from hubnode.events.network import HubAdmitted

if TYPE_CHECKING:
    from hubnode.store.log import EventLog


def _trustable(hub: bytes) -> bytes:
    """``hub``, unless it is a key no hub can have (ValueError): trusting a small-order key
    would let anyone write as it, so no way into the set may take one."""
    weak = weak_key_reason(hub)
    if weak is not None:
        raise ValueError(f"{hub_display(hub)} cannot be trusted: {weak}")
    return hub


class TrustSet:
    """The hubs a node accepts events from: this hub, local ones and admitted ones.

    Every way in refuses a key :func:`~hubnode.crypto.weak_key_reason` refuses, with
    ValueError (config and bodies refuse them first, so this is the last line).
    """

    def __init__(self, own: bytes, local: Iterable[bytes], threshold: int = 1) -> None:
        if threshold < 1:
            raise ValueError(f"admit_threshold must be at least 1, got {threshold}")
        self.own = _trustable(own)
        self.local = frozenset(map(_trustable, local)) | {own}
        self.threshold = threshold
        self._admitted_by: dict[bytes, set[bytes]] = {}
        self._trusted = set(self.local)

    def __contains__(self, hub: object) -> bool:
        return hub in self._trusted

    def contains(self, hub: bytes) -> bool:
        """Thread-safe membership test, usable as the log's ``trusted`` check."""
        return hub in self._trusted

    def __len__(self) -> int:
        return len(self._trusted)

    @property
    def members(self) -> frozenset[bytes]:
        return frozenset(self._trusted)

    def add_local(self, hub: bytes) -> None:
        self.local = self.local | {_trustable(hub)}
        self._recompute()

    def admit(self, admitter: bytes, admitted: bytes) -> bool:
        """Record a ``hub.admitted`` event; True if the trust set grew."""
        self._admitted_by.setdefault(_trustable(admitted), set()).add(admitter)
        before = len(self._trusted)
        self._recompute()
        return len(self._trusted) > before

    def admitters(self, hub: bytes) -> frozenset[bytes]:
        """Every hub that signed an admission of ``hub`` (trusted or not yet)."""
        return frozenset(self._admitted_by.get(hub, ()))

    def known(self) -> frozenset[bytes]:
        """Every hub the set has heard of: trusted, vouched for, or vouching."""
        vouching = {a for by in self._admitted_by.values() for a in by}
        return frozenset(self._trusted | set(self._admitted_by) | vouching)

    def why(self, hub: bytes) -> str:
        """How ``hub`` is (not yet) trusted, for people.

        ``this hub``, ``local``, ``admitted``, ``vouched 1 of 2`` (trusted admitters so far
        against the threshold) or ``not trusted``.
        """
        if hub == self.own:
            return "this hub"
        if hub in self.local:
            return "local"
        if hub in self._trusted:
            return "admitted"
        vouches = len(self._admitted_by.get(hub, set()) & self._trusted)
        if vouches:
            return f"vouched {vouches} of {self.threshold}"
        return "not trusted"

    def _recompute(self) -> None:
        trusted = set(self.local)
        changed = True
        while changed:
            changed = False
            for hub, by in self._admitted_by.items():
                if hub not in trusted and len(by & trusted) >= self.threshold:
                    trusted.add(hub)
                    changed = True
        # Assign a new set rather than mutate: readers on other threads see old or new.
        self._trusted = trusted


async def fold_admissions(trust: TrustSet, log: EventLog, after_pos: int = 0) -> tuple[bool, int]:
    """Apply the log's ``hub.admitted`` events after ``after_pos``; (grew, last pos read)."""
    grew = False
    # Read up to here at least: the next call starts past the events of other kinds too,
    # instead of scanning the whole log again each time (`kind` has no index).
    last = await log.last_pos()
    while True:
        events = await log.events(after_pos=after_pos, kind="hub.admitted", limit=1000)
        if not events:
            return grew, max(after_pos, last)
        for ev in events:
            if isinstance(ev.body, HubAdmitted):
                grew |= trust.admit(ev.hub, parse_hub(ev.body.hub))
        after_pos = events[-1].pos
