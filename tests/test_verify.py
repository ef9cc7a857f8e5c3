"""Stateless verification of one record, in the order DESIGN §3 fixes, and chain links."""

from __future__ import annotations

import hashlib

import msgspec
import pytest

from hubnode import InvalidEvent, Reason, SigningKey, UnknownHub, verify_record
from hubnode.events.envelope import Envelope, seal
from hubnode.events.network import HubProfileUpdated, HubRegistered
from hubnode.events.verify import check_link, decode_event, reread
from hubnode.testing import ChainWriter

from .conftest import NET, chain, registered, update

KEY = SigningKey.from_seed(b"\x07" * 32)
OTHER = SigningKey.from_seed(b"\x08" * 32)


def signed(env: Envelope, key: SigningKey = KEY) -> bytes:
    return seal(env, key)


def first(writer: ChainWriter | None = None, **changes: object) -> Envelope:
    """Seq 1 of KEY's hub, with ``changes`` applied."""
    writer = writer or ChainWriter(NET, KEY)
    env = writer.envelope("hub.registered", registered())
    return msgspec.structs.replace(env, **changes)


def rejection(raw: bytes, **kwargs: object) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        verify_record(raw, **kwargs)  # type: ignore[arg-type]
    return info.value


def test_valid_record_verifies_with_its_id_and_envelope():
    raw = signed(first())
    verified = verify_record(raw, net=NET, trusted=lambda hub: hub == KEY.public)
    assert verified.raw == raw
    assert verified.id == hashlib.sha256(raw).digest()
    assert verified.envelope == first()


def test_a_chain_written_by_chain_writer_verifies_and_links():
    _, records = chain(4, KEY)
    head = None
    for raw in records:
        verified = verify_record(raw, net=NET)
        check_link(verified.envelope, head)
        head = (verified.envelope.seq, verified.id)
    assert head is not None and head[0] == 4


def test_wrong_network_is_rejected():
    error = rejection(signed(first()), net="another-net")
    assert error.reason is Reason.WRONG_NETWORK
    assert error.hub == KEY.public and error.seq == 1


def test_any_network_is_accepted_when_none_is_asked_for():
    verify_record(signed(first(net="another-net")))


def test_untrusted_hub_raises_unknown_hub():
    error = rejection(signed(first()), net=NET, trusted=lambda hub: False)
    assert isinstance(error, UnknownHub)
    assert error.reason is Reason.UNKNOWN_HUB
    assert error.hub == KEY.public


def test_trust_check_is_asked_about_the_author_hub():
    asked: list[bytes] = []
    verify_record(signed(first()), trusted=lambda hub: asked.append(hub) or True)
    assert asked == [KEY.public]


def test_key_other_than_the_hub_root_key_is_not_in_force():
    # Validly signed by OTHER, which the envelope names as its key: still refused in v1.
    error = rejection(signed(first(key=OTHER.public), OTHER))
    assert error.reason is Reason.KEY_NOT_IN_FORCE


def test_signature_by_another_key_is_bad():
    error = rejection(signed(first(), OTHER))
    assert error.reason is Reason.BAD_SIGNATURE
    assert error.hub == KEY.public and error.seq == 1


def test_signature_over_another_envelope_is_bad():
    good = msgspec.msgpack.decode(signed(first()))
    other = msgspec.msgpack.decode(signed(first(ts=1)))
    error = rejection(msgspec.msgpack.encode([other[0], good[1]]))
    assert error.reason is Reason.BAD_SIGNATURE


def test_seq_1_with_prev_is_bad_seq():
    error = rejection(signed(first(prev=b"\x01" * 32)))
    assert error.reason is Reason.BAD_SEQ


def test_seq_above_1_without_prev_is_bad_seq():
    error = rejection(signed(first(seq=2)))
    assert error.reason is Reason.BAD_SEQ
    assert error.seq == 2


