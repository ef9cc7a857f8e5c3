"""The wire format v1 (DESIGN §3): envelope layout, signed bytes, ids, canonical bytes only.

Non-canonical inputs are written by hand, byte by byte, with a tiny msgpack writer that
can pick a wider header than needed: msgspec itself always writes the canonical form.
"""

from __future__ import annotations

import hashlib
import struct

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from hubnode import MAX_RECORD_SIZE, Envelope, InvalidEvent, Reason, SigningKey, WireRecord
from hubnode.events.envelope import (
    FORMAT_VERSION,
    SIGNING_CONTEXT,
    decode_record,
    encode_envelope,
    event_id,
    seal,
    signed_bytes,
)

from .conftest import NET

KEY = SigningKey.from_seed(bytes(range(32)))
HUB = KEY.public
TS = 1_700_000_000_000


# -- a hand-written msgpack writer that can choose its header width ----------------------


def mp_uint(n: int, width: int | None = None) -> bytes:
    """Unsigned int; ``width`` None is canonical, else 0 (fixint), 8, 16, 32 or 64 bits."""
    if width is None:
        tops = ((0, 0x7F), (8, 0xFF), (16, 0xFFFF), (32, 0xFFFFFFFF))
        width = next((w for w, top in tops if n <= top), 64)
    if width == 0:
        return bytes([n])
    tag, fmt = {8: (0xCC, ">B"), 16: (0xCD, ">H"), 32: (0xCE, ">I"), 64: (0xCF, ">Q")}[width]
    return bytes([tag]) + struct.pack(fmt, n)


def mp_str(s: str, width: int | None = None) -> bytes:
    data = s.encode()
    if width is None:
        width = 0 if len(data) < 32 else 8 if len(data) < 256 else 16
    if width == 0:
        return bytes([0xA0 | len(data)]) + data
    tag, fmt = {8: (0xD9, ">B"), 16: (0xDA, ">H"), 32: (0xDB, ">I")}[width]
    return bytes([tag]) + struct.pack(fmt, len(data)) + data


def mp_bin(data: bytes, width: int | None = None) -> bytes:
    if width is None:
        width = 8 if len(data) < 256 else 16 if len(data) < 65536 else 32
    tag, fmt = {8: (0xC4, ">B"), 16: (0xC5, ">H"), 32: (0xC6, ">I")}[width]
    return bytes([tag]) + struct.pack(fmt, len(data)) + data


def mp_array(items: list[bytes], width: int | None = None) -> bytes:
    if width is None:
        width = 0 if len(items) < 16 else 16
    if width == 0:
        return bytes([0x90 | len(items)]) + b"".join(items)
    return bytes([0xDC]) + struct.pack(">H", len(items)) + b"".join(items)


NIL = b"\xc0"


def envelope_fields(seq: int = 1, prev: bytes | None = None, body: bytes = b"\x80") -> list[bytes]:
    """The nine envelope fields written canonically by hand, in DESIGN §3 order."""
    return [
        mp_uint(FORMAT_VERSION),
        mp_str(NET),
        mp_bin(HUB),
        mp_bin(HUB),
        mp_uint(seq),
        NIL if prev is None else mp_bin(prev),
        mp_uint(TS),
        mp_str("hub.profile_updated"),
        mp_bin(body),
    ]


def signed_record(envelope_bytes: bytes) -> bytes:
    """A canonical outer record around ``envelope_bytes``, validly signed by KEY."""
    sig = KEY.sign(SIGNING_CONTEXT + envelope_bytes)
    return mp_array([mp_bin(envelope_bytes), mp_bin(sig)])


def reason_of(raw: bytes, **kwargs: int) -> Reason:
    with pytest.raises(InvalidEvent) as info:
        decode_record(raw, **kwargs)
    return info.value.reason


# -- layout, signed bytes and id ----------------------------------------------------------


def test_hand_written_envelope_matches_the_encoder():
    # Anchors the hand writer: if these agree, its deviations below are the only difference.
    env = Envelope(1, NET, HUB, HUB, 1, None, TS, "hub.profile_updated", b"\x80")
    assert encode_envelope(env) == mp_array(envelope_fields())
    assert signed_record(encode_envelope(env)) == seal(env, KEY)


def test_signed_bytes_are_the_context_then_the_envelope():
    assert SIGNING_CONTEXT == b"hubnode/v1/event\x00"
    env = Envelope(1, NET, HUB, HUB, 1, None, TS, "hub.profile_updated", b"\x80")
    env_bytes = encode_envelope(env)
    assert signed_bytes(env_bytes) == b"hubnode/v1/event\x00" + env_bytes
    record = msgspec.msgpack.decode(seal(env, KEY), type=WireRecord)
    # Checked with cryptography directly, not through hubnode.crypto.
    Ed25519PublicKey.from_public_bytes(HUB).verify(
        record.signature, b"hubnode/v1/event\x00" + env_bytes
    )


