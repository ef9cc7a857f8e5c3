"""The event envelope, wire record and event id: wire format v1 (DESIGN §3).

These bytes are frozen once released: never reorder fields, never re-encode a record
that will be hashed or verified again.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Final

import msgspec

from hubnode.crypto import SIGNATURE_SIZE, SigningKey
from hubnode.errors import InvalidEvent, Reason

FORMAT_VERSION: Final = 1
SIGNING_CONTEXT: Final = b"hubnode/v1/event\x00"
MAX_RECORD_SIZE: Final = 256 * 1024
"""Default upper bound on one wire record, in bytes (configurable per log)."""

Bytes32 = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
Signature = Annotated[bytes, msgspec.Meta(min_length=SIGNATURE_SIZE, max_length=SIGNATURE_SIZE)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
Millis = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
# \Z, not $: msgspec searches with Python's re, where $ also matches before a trailing "\n".
Net = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*\Z")]
Kind = Annotated[
    str,
    msgspec.Meta(min_length=3, max_length=64, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+\Z"),
]


class Envelope(msgspec.Struct, frozen=True, array_like=True):
    """The nine signed fields, encoded as a msgpack array in this order."""

    v: int
    net: Net
    hub: Bytes32
    key: Bytes32
    seq: Seq
    prev: Bytes32 | None
    ts: Millis
    kind: Kind
    body: bytes


class WireRecord(msgspec.Struct, frozen=True, array_like=True):
    """``[envelope_bytes, signature]``: what is stored, forwarded and hashed."""

    envelope: bytes
    signature: Signature


_encoder: Final = msgspec.msgpack.Encoder()
_envelope_decoder: Final = msgspec.msgpack.Decoder(Envelope)
_record_decoder: Final = msgspec.msgpack.Decoder(WireRecord)


def signed_bytes(envelope_bytes: bytes) -> bytes:
    """The exact bytes the Ed25519 signature covers."""
    return SIGNING_CONTEXT + envelope_bytes


def event_id(raw: bytes) -> bytes:
    """SHA-256 of the wire record bytes."""
    return hashlib.sha256(raw).digest()


def encode_envelope(envelope: Envelope) -> bytes:
    return _encoder.encode(envelope)


def seal(envelope: Envelope, key: SigningKey) -> bytes:
    """Sign ``envelope`` and return the wire record bytes."""
    env = _encoder.encode(envelope)
    return _encoder.encode(WireRecord(env, key.sign(signed_bytes(env))))


def decode_stored(raw: bytes) -> Envelope:
    """The envelope of a record this hub checked (with :func:`decode_record`) when it stored
    it: decoded again without repeating the canonical re-encoding checks."""
    return _envelope_decoder.decode(_record_decoder.decode(raw).envelope)


def decode_record(raw: bytes, max_size: int = MAX_RECORD_SIZE) -> tuple[WireRecord, Envelope]:
    """Size, outer and envelope decoding with canonical checks; no signature check yet.

    Raises :class:`InvalidEvent` naming the first check that failed.
    """
    if len(raw) > max_size:
        raise InvalidEvent(
            Reason.TOO_LARGE, f"record is {len(raw)} bytes, the limit is {max_size} bytes"
        )
    # msgspec raises UnicodeDecodeError for bad UTF-8 in a str and RecursionError for deep
    # nesting (a 2 KB record can hold 2000 nested arrays): both are bad input, not a crash.
    try:
        record = _record_decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError) as e:
        raise InvalidEvent(Reason.MALFORMED_RECORD, f"not [envelope, signature]: {e}") from None
    if _encoder.encode(record) != raw:
        raise InvalidEvent(Reason.NON_CANONICAL, "wire record is not canonically encoded")
    try:
        envelope = _envelope_decoder.decode(record.envelope)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:
        raise InvalidEvent(Reason.MALFORMED_ENVELOPE, str(e)) from None
    if _encoder.encode(envelope) != record.envelope:
        raise InvalidEvent(Reason.NON_CANONICAL, "envelope is not canonically encoded")
    if envelope.v != FORMAT_VERSION:
        raise InvalidEvent(
            Reason.UNSUPPORTED_VERSION,
            f"format version {envelope.v}; this hubnode reads version {FORMAT_VERSION}",
        )
    return record, envelope