def test_oversized_record_is_too_large_with_a_configurable_limit():
    raw = signed(first())
    verify_record(raw, max_size=len(raw))
    assert rejection(raw, max_size=len(raw) - 1).reason is Reason.TOO_LARGE


@pytest.mark.parametrize(
    ("changes", "key", "kwargs", "expected"),
    [
        # wrong network beats untrusted, wrong key and a bad signature
        (
            {"net": "elsewhere", "key": OTHER.public},
            OTHER,
            {"trusted": lambda h: False},
            Reason.WRONG_NETWORK,
        ),
        # untrusted beats wrong key and bad signature
        ({"key": OTHER.public}, OTHER, {"trusted": lambda h: False}, Reason.UNKNOWN_HUB),
        # key not in force beats a bad signature
        ({"key": OTHER.public}, KEY, {}, Reason.KEY_NOT_IN_FORCE),
        # a bad signature beats a bad seq shape: nothing unsigned is interpreted
        ({"seq": 2}, OTHER, {}, Reason.BAD_SIGNATURE),
    ],
)
def test_checks_run_in_design_order(changes, key, kwargs, expected):
    error = rejection(signed(first(**changes), key), net=NET, **kwargs)
    assert error.reason is expected


def test_the_body_is_not_decoded_during_verification():
    # An unknown kind with a garbage body passes the stateless checks: the kind is only
    # looked at once the chain accepts the record (DESIGN §3 order).
    raw = signed(first(kind="no.such_kind", body=b"\xc1 not msgpack"))
    verified = verify_record(raw, net=NET)
    with pytest.raises(InvalidEvent) as info:
        decode_event(verified)
    assert info.value.reason is Reason.UNKNOWN_KIND


def test_error_message_names_the_reason():
    error = rejection(signed(first()), net="another-net")
    assert str(error).startswith("wrong_network: ")
    assert "another-net" in str(error)


# -- chain links ------------------------------------------------------------------------------


def test_check_link_accepts_seq_1_on_an_empty_chain():
    check_link(first(), None)


def test_check_link_refuses_a_gap_or_a_repeat():
    _, records = chain(3, KEY)
    verified = [verify_record(r) for r in records]
    head_1 = (1, verified[0].id)
    with pytest.raises(InvalidEvent) as info:
        check_link(verified[2].envelope, head_1)
    assert info.value.reason is Reason.BAD_SEQ
    with pytest.raises(InvalidEvent) as info:
        check_link(verified[0].envelope, head_1)
    assert info.value.reason is Reason.BAD_SEQ
    with pytest.raises(InvalidEvent) as info:
        check_link(verified[1].envelope, None)
    assert info.value.reason is Reason.BAD_SEQ


def test_check_link_refuses_a_prev_that_is_not_the_head():
    _, records = chain(2, KEY)
    second = verify_record(records[1]).envelope
    with pytest.raises(InvalidEvent) as info:
        check_link(second, (1, b"\x00" * 32))
    assert info.value.reason is Reason.PREV_MISMATCH


# -- decoding -----------------------------------------------------------------------------------


def test_decode_event_gives_the_typed_body_and_header():
    writer = ChainWriter(NET, KEY)
    r1 = writer.next("hub.registered", registered("Alpha"))
    raw = writer.next("hub.profile_updated", update(2))
    event = decode_event(verify_record(raw), pos=7)
    assert event.body == HubProfileUpdated(area="area 2")
    assert (event.hub, event.seq, event.kind, event.pos) == (
        KEY.public,
        2,
        "hub.profile_updated",
        7,
    )
    assert event.prev == hashlib.sha256(r1).digest()
    assert event.ts == writer.ts - 1
    assert event.raw == raw
    assert event.id == hashlib.sha256(raw).digest()


def test_reread_decodes_without_checking_the_signature_again():
    raw = signed(first())
    assert reread(raw) == verify_record(raw)
    body = decode_event(reread(raw)).body
    assert isinstance(body, HubRegistered)
