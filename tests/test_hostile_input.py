"""Hostile input never crashes the log and never changes it (DESIGN §3, §9).

Every hostile record is either rejected with a typed reason or, for records that are
validly signed but ahead of a gap, held as pending; none reaches storage. One log is
shared by all examples of this module: each test asserts the log is exactly as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubnode import KINDS, EventLog, Head, InvalidEvent, Reason, SigningKey, Status, verify_record
from hubnode.events.envelope import Envelope, event_id, seal
from hubnode.events.network import ROLES
from hubnode.store.pending import PendingLimits
from hubnode.testing import ChainWriter

from .conftest import NET, chain, update

LIMIT = 2048  # the shared log's max_record_size
KEY = SigningKey.from_seed(b"\x21" * 32)
STRANGER = SigningKey.from_seed(b"\x22" * 32)
EXAMPLES = settings(max_examples=200, deadline=None)


@dataclass
class Shared:
    runner: asyncio.Runner
    log: EventLog
    writer: ChainWriter
    """KEY's hub, seqs 1-3 stored; ``writer.envelope(...)`` is its seq 4."""
    stored: list[bytes]
    next_record: bytes
    """KEY's real seq 4, never ingested: what bit flips and truncations start from."""

    def state(self) -> tuple[Any, ...]:
        log = self.log

        async def read() -> tuple[Any, ...]:
            return (
                await log.count(),
                await log.heads(),
                log.pending.waiting(),
                log.pending.size_bytes,
                await log.forked_hubs(),
                len(await log.forks()),
            )

        return self.runner.run(read())

    def ingest(self, raw: bytes, trusted: Any = None) -> Any:
        (outcome,) = self.runner.run(self.log.ingest([raw], trusted=trusted))
        return outcome

    def assert_rejected(self, raw: bytes, *reasons: Reason, trusted: Any = None) -> Reason:
        """Ingest ``raw``: REJECTED with one of ``reasons`` (any, if none given); no change."""
        before = self.state()
        outcome = self.ingest(raw, trusted)
        assert outcome.status is Status.REJECTED, outcome
        assert isinstance(outcome.reason, Reason)
        assert outcome.detail
        if reasons:
            assert outcome.reason in reasons, outcome
        assert self.state() == before
        return outcome.reason


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    path = tmp_path_factory.mktemp("hostile") / "log.sqlite3"
    with asyncio.Runner() as runner:
        log = runner.run(
            EventLog.open(
                path, net=NET, max_record_size=LIMIT, pending=PendingLimits(max_records=50)
            )
        )
        writer, stored = chain(3, KEY)
        runner.run(log.ingest(stored))
        _, other = chain(3)
        runner.run(log.ingest(other[2:]))  # one record pending, so its buffer is checked too
        next_record = writer.sign(writer.envelope("hub.profile_updated", update(4)))
        yield Shared(runner, log, writer, stored, next_record)
        runner.run(log.close())


def seq4(shared: Shared, signer: SigningKey = KEY, **changes: Any) -> bytes:
    """KEY's hub seq 4 (linking to seq 3) with ``changes``, signed by ``signer``."""
    env = shared.writer.envelope("hub.profile_updated", update(4))
    return seal(msgspec.structs.replace(env, **changes), signer)


def test_shared_log_starts_as_described(shared: Shared):
    assert shared.runner.run(shared.log.head(KEY.public)) == Head(3, event_id(shared.stored[2]))
    assert len(shared.log.pending) == 1


# -- bytes that are not a record ----------------------------------------------------------------


@EXAMPLES
@given(st.binary(max_size=400))
def test_random_bytes_are_rejected(shared: Shared, raw: bytes):
    shared.assert_rejected(raw)
    with pytest.raises(InvalidEvent):
        verify_record(raw, net=NET)


@EXAMPLES
@given(st.data())
def test_truncated_records_are_malformed(shared: Shared, data: st.DataObject):
    raw = data.draw(st.sampled_from([*shared.stored, shared.next_record]))
    cut = data.draw(st.integers(0, len(raw) - 1))
    shared.assert_rejected(raw[:cut], Reason.MALFORMED_RECORD)


