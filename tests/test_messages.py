"""Gossip messages (DESIGN §6; docs/protocol.md, "Gossip over NATS"): shapes, strict decoding,
packing records under ``max_payload`` and subject names."""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubnode.crypto import weak_key_reason
from hubnode.events.envelope import MAX_RECORD_SIZE
from hubnode.events.ids import hub_display, parse_hub
from hubnode.protocol import messages as m
from hubnode.protocol.messages import (
    PER_RECORD_OVERHEAD,
    RECORDS_OVERHEAD,
    ForkMessage,
    HeadsMessage,
    SyncRequest,
    pack_records,
    subject,
    sync_subject,
)

HUB, PEER, ID = b"h" * 32, b"p" * 32, b"i" * 32
encode = m.encoder.encode
raw = msgspec.msgpack.encode  # any shape, for garbage

ids32 = st.binary(min_size=32, max_size=32)
seqs = st.integers(1, 2**63 - 1)


# -- round trips and wire shapes ----------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.builds(HeadsMessage, ids32, st.dictionaries(ids32, st.tuples(seqs, ids32), max_size=8)))
def test_heads_round_trip(message: HeadsMessage):
    assert m.heads_decoder.decode(encode(message)) == message


@settings(max_examples=200, deadline=None)
@given(
    st.builds(
        SyncRequest,
        ids32,
        seqs,
        st.integers(1, 10_000),
        st.integers(1, 2**32),
        st.none() | ids32,
    )
)
def test_sync_request_round_trip(request: SyncRequest):
    assert m.request_decoder.decode(encode(request)) == request


@settings(max_examples=100, deadline=None)
@given(st.builds(ForkMessage, st.binary(max_size=300), st.binary(max_size=300)))
def test_fork_round_trip(message: ForkMessage):
    assert m.fork_decoder.decode(encode(message)) == message


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_records_round_trip(records: list[bytes]):
    assert m.records_decoder.decode(encode(records)) == records


def test_wire_shapes_are_the_documented_arrays():
    heads = HeadsMessage(PEER, {HUB: (7, ID)})
    assert msgspec.msgpack.decode(encode(heads)) == [PEER, {HUB: [7, ID]}]
    request = SyncRequest(HUB, 6, 500, 1 << 20, PEER)
    assert msgspec.msgpack.decode(encode(request)) == [HUB, 6, 500, 1 << 20, PEER]
    assert msgspec.msgpack.decode(encode(SyncRequest(HUB, 6, 500, 1 << 20))) == [
        HUB,
        6,
        500,
        1 << 20,
        None,
    ]
    assert msgspec.msgpack.decode(encode(ForkMessage(b"a", b"b"))) == [b"a", b"b"]


def test_a_request_without_peer_lets_every_holder_answer():
    assert m.request_decoder.decode(raw([HUB, 1, 10, 1000])).peer is None


def test_a_newer_sender_may_append_fields():
    # Schema evolution (STYLE §3): optional fields are added at the end; older nodes ignore them.
    assert m.request_decoder.decode(raw([HUB, 1, 10, 1000, PEER, "new"])) == SyncRequest(
        HUB, 1, 10, 1000, PEER
    )
    assert m.heads_decoder.decode(raw([PEER, {}, 42])) == HeadsMessage(PEER, {})


# -- strict decoding ----------------------------------------------------------------------------

