"""Helpers for tests, benchmarks and plugin authors: signed records without a log.

:class:`ChainWriter` signs a hub's events in memory, exactly as :class:`EventLog.append`
would, so tests can build histories of many hubs (and forks) and feed them to
``EventLog.ingest`` or an auditor.
"""

from __future__ import annotations

from hubnode.crypto import SigningKey
from hubnode.events.envelope import FORMAT_VERSION, Envelope, event_id, seal
from hubnode.events.kinds import KINDS, Body, KindRegistry


class ChainWriter:
    """Signs one hub's chain in memory: seq 1, 2, … each linking to the previous id."""

    def __init__(
        self,
        net: str,
        key: SigningKey | None = None,
        *,
        registry: KindRegistry = KINDS,
        ts: int = 1_700_000_000_000,
    ) -> None:
        self.net = net
        self.key = key or SigningKey.generate()
        self.hub = self.key.public
        self.registry = registry
        self.seq = 0
        self.head: bytes | None = None
        self.ts = ts

    def envelope(self, kind: str, body: Body | bytes, *, seq: int | None = None) -> Envelope:
        """The next envelope (or one at ``seq``, linking to the current head) — unsigned."""
        data = body if isinstance(body, bytes) else self.registry.encode_body(kind, body)
        return Envelope(
            FORMAT_VERSION,
            self.net,
            self.hub,
            self.hub,
            self.seq + 1 if seq is None else seq,
            self.head,
            self.ts,
            kind,
            data,
        )

    def sign(self, envelope: Envelope) -> bytes:
        return seal(envelope, self.key)

    def next(self, kind: str, body: Body | bytes) -> bytes:
        """Sign the next event and advance the chain; returns the wire record."""
        raw = self.sign(self.envelope(kind, body))
        self.seq += 1
        self.head = event_id(raw)
        self.ts += 1
        return raw

    def fork(self) -> ChainWriter:
        """A second writer with the same key and head: what a cloned key would sign."""
        twin = ChainWriter(self.net, self.key, registry=self.registry, ts=self.ts + 7)
        twin.seq, twin.head = self.seq, self.head
        return twin
