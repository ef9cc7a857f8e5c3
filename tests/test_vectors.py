"""docs/protocol.md's test vectors: the document, the code and an independent re-computation agree.

The independent checks read the values *from the document* and recompute them without
hubnode's encoder: a small msgpack encoder written here from the canonical-encoding table,
``cryptography`` for Ed25519, ``hashlib`` for ids, ``base64`` for hub ids.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from hubnode import EventLog, Reason, Status, audit_file, verify_record
from hubnode.crypto import verify
from hubnode.events.envelope import Envelope
from hubnode.hublog import read_hublog

from . import vectors
from .conftest import shared_fixture

DOC_TEXT = vectors.DOC.read_text(encoding="utf-8")
DOC = {v["vector"]: v for v in vectors.parse(DOC_TEXT)}
EVENTS = [name for name in DOC if name.startswith("event-")]
CHECKS = [name for name in DOC if name.startswith(("accept-", "reject-"))]
NET = "darlington-csn"
CONTEXT = b"hubnode/v1/event\x00"


# -- an independent canonical msgpack encoder, written from docs/protocol.md's table -------


def _header(n: int, fix: tuple[int, int] | None, families: tuple[tuple[int, str], ...]) -> bytes:
    if fix is not None and n <= fix[1]:
        return bytes([fix[0] | n])
    for tag, fmt in families:
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([tag]) + struct.pack(fmt, n)
    raise ValueError(f"length {n} too large")


def pack(value: Any) -> bytes:
    if value is None:
        return b"\xc0"
    if isinstance(value, bool):
        return b"\xc3" if value else b"\xc2"
    if isinstance(value, int):
        if 0 <= value <= 0x7F or -32 <= value < 0:
            return struct.pack(">b" if value < 0 else ">B", value)
        if value > 0:
            families = ((0xCC, ">B"), (0xCD, ">H"), (0xCE, ">I"), (0xCF, ">Q"))
            for tag, fmt in families:
                if value < 1 << (8 * struct.calcsize(fmt)):
                    return bytes([tag]) + struct.pack(fmt, value)
        for tag, fmt in ((0xD0, ">b"), (0xD1, ">h"), (0xD2, ">i"), (0xD3, ">q")):
            if value >= -(1 << (8 * struct.calcsize(fmt) - 1)):
                return bytes([tag]) + struct.pack(fmt, value)
        raise ValueError(f"{value} does not fit msgpack")
    if isinstance(value, str):
        data = value.encode()
        return _header(len(data), (0xA0, 31), ((0xD9, ">B"), (0xDA, ">H"), (0xDB, ">I"))) + data
    if isinstance(value, bytes):
        return _header(len(value), None, ((0xC4, ">B"), (0xC5, ">H"), (0xC6, ">I"))) + value
    if isinstance(value, list | tuple):
        head = _header(len(value), (0x90, 15), ((0xDC, ">H"), (0xDD, ">I")))
        return head + b"".join(pack(v) for v in value)
    if isinstance(value, dict):
        head = _header(len(value), (0x80, 15), ((0xDE, ">H"), (0xDF, ">I")))
        return head + b"".join(pack(k) + pack(v) for k, v in value.items())
    raise TypeError(type(value))


INT_BOUNDARIES = [
    0, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**63 - 1, 2**64 - 1,
    -1, -32, -33, -128, -129, -32_768, -32_769, -(2**31), -(2**31) - 1, -(2**63),
]  # fmt: skip
LENGTH_BOUNDARIES = [0, 15, 16, 31, 32, 255, 256, 65_535, 65_536]


@pytest.mark.parametrize("value", INT_BOUNDARIES)
def test_canonical_int_table_matches_msgspec(value: int) -> None:
    assert msgspec.msgpack.encode(value) == pack(value)


@pytest.mark.parametrize("n", LENGTH_BOUNDARIES)
def test_canonical_str_bin_array_headers_match_msgspec(n: int) -> None:
    assert msgspec.msgpack.encode("a" * n) == pack("a" * n)
    assert msgspec.msgpack.encode(b"a" * n) == pack(b"a" * n)
    assert msgspec.msgpack.encode([0] * n) == pack([0] * n)


@given(
    st.recursive(
        st.none() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary(),
        lambda inner: st.lists(inner, max_size=20),
        max_leaves=30,
    )
)
def test_canonical_encoding_is_msgspecs_encoding(value: Any) -> None:
    assert msgspec.msgpack.encode(value) == pack(value)


# -- the document carries exactly what the code produces ---------------------------------


def test_doc_carries_the_vectors_the_code_produces() -> None:
    built = vectors.build()
    assert [v["vector"] for v in vectors.parse(DOC_TEXT)] == [v["vector"] for v in built]
    for vector in built:
        assert DOC[vector["vector"]] == vector, (
            f"docs/protocol.md vector {vector['vector']!r} is stale or edited by hand; "
            "regenerate with `python -m tests.vectors --write` and review the diff"
        )


def test_rewriting_the_doc_changes_nothing() -> None:
    assert vectors.rewrite(DOC_TEXT, vectors.build()) == DOC_TEXT


def test_doc_has_the_vectors_the_brief_promises() -> None:
    assert {"key-a", "key-b", "event-a1", "event-a2", "event-a2-fork"} <= DOC.keys()
    assert {DOC[name]["expect"] for name in CHECKS} == {"accept", "reject"}


# -- independent re-computation from the document's values -------------------------------


@pytest.mark.parametrize("name", ["key-a", "key-b"])
def test_key_vector_public_key_and_hub_id(name: str) -> None:
    doc = DOC[name]
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(doc["seed"]))
    public = private.public_key().public_bytes_raw()
    assert doc["public_key"] == public.hex()
    b32 = base64.b32encode(public).decode().rstrip("=").lower()
    assert doc["hub_id"] == "hub:" + b32
    assert len(b32) == 52


def _fields(doc: dict[str, str]) -> list[Any]:
    return [
        int(doc["v"]),
        doc["net"],
        bytes.fromhex(doc["hub"]),
        bytes.fromhex(doc["key"]),
        int(doc["seq"]),
        None if doc["prev"] == "nil" else bytes.fromhex(doc["prev"]),
        int(doc["ts"]),
        doc["kind"],
        bytes.fromhex(doc["body"]),
    ]


@pytest.mark.parametrize("name", EVENTS)
def test_event_vector_bytes_follow_from_its_fields(name: str) -> None:
    doc = DOC[name]
    assert bytes.fromhex(doc["body"]) == pack(json.loads(doc["body_fields"]))
    envelope = pack(_fields(doc))
    assert doc["envelope"] == envelope.hex()
    assert doc["signed_bytes"] == (CONTEXT + envelope).hex()
    record = pack([envelope, bytes.fromhex(doc["signature"])])
    assert doc["record"] == record.hex()
    assert doc["id"] == hashlib.sha256(record).hexdigest()


@pytest.mark.parametrize("name", EVENTS)
def test_event_vector_signature_verifies_with_cryptography(name: str) -> None:
    doc = DOC[name]
    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(doc["key"]))
    signature = bytes.fromhex(doc["signature"])
    key.verify(signature, bytes.fromhex(doc["signed_bytes"]))
    with pytest.raises(InvalidSignature):
        key.verify(signature, bytes.fromhex(doc["envelope"]))  # the context prefix is signed


@pytest.mark.parametrize("name", EVENTS)
def test_event_vector_signature_is_deterministic_from_the_seed(name: str) -> None:
    doc = DOC[name]
    seed = next(k["seed"] for k in DOC.values() if k.get("public_key") == doc["key"])
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed))
    assert private.sign(bytes.fromhex(doc["signed_bytes"])).hex() == doc["signature"]


@pytest.mark.parametrize("name", EVENTS)
def test_event_vector_envelope_decodes_back_to_its_fields(name: str) -> None:
    doc = DOC[name]
    envelope = msgspec.msgpack.decode(bytes.fromhex(doc["envelope"]), type=Envelope)
    assert list(msgspec.structs.astuple(envelope)) == _fields(doc)


@pytest.mark.parametrize("name", EVENTS)
def test_event_vector_record_passes_verify_record(name: str) -> None:
    doc = DOC[name]
    verified = verify_record(bytes.fromhex(doc["record"]), net=NET)
    assert verified.id.hex() == doc["id"]
    assert list(msgspec.structs.astuple(verified.envelope)) == _fields(doc)


def test_seq2_events_link_to_the_seq1_id() -> None:
    a1, a2, fork = DOC["event-a1"], DOC["event-a2"], DOC["event-a2-fork"]
    assert a1["seq"] == "1" and a1["prev"] == "nil"
    assert a2["seq"] == fork["seq"] == "2"
    assert a2["prev"] == fork["prev"] == a1["id"]
    assert a2["key"] == fork["key"] == a1["key"]
    assert a2["record"] != fork["record"]


async def test_fork_pair_ingested_into_a_log_is_a_fork(tmp_path: Path) -> None:
    records = [bytes.fromhex(DOC[n]["record"]) for n in ("event-a1", "event-a2", "event-a2-fork")]
    async with await EventLog.open(tmp_path / "log.sqlite3", net=NET) as log:
        outcomes = await log.ingest(records)
        assert [o.status for o in outcomes] == [Status.ACCEPTED, Status.ACCEPTED, Status.FORK]
        hub = bytes.fromhex(DOC["event-a1"]["hub"])
        assert await log.forked_hubs() == {hub: 2}
        [proof] = await log.forks()
        assert {i.hex() for i in proof.ids} == {DOC["event-a2"]["id"], DOC["event-a2-fork"]["id"]}


def test_hublog_vector_is_magic_then_length_prefixed_records(tmp_path: Path) -> None:
    data = bytes.fromhex(DOC["hublog-a1-a2"]["file"])
    expected = b"HUBLOG1\n"
    for name in ("event-a1", "event-a2"):
        record = bytes.fromhex(DOC[name]["record"])
        expected += len(record).to_bytes(4, "big") + record
    assert data == expected
    path = tmp_path / "a.hublog"
    path.write_bytes(data)
    with open(path, "rb") as f:
        assert [raw.hex() for _, raw in read_hublog(f)] == [
            DOC["event-a1"]["record"],
            DOC["event-a2"]["record"],
        ]
    report = audit_file(path)
    assert report.ok() and report.records == 2


@pytest.mark.parametrize("name", CHECKS)
async def test_check_vector_outcome_through_a_log(name: str, tmp_path: Path) -> None:
    doc = DOC[name]
    records = [bytes.fromhex(DOC[doc["after"]]["record"])] if "after" in doc else []
    records.append(bytes.fromhex(doc["record"]))
    async with await EventLog.open(tmp_path / "log.sqlite3", net=NET) as log:
        *before, outcome = await log.ingest(records)
    assert all(o.status is Status.ACCEPTED for o in before)
    if doc["expect"] == "accept":
        assert outcome.status is Status.ACCEPTED, outcome
    else:
        assert (outcome.status, outcome.reason) == (Status.REJECTED, Reason(doc["reason"])), outcome


def test_non_canonical_record_differs_only_in_a_header() -> None:
    """The long-header vector carries event-a1's envelope and valid signature."""
    a1 = DOC["event-a1"]
    long = bytes.fromhex(DOC["reject-record-long-header"]["record"])
    envelope = bytes.fromhex(a1["envelope"])
    assert long == b"\x92\xc5" + struct.pack(">H", len(envelope)) + envelope + b"\xc4\x40" + (
        bytes.fromhex(a1["signature"])
    )
    assert msgspec.msgpack.decode(long) == msgspec.msgpack.decode(bytes.fromhex(a1["record"]))