@EXAMPLES
@given(st.data())
def test_one_flipped_bit_is_always_rejected(shared: Shared, data: st.DataObject):
    # Stored or not, a record with one bit flipped is never accepted, never a duplicate
    # and never a fork: the signature covers every envelope byte.
    raw = data.draw(st.sampled_from([*shared.stored, shared.next_record]))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 1 << (bit % 8)
    reason = shared.assert_rejected(bytes(flipped))
    if bit // 8 >= len(raw) - 64:  # inside the signature, the record's last 64 bytes
        assert reason is Reason.BAD_SIGNATURE


@EXAMPLES
@given(envelope=st.binary(max_size=300), signature=st.binary(min_size=64, max_size=64))
def test_random_envelope_in_a_well_formed_record_is_rejected(
    shared: Shared, envelope: bytes, signature: bytes
):
    raw = msgspec.msgpack.encode([envelope, signature])
    shared.assert_rejected(raw)


@EXAMPLES
@given(st.integers(0, 3), st.integers(1, 4000), st.sampled_from([b"\x91", b"\x81\xa1k"]))
def test_deeply_nested_records_are_rejected(shared: Shared, where: int, depth: int, step: bytes):
    deep = step * depth + b"\xc0"
    if where == 0:  # the whole record
        raw = deep
    elif where == 1:  # a third element of the record
        raw = b"\x93" + shared.next_record[1:] + deep
    else:  # a tenth element of the envelope, or the body, validly signed
        env = shared.writer.envelope("hub.registered", deep)
        raw = shared.writer.sign(env)
        if where == 2:
            env_bytes = b"\x9a" + msgspec.msgpack.encode(env)[1:] + deep
            raw = msgspec.msgpack.encode([env_bytes, KEY.sign(b"hubnode/v1/event\x00" + env_bytes)])
    shared.assert_rejected(raw)


# -- envelopes a stranger could write ---------------------------------------------------------


@st.composite
def any_envelope(draw: st.DrawFn) -> Envelope:
    """Envelopes with type-correct but arbitrary values, for any hub."""
    seq = draw(st.integers(1, 2**63 - 1))
    return Envelope(
        v=draw(st.sampled_from([1, 1, 1, 0, 2])),
        net=draw(st.sampled_from([NET, NET, "other-net"])),
        hub=draw(st.sampled_from([KEY.public, STRANGER.public])),
        key=draw(st.sampled_from([KEY.public, STRANGER.public])),
        seq=seq,
        prev=draw(st.none() | st.binary(min_size=32, max_size=32)),
        ts=draw(st.integers(0, 2**63 - 1)),
        kind=draw(st.sampled_from(["hub.registered", "hub.profile_updated", "x.y"])),
        body=draw(st.binary(max_size=100)),
    )


@EXAMPLES
@given(any_envelope())
def test_envelopes_signed_by_a_stranger_are_rejected(shared: Shared, env: Envelope):
    # STRANGER is never trusted: whatever it signs for any hub is refused.
    trusted = {KEY.public}.__contains__
    reason = shared.assert_rejected(seal(env, STRANGER), trusted=trusted)
    if env.net == NET and env.v == 1 and env.hub == KEY.public:
        assert reason in (Reason.KEY_NOT_IN_FORCE, Reason.BAD_SIGNATURE)


nets = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,30}", fullmatch=True).filter(lambda n: n != NET)


@EXAMPLES
@given(nets)
def test_wrong_network_is_rejected(shared: Shared, net: str):
    shared.assert_rejected(seq4(shared, net=net), Reason.WRONG_NETWORK)


@EXAMPLES
@given(st.binary(min_size=32, max_size=32))
def test_a_key_other_than_the_hubs_is_rejected(shared: Shared, key: bytes):
    shared.assert_rejected(seq4(shared, STRANGER, key=key), Reason.KEY_NOT_IN_FORCE)
    shared.assert_rejected(seq4(shared, STRANGER), Reason.BAD_SIGNATURE)


@EXAMPLES
@given(st.binary(min_size=32, max_size=32))
def test_wrong_prev_is_rejected(shared: Shared, prev: bytes):
    if prev == shared.writer.head:
        return
    shared.assert_rejected(seq4(shared, prev=prev), Reason.PREV_MISMATCH)


