"""docs/privacy.md's test vectors: recomputed with `cryptography` alone, and by hubnode."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hubnode import crypto
from hubnode.events.pathway import Sealed
from hubnode.privacy.seal import Person, box_aad, open_person, seal_value, sealed_aad

DOC = Path(__file__).resolve().parents[1] / "docs" / "privacy.md"


def vector() -> dict[str, str]:
    block = re.search(r"```vector\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/privacy.md has no ```vector block"
    pairs = (line.split(": ", 1) for line in block.group(1).splitlines() if line)
    return dict(pairs)


V = vector()


def h(name: str) -> bytes:
    return bytes.fromhex(V[name])


def test_the_box_follows_from_the_inputs_with_cryptography_alone() -> None:
    recipient = X25519PrivateKey.from_private_bytes(h("recipient_private"))
    ephemeral = X25519PrivateKey.from_private_bytes(h("ephemeral_private"))
    r_pub = recipient.public_key().public_bytes_raw()
    e_pub = ephemeral.public_key().public_bytes_raw()
    assert (r_pub, e_pub) == (h("recipient_public"), h("ephemeral_public"))
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(r_pub))
    assert shared == h("shared")
    kek = HKDF(hashes.SHA256(), 32, salt=e_pub + r_pub, info=b"hubnode seal v1").derive(shared)
    assert kek == h("kek")
    aad = msgspec.msgpack.encode(
        ["hubnode key v1", V["net"], h("owner"), V["subject"], h("recipient_hub"), r_pub]
    )
    assert aad == h("box_aad")
    assert ChaCha20Poly1305(kek).encrypt(bytes(12), h("data_key"), aad) == h("box")
    # And the recipient opens it from its side of the exchange.
    again = recipient.exchange(X25519PublicKey.from_public_bytes(e_pub))
    assert again == shared


def test_hubnode_seals_and_opens_the_same_box() -> None:
    recipient = crypto.SealKey.from_bytes(h("recipient_private"))
    ephemeral = crypto.SealKey.from_bytes(h("ephemeral_private"))
    aad = box_aad(V["net"], h("owner"), V["subject"], h("recipient_hub"), recipient.public)
    assert aad == h("box_aad")
    epk, box = crypto.seal(recipient.public, h("data_key"), aad, ephemeral=ephemeral)
    assert (epk, box) == (h("ephemeral_public"), h("box"))
    assert crypto.open_sealed(recipient, epk, box, aad) == h("data_key")


def test_the_sealed_person_follows_from_the_inputs() -> None:
    person = Person(name="Zoë Example", phone="+44 1325 000000", dob=dt.date(1970, 1, 2))
    plaintext = msgspec.msgpack.encode(person)
    assert plaintext == h("person_plaintext")
    context = ["hubnode sealed v1", V["net"], h("owner"), V["subject"], "enquiry.logged"]
    aad = msgspec.msgpack.encode([*context, h("owner"), "enq-1"])
    assert aad == h("sealed_aad")
    assert aad == sealed_aad(
        V["net"], h("owner"), V["subject"], "enquiry.logged", h("owner"), "enq-1"
    )
    expected = ChaCha20Poly1305(h("data_key")).encrypt(h("nonce"), plaintext, aad)
    assert expected == h("sealed")
    assert seal_value(h("data_key"), person, aad, nonce=h("nonce")).data == expected
    sealed = Sealed(nonce=h("nonce"), data=h("sealed"))
    assert open_person(h("data_key"), sealed, aad) == person