GARBAGE: dict[str, tuple[msgspec.msgpack.Decoder[Any], bytes]] = {
    # heads
    "heads: sender of 31 bytes": (m.heads_decoder, raw([b"s" * 31, {}])),
    "heads: sender of 33 bytes": (m.heads_decoder, raw([b"s" * 33, {}])),
    "heads: sender as str": (m.heads_decoder, raw(["s" * 32, {}])),
    "heads: hub key of 31 bytes": (m.heads_decoder, raw([PEER, {b"h" * 31: [1, ID]}])),
    "heads: hub key as str": (m.heads_decoder, raw([PEER, {"h" * 32: [1, ID]}])),
    "heads: seq 0": (m.heads_decoder, raw([PEER, {HUB: [0, ID]}])),
    "heads: negative seq": (m.heads_decoder, raw([PEER, {HUB: [-1, ID]}])),
    "heads: seq as float": (m.heads_decoder, raw([PEER, {HUB: [1.0, ID]}])),
    "heads: seq as bool": (m.heads_decoder, raw([PEER, {HUB: [True, ID]}])),
    "heads: seq as str": (m.heads_decoder, raw([PEER, {HUB: ["1", ID]}])),
    "heads: id of 31 bytes": (m.heads_decoder, raw([PEER, {HUB: [1, b"i" * 31]}])),
    "heads: id missing": (m.heads_decoder, raw([PEER, {HUB: [1]}])),
    "heads: pair with a third item": (m.heads_decoder, raw([PEER, {HUB: [1, ID, 2]}])),
    "heads: pair nested once more": (m.heads_decoder, raw([PEER, {HUB: [[1, ID]]}])),
    "heads: frontier as array": (m.heads_decoder, raw([PEER, [[HUB, [1, ID]]]])),
    "heads: message as map": (m.heads_decoder, raw({"sender": PEER, "heads": {}})),
    "heads: message nested": (m.heads_decoder, raw([[PEER, {}]])),
    "heads: sender only": (m.heads_decoder, raw([PEER])),
    # sync requests
    "request: start 0": (m.request_decoder, raw([HUB, 0, 10, 1000, None])),
    "request: limit 0": (m.request_decoder, raw([HUB, 1, 0, 1000, None])),
    "request: limit over 10 000": (m.request_decoder, raw([HUB, 1, 10_001, 1000, None])),
    "request: max_bytes 0": (m.request_decoder, raw([HUB, 1, 10, 0, None])),
    "request: hub of 31 bytes": (m.request_decoder, raw([b"h" * 31, 1, 10, 1000, None])),
    "request: peer of 33 bytes": (m.request_decoder, raw([HUB, 1, 10, 1000, b"p" * 33])),
    "request: peer as str": (m.request_decoder, raw([HUB, 1, 10, 1000, "p" * 32])),
    "request: start as str": (m.request_decoder, raw([HUB, "1", 10, 1000, None])),
    "request: three items": (m.request_decoder, raw([HUB, 1, 10])),
    "request: nested": (m.request_decoder, raw([[HUB, 1, 10, 1000, None]])),
    # records
    "records: a str among them": (m.records_decoder, raw([b"rec", "rec"])),
    "records: nested array": (m.records_decoder, raw([[b"rec"]])),
    "records: a map": (m.records_decoder, raw({b"rec": b"rec"})),
    "records: one bare record": (m.records_decoder, raw(b"rec")),
    "records: nil": (m.records_decoder, raw(None)),
    # forks
    "fork: one record": (m.fork_decoder, raw([b"a"])),
    "fork: a record as int": (m.fork_decoder, raw([b"a", 1])),
    "fork: nested": (m.fork_decoder, raw([[b"a", b"b"]])),
    # not msgpack at all
    "empty payload": (m.records_decoder, b""),
    "truncated": (m.heads_decoder, raw([PEER, {HUB: [1, ID]}])[:-3]),
    "trailing bytes": (m.records_decoder, raw([b"rec"]) + b"\x00"),
    "json": (m.request_decoder, b'["hub", 1, 10, 1000, null]'),
}


@pytest.mark.parametrize("case", GARBAGE)
def test_garbage_is_refused(case: str):
    decoder, payload = GARBAGE[case]
    with pytest.raises(msgspec.DecodeError):  # msgspec.ValidationError is a DecodeError
        decoder.decode(payload)


DECODERS = [m.heads_decoder, m.request_decoder, m.records_decoder, m.fork_decoder]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(DECODERS), st.binary(max_size=200))
def test_random_bytes_decode_or_raise_a_decode_error(decoder: Any, payload: bytes):
    with contextlib.suppress(msgspec.DecodeError):
        decoder.decode(payload)