@EXAMPLES
@given(st.integers(1, 2**63 - 1), st.binary(min_size=32, max_size=32))
def test_seq_and_prev_of_the_wrong_shape_are_rejected(shared: Shared, seq: int, prev: bytes):
    if seq == 1:
        shared.assert_rejected(seq4(shared, seq=1, prev=prev), Reason.BAD_SEQ)
    else:
        shared.assert_rejected(seq4(shared, seq=seq, prev=None), Reason.BAD_SEQ)


@EXAMPLES
@given(st.integers(5, 2**63 - 1), st.binary(min_size=32, max_size=32))
def test_records_ahead_of_a_gap_are_never_stored(shared: Shared, seq: int, prev: bytes):
    # Validly signed but not next: held (or dropped), never stored, never a head.
    before = shared.state()
    outcome = shared.ingest(seq4(shared, seq=seq, prev=prev))
    assert outcome.status in (Status.PENDING, Status.DROPPED, Status.DUPLICATE)
    after = shared.state()
    assert after[:2] == before[:2]
    shared.log.pending.drop_hub(KEY.public)  # keep the shared buffer as it was
    assert shared.state() == before


@EXAMPLES
@given(st.integers(LIMIT, 3 * LIMIT))
def test_oversized_records_are_rejected(shared: Shared, size: int):
    raw = seq4(shared, body=msgspec.msgpack.encode({"area": "x" * size}))
    shared.assert_rejected(raw, Reason.TOO_LARGE)


kinds = st.from_regex(r"[a-z][a-z0-9_]{0,8}(\.[a-z][a-z0-9_]{0,8}){1,2}", fullmatch=True)


@EXAMPLES
@given(kinds.filter(lambda k: k not in KINDS))
def test_unknown_kinds_are_rejected(shared: Shared, kind: str):
    shared.assert_rejected(seq4(shared, kind=kind), Reason.UNKNOWN_KIND)


# -- bodies failing their Struct ----------------------------------------------------------------

GOOD = {"name": "Hub", "roles": ["gateway"], "area": "Darlington", "contact": "a@b.org"}
not_str = (
    st.integers(-(2**63), 2**64 - 1) | st.none() | st.booleans() | st.lists(st.text(), max_size=2)
)
BAD_VALUES = {
    "name": st.just("") | st.text(min_size=121, max_size=130) | not_str,
    "area": st.just("") | st.text(min_size=201, max_size=210) | not_str,
    "contact": st.just("") | not_str,
    "roles": (
        st.just([])
        | st.lists(st.text().filter(lambda r: r not in ROLES), min_size=1, max_size=3)
        | st.lists(st.sampled_from(ROLES), min_size=6, max_size=8)
        | st.text()
        | st.integers(-(2**63), 2**64 - 1)
    ),
}


@st.composite
def bad_registrations(draw: st.DrawFn) -> bytes:
    fields: dict[str, Any] = dict(GOOD)
    field = draw(st.sampled_from(sorted(BAD_VALUES)))
    if draw(st.booleans()):
        del fields[field]
    else:
        fields[field] = draw(BAD_VALUES[field])
    return msgspec.msgpack.encode(fields)


@EXAMPLES
@given(bad_registrations())
def test_bodies_failing_their_struct_are_rejected(shared: Shared, body: bytes):
    shared.assert_rejected(seq4(shared, kind="hub.registered", body=body), Reason.BAD_BODY)


@EXAMPLES
@given(st.binary(max_size=200))
def test_random_bodies_are_rejected(shared: Shared, body: bytes):
    shared.assert_rejected(
        seq4(shared, kind="hub.registered", body=body), Reason.BAD_BODY, Reason.BODY_VERSION
    )


@EXAMPLES
@given(st.integers(2, 2**63 - 1) | st.integers(-(2**63), 0))
def test_unsupported_body_versions_are_rejected(shared: Shared, version: int):
    body = msgspec.msgpack.encode({**GOOD, "_v": version})
    shared.assert_rejected(seq4(shared, kind="hub.registered", body=body), Reason.BODY_VERSION)


def test_the_real_next_record_is_still_accepted_afterwards(shared: Shared):
    # Run last: after all the hostile examples, the hub's chain continues normally.
    outcome = shared.ingest(shared.next_record)
    assert outcome.status is Status.ACCEPTED
    assert shared.runner.run(shared.log.head(KEY.public)) == Head(4, event_id(shared.next_record))