def test_wire_record_is_an_array_of_envelope_bytes_and_signature():
    env = Envelope(1, NET, HUB, HUB, 1, None, TS, "hub.profile_updated", b"\x80")
    raw = seal(env, KEY)
    envelope_bytes, signature = msgspec.msgpack.decode(raw)
    assert envelope_bytes == encode_envelope(env)
    assert len(signature) == 64
    assert raw == mp_array([mp_bin(envelope_bytes), mp_bin(signature)])


def test_event_id_is_sha256_of_the_wire_record():
    env = Envelope(1, NET, HUB, HUB, 1, None, TS, "hub.profile_updated", b"\x80")
    raw = seal(env, KEY)
    assert event_id(raw) == hashlib.sha256(raw).digest()


def test_signing_is_deterministic_for_a_seeded_key():
    env = Envelope(1, NET, HUB, HUB, 1, None, TS, "hub.profile_updated", b"\x80")
    assert seal(env, KEY) == seal(env, SigningKey.from_seed(bytes(range(32))))


nets = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,63}", fullmatch=True)
kinds = st.from_regex(r"[a-z][a-z0-9_]{0,12}(\.[a-z][a-z0-9_]{0,12}){1,3}", fullmatch=True)
KEYS = [SigningKey.from_seed(bytes([i]) * 32) for i in range(3)]


@st.composite
def envelopes(draw: st.DrawFn) -> tuple[Envelope, SigningKey]:
    key = draw(st.sampled_from(KEYS))
    seq = draw(st.integers(1, 2**63 - 1))
    prev = None if seq == 1 else draw(st.binary(min_size=32, max_size=32))
    env = Envelope(
        v=1,
        net=draw(nets),
        hub=key.public,
        key=key.public,
        seq=seq,
        prev=prev,
        ts=draw(st.integers(0, 2**63 - 1)),
        kind=draw(kinds),
        body=draw(st.binary(max_size=600)),
    )
    return env, key


@settings(max_examples=200, deadline=None)
@given(envelopes())
def test_seal_then_decode_round_trips(case: tuple[Envelope, SigningKey]):
    env, key = case
    raw = seal(env, key)
    record, decoded = decode_record(raw)
    assert decoded == env
    assert record.envelope == encode_envelope(env)
    assert msgspec.msgpack.encode(record) == raw  # the canonical form, byte for byte
    Ed25519PublicKey.from_public_bytes(key.public).verify(
        record.signature, SIGNING_CONTEXT + record.envelope
    )


# -- canonical bytes only -------------------------------------------------------------------

ENV = mp_array(envelope_fields())


def with_field(i: int, encoded: bytes) -> bytes:
    fields = envelope_fields()
    fields[i] = encoded
    return mp_array(fields)


SEQ5 = envelope_fields(seq=5, prev=b"\x01" * 32)
NON_CANONICAL_ENVELOPES = {
    "v as uint8": with_field(0, mp_uint(1, 8)),
    "v as uint16": with_field(0, mp_uint(1, 16)),
    "seq as uint32": with_field(4, mp_uint(1, 32)),
    "seq as uint64": mp_array([*SEQ5[:4], mp_uint(5, 64), *SEQ5[5:]]),
    "ts 0 as uint64": with_field(6, mp_uint(0, 64)),
    "net as str8": with_field(1, mp_str(NET, 8)),
    "kind as str16": with_field(7, mp_str("hub.profile_updated", 16)),
    "hub as bin16": with_field(2, mp_bin(HUB, 16)),
    "key as bin32": with_field(3, mp_bin(HUB, 32)),
    "body bin8 as bin16": with_field(8, mp_bin(b"\x80", 16)),
    "array header as array16": mp_array(envelope_fields(), 16),
    "extra trailing element": mp_array([*envelope_fields(), NIL]),
}


@pytest.mark.parametrize(
    "envelope_bytes", NON_CANONICAL_ENVELOPES.values(), ids=list(NON_CANONICAL_ENVELOPES)
)
def test_non_canonical_envelope_is_rejected_even_when_validly_signed(envelope_bytes: bytes):
    assert reason_of(signed_record(envelope_bytes)) is Reason.NON_CANONICAL
    # The same values, canonically encoded and signed, are accepted: only the encoding differs.
    values = msgspec.msgpack.decode(envelope_bytes)[:9]
    canonical = msgspec.msgpack.encode(values)
    assert canonical != envelope_bytes
    assert decode_record(signed_record(canonical))[0].envelope == canonical


SIG = KEY.sign(SIGNING_CONTEXT + ENV)
NON_CANONICAL_RECORDS = {
    "envelope bin8 as bin16": mp_array([mp_bin(ENV, 16), mp_bin(SIG)]),
    "envelope bin8 as bin32": mp_array([mp_bin(ENV, 32), mp_bin(SIG)]),
    "signature bin8 as bin16": mp_array([mp_bin(ENV), mp_bin(SIG, 16)]),
    "array header as array16": mp_array([mp_bin(ENV), mp_bin(SIG)], 16),
    "extra trailing element": mp_array([mp_bin(ENV), mp_bin(SIG), NIL]),
    "extra trailing bin": mp_array([mp_bin(ENV), mp_bin(SIG), mp_bin(b"")]),
}