# -- Ed25519 edge cases: agree with OpenSSL, as the document says --------------------------


def test_verification_agrees_with_every_wycheproof_vector() -> None:
    path = shared_fixture("wycheproof-ed25519", "ed25519_test.json")
    suite = json.loads(path.read_text())
    disagree = [
        test["tcId"]
        for group in suite["testGroups"]
        for test in group["tests"]
        if verify(
            bytes.fromhex(group["publicKey"]["pk"]),
            bytes.fromhex(test["sig"]),
            bytes.fromhex(test["msg"]),
        )
        != (test["result"] == "valid")
    ]
    assert suite["numberOfTests"] == 151
    assert disagree == []


def test_small_order_public_key_is_refused_as_documented() -> None:
    """OpenSSL accepts the identity point as a key, R = identity and S = 0 as a signature of
    anything; hubnode.crypto.verify refuses the key (issue 12 item 1), and the
    reject-weak-key vector is such a forgery."""
    identity = b"\x01" + bytes(31)
    forged = identity + bytes(32)
    Ed25519PublicKey.from_public_bytes(identity).verify(forged, b"any message at all")
    assert not verify(identity, forged, b"any message at all")
    envelope, signature = msgspec.msgpack.decode(bytes.fromhex(DOC["reject-weak-key"]["record"]))
    assert msgspec.msgpack.decode(envelope)[2:4] == [identity, identity]
    Ed25519PublicKey.from_public_bytes(identity).verify(signature, CONTEXT + envelope)