# -- packing records under max_payload ----------------------------------------------------------


def fits_alone(record: bytes, max_payload: int) -> bool:
    """The documented budget: an array32 header and a bin32 header, worst case."""
    return RECORDS_OVERHEAD + PER_RECORD_OVERHEAD + len(record) <= max_payload


def budget(records: list[bytes]) -> int:
    return RECORDS_OVERHEAD + sum(PER_RECORD_OVERHEAD + len(r) for r in records)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=400), max_size=40), st.integers(1, 2_000))
def test_pack_records_stays_under_max_payload_and_keeps_order(
    records: list[bytes], max_payload: int
):
    payloads = pack_records(records, max_payload)
    batches = [m.records_decoder.decode(p) for p in payloads]
    for payload, batch in zip(payloads, batches, strict=True):
        assert len(payload) <= max_payload
        assert batch, "an empty payload was produced"
        assert budget(batch) <= max_payload
    # In order, nothing dropped but records that alone cannot fit.
    assert [r for batch in batches for r in batch] == [
        r for r in records if fits_alone(r, max_payload)
    ]
    # No needless split: each payload ended because the next record would not have fitted.
    for batch, following in itertools.pairwise(batches):
        assert budget([*batch, following[0]]) > max_payload


def test_pack_records_fills_payloads_in_order():
    a, b, c = b"a" * 100, b"b" * 100, b"c" * 100
    assert [m.records_decoder.decode(p) for p in pack_records([a, b, c], 215)] == [[a, b], [c]]
    assert [m.records_decoder.decode(p) for p in pack_records([a, b, c], 214)] == [[a], [b], [c]]


def test_a_record_too_big_for_any_payload_is_skipped_and_the_rest_sent():
    small, huge = b"s" * 10, b"H" * 1_000
    payloads = pack_records([small, huge, small], 500)
    assert [m.records_decoder.decode(p) for p in payloads] == [[small, small]]
    assert pack_records([huge], 500) == []
    assert pack_records([], 500) == []


def test_the_largest_records_the_log_accepts_travel_under_the_default_max_payload():
    records = [bytes([i]) * MAX_RECORD_SIZE for i in range(4)]
    payloads = pack_records(records, 1 << 20)  # nats-server's default max_payload
    assert all(len(p) <= 1 << 20 for p in payloads)
    assert [r for p in payloads for r in m.records_decoder.decode(p)] == records
    assert len(payloads) == 2


# -- subjects -----------------------------------------------------------------------------------

nets = st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,63}\Z")


def assert_valid_nats_subject(name: str) -> list[str]:
    """Printable ASCII without spaces, non-empty tokens, no wildcards (``*``, ``>``)."""
    assert name.isascii() and name.isprintable(), name
    assert not any(ch.isspace() for ch in name), name
    assert "*" not in name and ">" not in name, name
    tokens = name.split(".")
    assert all(tokens), f"empty token in {name!r}"
    return tokens


@settings(max_examples=300, deadline=None)
@given(nets, ids32)
def test_sync_subject_is_one_valid_nats_subject_per_hub(net: str, hub: bytes):
    name = sync_subject(net, hub)
    tokens = assert_valid_nats_subject(name)
    # Four tokens, so the adapter's "hubnode.NET.sync.>" subscription catches it.
    assert tokens[:3] == ["hubnode", net, "sync"]
    assert len(tokens) == 4
    assert tokens[3] == hub_display(hub)
    if weak_key_reason(hub) is None:  # parse_hub refuses the 48 keys no hub can have
        assert parse_hub(tokens[3]) == hub


@settings(max_examples=100, deadline=None)
@given(nets, st.sampled_from(["ev", "heads", "forks"]))
def test_broadcast_subjects_are_valid(net: str, name: str):
    assert assert_valid_nats_subject(subject(net, name)) == ["hubnode", net, name]


def test_subjects_of_two_networks_never_meet():
    assert sync_subject("net-a", HUB) != sync_subject("net-b", HUB)
    assert subject("net-a", "ev") != subject("net-b", "ev")
