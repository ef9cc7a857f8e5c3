"""Bounded buffer for verified records that arrived ahead of a gap (DESIGN §4).

Pure data structure: the log owns one and drains it when the gap is filled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hubnode.events.verify import Verified

AddResult = Literal["added", "duplicate", "full"]


@dataclass(frozen=True)
class PendingLimits:
    max_records: int = 20_000
    max_bytes: int = 64 * 1024 * 1024
    max_per_hub: int = 5_000


class PendingBuffer:
    """Records per hub keyed by seq, bounded in count and bytes, overall and per hub."""

    def __init__(self, limits: PendingLimits | None = None) -> None:
        self.limits = limits or PendingLimits()
        self._by_hub: dict[bytes, dict[int, Verified]] = {}
        self._count = 0
        self._bytes = 0

    def __len__(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, hub: bytes, seq: int) -> Verified | None:
        return self._by_hub.get(hub, {}).get(seq)

    def add(self, record: Verified) -> AddResult:
        """Keep ``record`` unless it is held already or a bound would be passed.

        The caller checks :meth:`get` first: a *different* record at the same seq is a fork.
        """
        env = record.envelope
        held = self._by_hub.setdefault(env.hub, {})
        if env.seq in held:
            return "duplicate"
        lim = self.limits
        if (
            self._count >= lim.max_records
            or self._bytes + len(record.raw) > lim.max_bytes
            or len(held) >= lim.max_per_hub
        ):
            if not held:
                del self._by_hub[env.hub]
            return "full"
        held[env.seq] = record
        self._count += 1
        self._bytes += len(record.raw)
        return "added"

    def pop(self, hub: bytes, seq: int) -> Verified | None:
        held = self._by_hub.get(hub)
        if not held or seq not in held:
            return None
        record = held.pop(seq)
        if not held:
            del self._by_hub[hub]
        self._count -= 1
        self._bytes -= len(record.raw)
        return record

    def put_back(self, records: list[Verified]) -> None:
        """Undo pops after a failed transaction (bounds were checked when first added)."""
        for record in records:
            env = record.envelope
            held = self._by_hub.setdefault(env.hub, {})
            if env.seq not in held:
                held[env.seq] = record
                self._count += 1
                self._bytes += len(record.raw)

    def drop_hub(self, hub: bytes) -> int:
        held = self._by_hub.pop(hub, {})
        self._count -= len(held)
        self._bytes -= sum(len(r.raw) for r in held.values())
        return len(held)

    def waiting(self) -> dict[bytes, list[int]]:
        """Seqs held per hub, sorted: what the sync layer need not fetch again."""
        return {hub: sorted(held) for hub, held in self._by_hub.items()}