@pytest.mark.parametrize("raw", NON_CANONICAL_RECORDS.values(), ids=list(NON_CANONICAL_RECORDS))
def test_non_canonical_wire_record_is_rejected(raw: bytes):
    assert reason_of(raw) is Reason.NON_CANONICAL


def test_the_canonical_forms_of_those_cases_are_accepted():
    record, env = decode_record(mp_array([mp_bin(ENV), mp_bin(SIG)]))
    assert record.envelope == ENV
    assert env.seq == 1


def test_trailing_bytes_after_the_record_are_rejected():
    raw = signed_record(ENV)
    assert reason_of(raw + b"\x00") is Reason.MALFORMED_RECORD


# -- malformed, version and size --------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x90",
        b"\x91\xc4\x00",
        mp_array([mp_bin(ENV)]),
        mp_array([mp_bin(ENV), mp_bin(SIG[:63])]),
        mp_array([mp_bin(ENV), mp_bin(SIG + b"\x00")]),
        mp_array([mp_str("envelope"), mp_bin(SIG)]),
        msgspec.msgpack.encode({"envelope": ENV, "signature": SIG}),
    ],
    ids=[
        "empty",
        "empty array",
        "one field",
        "no signature",
        "short sig",
        "long sig",
        "str",
        "map",
    ],
)
def test_records_that_are_not_envelope_and_signature_are_malformed(raw: bytes):
    assert reason_of(raw) is Reason.MALFORMED_RECORD


@pytest.mark.parametrize(
    ("index", "encoded"),
    [
        (1, mp_str("Not A Net")),
        (1, mp_str("")),
        (2, mp_bin(HUB[:31])),
        (3, mp_bin(HUB + b"\x00")),
        (4, mp_uint(0)),
        (5, mp_bin(b"\x01" * 31)),
        (6, b"\xff"),  # a negative fixint: ts before the epoch
        (6, b"\xcb" + struct.pack(">d", 1.5)),  # a float ts
        (7, mp_str("NoDot")),
        (8, mp_str("body as str")),
    ],
    ids=[
        "bad net",
        "empty net",
        "short hub",
        "long key",
        "seq 0",
        "short prev",
        "ts<0",
        "ts float",
        "bad kind",
        "str body",
    ],
)
def test_envelope_fields_are_strictly_typed(index: int, encoded: bytes):
    assert reason_of(signed_record(with_field(index, encoded))) is Reason.MALFORMED_ENVELOPE


def test_invalid_utf8_in_a_string_field_is_malformed_not_a_crash():
    bad_net = b"\xa4te\xadt"  # a fixstr of 4 bytes that are not UTF-8
    assert reason_of(signed_record(with_field(1, bad_net))) is Reason.MALFORMED_ENVELOPE
    assert reason_of(signed_record(with_field(7, b"\xa3a.\xff"))) is Reason.MALFORMED_ENVELOPE


DEEP = b"\x91" * 5000 + NIL  # 5000 nested one-element arrays: 5 KB


def test_deeply_nested_input_is_malformed_not_a_crash():
    assert reason_of(mp_array([mp_bin(ENV), mp_bin(SIG), DEEP])) is Reason.MALFORMED_RECORD
    assert reason_of(mp_array([DEEP, mp_bin(SIG)])) is Reason.MALFORMED_RECORD
    deep_envelope = mp_array([*envelope_fields(), DEEP])
    assert reason_of(signed_record(deep_envelope)) is Reason.MALFORMED_ENVELOPE
    assert reason_of(signed_record(with_field(1, DEEP))) is Reason.MALFORMED_ENVELOPE


def test_envelope_with_missing_field_is_malformed():
    assert reason_of(signed_record(mp_array(envelope_fields()[:8]))) is Reason.MALFORMED_ENVELOPE


@pytest.mark.parametrize("version", [0, 2, 255])
def test_other_format_versions_are_unsupported(version: int):
    env = Envelope(version, NET, HUB, HUB, 1, None, TS, "hub.profile_updated", b"\x80")
    assert reason_of(seal(env, KEY)) is Reason.UNSUPPORTED_VERSION


def test_size_limit_is_the_default_and_configurable():
    env = Envelope(1, NET, HUB, HUB, 1, None, TS, "hub.profile_updated", b"\x80")
    raw = seal(env, KEY)
    decode_record(raw, max_size=len(raw))
    assert reason_of(raw, max_size=len(raw) - 1) is Reason.TOO_LARGE

    big = Envelope(1, NET, HUB, HUB, 1, None, TS, "hub.profile_updated", bytes(MAX_RECORD_SIZE))
    big_raw = seal(big, KEY)
    assert reason_of(big_raw) is Reason.TOO_LARGE
    decode_record(big_raw, max_size=len(big_raw))


def test_size_is_checked_before_anything_else():
    assert reason_of(b"\xff" * 100, max_size=99) is Reason.TOO_LARGE
