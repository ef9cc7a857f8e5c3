"""Messages on the NATS subjects of network ``NET`` (DESIGN §6; docs/protocol.md).

| subject                           | payload                                            |
|-----------------------------------|----------------------------------------------------|
| ``hubnode.NET.ev``                | msgpack array of wire records (one or more)        |
| ``hubnode.NET.heads``             | ``[sender_hub, {hub: [seq, id]}]``                 |
| ``hubnode.NET.sync.<hub display>``| request ``[hub, start, limit, max_bytes, peer]``;  |
|                                   | reply: msgpack array of wire records               |
| ``hubnode.NET.forks``             | ``[raw_a, raw_b]``: two records, one (hub, seq)    |

Decoding is strict and bounded: anything else is garbage, counted and dropped.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from hubnode.events.envelope import Bytes32, Seq
from hubnode.events.ids import hub_display

HeadPair = tuple[Seq, Bytes32]
"""An announced head: a seq no event could carry (past 2^63-1) makes the message garbage."""


class HeadsMessage(msgspec.Struct, frozen=True, array_like=True):
    """A node's frontier: the (seq, id) it holds for every hub, and who it is."""

    sender: Bytes32
    heads: dict[Bytes32, HeadPair]


class SyncRequest(msgspec.Struct, frozen=True, array_like=True):
    """Records of ``hub`` from ``start``: at most ``limit`` records and ``max_bytes``.

    ``peer`` names the holder that should answer (chosen from its heads); others stay
    silent so one request costs one reply. ``None`` lets every holder answer.
    """

    hub: Bytes32
    start: Annotated[int, msgspec.Meta(ge=1)]
    limit: Annotated[int, msgspec.Meta(ge=1, le=10_000)]
    max_bytes: Annotated[int, msgspec.Meta(ge=1)]
    peer: Bytes32 | None = None


class ForkMessage(msgspec.Struct, frozen=True, array_like=True):
    raw_a: bytes
    raw_b: bytes


Records = list[bytes]

encoder: Final = msgspec.msgpack.Encoder()
heads_decoder: Final = msgspec.msgpack.Decoder(HeadsMessage)
request_decoder: Final = msgspec.msgpack.Decoder(SyncRequest)
records_decoder: Final = msgspec.msgpack.Decoder(Records)
fork_decoder: Final = msgspec.msgpack.Decoder(ForkMessage)

RECORDS_OVERHEAD: Final = 5
"""Bytes of a msgpack array header (array32)."""
PER_RECORD_OVERHEAD: Final = 5
"""Bytes of a msgpack bin header (bin32) around one record."""


def subject(net: str, name: str) -> str:
    return f"hubnode.{net}.{name}"


def sync_subject(net: str, hub: bytes) -> str:
    """``hubnode.NET.sync.<hub display id>`` (the ``:`` is legal in a NATS subject token)."""
    return f"hubnode.{net}.sync.{hub_display(hub)}"


def pack_records(records: list[bytes], max_payload: int) -> list[bytes]:
    """Encode ``records`` as one or more payloads, each within ``max_payload`` bytes.

    A record that alone exceeds ``max_payload`` is skipped: no server would carry it.
    """
    payloads: list[bytes] = []
    batch: list[bytes] = []
    size = RECORDS_OVERHEAD
    for raw in records:
        cost = len(raw) + PER_RECORD_OVERHEAD
        if cost + RECORDS_OVERHEAD > max_payload:
            continue
        if batch and size + cost > max_payload:
            payloads.append(encoder.encode(batch))
            batch, size = [], RECORDS_OVERHEAD
        batch.append(raw)
        size += cost
    if batch:
        payloads.append(encoder.encode(batch))
    return payloads
