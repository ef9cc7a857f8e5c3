"""Sealing a person's details: what is encrypted, under which key, bound to which context.

The construction (docs/privacy.md has it in full, with test vectors):

- each subject has a random 32-byte **data key**; personal fields (:class:`Person`) and
  notes about the person are encrypted with it, ChaCha20-Poly1305 with a random 12-byte
  nonce, the associated data binding network, owner, subject, kind, author and record id
  (:func:`sealed_aad`), so sealed bytes cannot be moved to another record undetected;
- the data key is **sealed** to each consented hub's X25519 seal key: an ephemeral
  X25519 key fresh for each consent event and shared by its boxes, HKDF-SHA256 over the
  shared secret (salt = ephemeral ‖ recipient public key, info ``hubnode seal v1``),
  ChaCha20-Poly1305 with a zero nonce (each box's key is single-use: recipient keys
  differ), the associated data binding network, owner, subject, recipient hub and
  recipient key (:func:`box_aad`).
"""

from __future__ import annotations

import base64
import datetime as dt
import os
from collections.abc import Mapping
from typing import Annotated, Final

import msgspec

from hubnode import crypto
from hubnode.errors import PrivacyError
from hubnode.events.ids import hub_display
from hubnode.events.pathway import MAX_SEALED, KeyBox, Sealed

SEALED_CONTEXT: Final = "hubnode sealed v1"
BOX_CONTEXT: Final = "hubnode key v1"

Short = Annotated[str, msgspec.Meta(max_length=200)]


class Person(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A person's details: only ever stored or sent sealed."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    phone: Short = ""
    email: Short = ""
    dob: dt.date | None = None
    address: Annotated[str, msgspec.Meta(max_length=500)] = ""
    notes: Annotated[str, msgspec.Meta(max_length=4000)] = ""


NOTE_MAX: Final = 4000
"""The most characters a sealed note holds."""


class Note(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Free text about the person (referral, follow-up and advocacy notes): sealed too."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=NOTE_MAX)]


_encoder: Final = msgspec.msgpack.Encoder()
_person: Final = msgspec.msgpack.Decoder(Person)
_note: Final = msgspec.msgpack.Decoder(Note)


def new_subject() -> str:
    """A random pseudonym (100 bits), never derived from anything about the person."""
    return "s-" + base64.b32encode(os.urandom(15)).decode().lower()[:20]


def sealed_aad(
    net: str, owner: bytes, subject: str, kind: str, author: bytes, record: str
) -> bytes:
    return _encoder.encode([SEALED_CONTEXT, net, owner, subject, kind, author, record])


def box_aad(net: str, owner: bytes, subject: str, recipient: bytes, recipient_key: bytes) -> bytes:
    return _encoder.encode([BOX_CONTEXT, net, owner, subject, recipient, recipient_key])


def seal_value(
    data_key: bytes, value: Person | Note, aad: bytes, *, nonce: bytes | None = None
) -> Sealed:
    plaintext = _encoder.encode(value)
    if len(plaintext) > MAX_SEALED:
        raise PrivacyError(
            f"personal details take {len(plaintext)} bytes; at most {MAX_SEALED} may be sealed"
        )
    nonce = nonce or crypto.new_nonce()
    return Sealed(nonce=nonce, data=crypto.encrypt(data_key, nonce, plaintext, aad))


def open_person(data_key: bytes, sealed: Sealed, aad: bytes) -> Person:
    return _person.decode(_open(data_key, sealed, aad))


def open_note(data_key: bytes, sealed: Sealed, aad: bytes) -> Note:
    return _note.decode(_open(data_key, sealed, aad))


def _open(data_key: bytes, sealed: Sealed, aad: bytes) -> bytes:
    try:
        return crypto.decrypt(data_key, sealed.nonce, sealed.data, aad)
    except crypto.OpenFailed:
        raise PrivacyError(
            "sealed details do not open with this subject's key: altered, or moved from "
            "another record"
        ) from None


def key_boxes(
    net: str, owner: bytes, subject: str, data_key: bytes, recipients: Mapping[bytes, bytes]
) -> tuple[KeyBox, ...]:
    """Seal ``data_key`` to each hub in ``recipients`` (hub → its current seal key).

    One ephemeral key serves every box of the call; the recipients' seal keys must differ,
    so that each box still has its own key-encryption key (docs/privacy.md)."""
    if len(set(recipients.values())) != len(recipients):
        raise PrivacyError("two recipient hubs share one seal key; refusing to seal")
    ephemeral = crypto.SealKey.generate()
    boxes = []
    for hub, key in recipients.items():
        aad = box_aad(net, owner, subject, hub, key)
        epk, box = crypto.seal(key, data_key, aad, ephemeral=ephemeral)
        boxes.append(KeyBox(hub=hub_display(hub), key=key, epk=epk, box=box))
    return tuple(boxes)


def open_box(
    net: str, owner: bytes, subject: str, me: bytes, key: crypto.SealKey, box: KeyBox
) -> bytes:
    """The data key in ``box``; raises PrivacyError if it is not for ``key`` or altered."""
    if box.key != key.public:
        raise PrivacyError("the key box was sealed to another seal key of this hub")
    try:
        return crypto.open_sealed(
            key, box.epk, box.box, box_aad(net, owner, subject, me, key.public)
        )
    except crypto.OpenFailed:
        raise PrivacyError(
            f"the key box for {hub_display(me)} does not open: altered or moved"
        ) from None
