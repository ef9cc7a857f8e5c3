"""Verification of one wire record, in the order DESIGN §3 fixes.

size → outer decode → envelope decode → net → hub a usable key → hub trusted → key in force →
signature → seq/prev shape → (the log checks the link to the hub's head) → the body step:
its size against its kind's limit, then the decode by kind and its unknown fields
(:meth:`~hubnode.events.kinds.KindRegistry.check_body`).

Pure functions: no I/O, safe to call from several threads (``cryptography`` releases the
GIL while it verifies, so a thread pool uses every core).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from hubnode import crypto
from hubnode.errors import InvalidEvent, Reason, UnknownHub
from hubnode.events.envelope import (
    MAX_RECORD_SIZE,
    Envelope,
    decode_record,
    decode_stored,
    event_id,
    signed_bytes,
)
from hubnode.events.ids import hub_display, short_id
from hubnode.events.kinds import KINDS, Body, KindRegistry

TrustCheck = Callable[[bytes], bool]


class Verified(msgspec.Struct, frozen=True):
    """A record whose bytes, signature and seq/prev shape are valid; body not decoded yet."""

    raw: bytes
    id: bytes
    envelope: Envelope


class Event(msgspec.Struct, frozen=True):
    """A verified event with its decoded (and upcast) body, as projections see it."""

    id: bytes
    hub: bytes
    seq: int
    prev: bytes | None
    ts: int
    kind: str
    body: Body
    raw: bytes
    pos: int = 0


def verify_record(
    raw: bytes,
    *,
    net: str | None = None,
    trusted: TrustCheck | None = None,
    max_size: int = MAX_RECORD_SIZE,
) -> Verified:
    """Check everything about ``raw`` that needs no other record. Raises InvalidEvent.

    ``net`` None accepts any network and ``trusted`` None any hub (an auditor's view).
    """
    record, env = decode_record(raw, max_size)
    try:
        if net is not None and env.net != net:
            raise InvalidEvent(
                Reason.WRONG_NETWORK, f"event is for network {env.net!r}, not {net!r}"
            )
        # No hub has such a key, and under a small-order one OpenSSL verifies forgeries (R =
        # identity, S = 0 under the identity): refused by name, whoever trusts it. A
        # signing key other than the hub id would be refused by crypto.verify.
        weak = crypto.weak_key_reason(env.hub)
        if weak is not None:
            raise InvalidEvent(Reason.WEAK_KEY, f"hub id {hub_display(env.hub)} is refused: {weak}")
        if trusted is not None and not trusted(env.hub):
            raise UnknownHub(
                f"{hub_display(env.hub)} is not trusted here; add it with `hubnode peers add`"
            )
        # v1: the signing key in force is the root key. Key rotation will extend this check.
        if env.key != env.hub:
            raise InvalidEvent(
                Reason.KEY_NOT_IN_FORCE,
                f"signed by key {env.key.hex()[:16]}…, "
                f"which is not in force for {hub_display(env.hub)}",
            )
        if not crypto.verify(env.key, record.signature, signed_bytes(record.envelope)):
            raise InvalidEvent(
                Reason.BAD_SIGNATURE,
                f"signature does not verify for {hub_display(env.hub)} seq {env.seq}",
            )
        if (env.seq == 1) != (env.prev is None):
            raise InvalidEvent(
                Reason.BAD_SEQ,
                f"seq {env.seq} with prev {'nil' if env.prev is None else short_id(env.prev)}: "
                "only seq 1 has no prev",
            )
    except InvalidEvent as e:
        e.hub, e.seq = env.hub, env.seq
        raise
    return Verified(raw, event_id(raw), env)


def reread(raw: bytes) -> Verified:
    """A record read back from this hub's own log, verified when it was stored.

    Decodes (with the canonical checks) but skips the signature: local storage is trusted.
    """
    return Verified(raw, event_id(raw), decode_record(raw, max_size=len(raw))[1])


def restore(raw: bytes, stored_id: bytes) -> Verified:
    """A record read back from this hub's own log with the id stored beside it.

    The cheapest read, for replaying the log into projections: the record's signature and
    canonical encoding were checked when it was stored, so neither is checked again, and
    its id is not recomputed.
    """
    return Verified(raw, stored_id, decode_stored(raw))


def decode_event(verified: Verified, registry: KindRegistry = KINDS, pos: int = 0) -> Event:
    """Decode the body of a verified record a log holds, by its kind. Raises InvalidEvent.

    The body passed its checks when the log stored it; one stored before bodies refused
    control, bidi and zero-width characters reads with them replaced by U+FFFD
    (:meth:`KindRegistry.decode_body` with ``stored``)."""
    env = verified.envelope
    body = registry.decode_body(env.kind, env.body, stored=True)
    return Event(verified.id, env.hub, env.seq, env.prev, env.ts, env.kind, body, verified.raw, pos)


def check_link(env: Envelope, head: tuple[int, bytes] | None) -> None:
    """Raise unless ``env`` is the next event after ``head`` (seq, id) of its hub."""
    head_seq, head_id = head if head is not None else (0, b"")
    if env.seq != head_seq + 1:
        raise InvalidEvent(
            Reason.BAD_SEQ,
            f"{hub_display(env.hub)} event has seq {env.seq} but the chain is at {head_seq}; "
            f"expected seq {head_seq + 1}",
        )
    if env.seq > 1 and env.prev != head_id:
        raise InvalidEvent(
            Reason.PREV_MISMATCH,
            f"{hub_display(env.hub)} seq {env.seq} links to {short_id(env.prev or b'')} but "
            f"seq {head_seq} is {short_id(head_id)}: the hub signed two histories",
        )
