"""Sealing people's details and crypto-shredding them (hubnode.crypto, hubnode.privacy)."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import stat
from pathlib import Path

import msgspec
import pytest

from hubnode import crypto
from hubnode.config import HubFolder
from hubnode.errors import PrivacyError
from hubnode.events.ids import hub_display
from hubnode.events.pathway import (
    ConsentRecorded,
    EnquiryLogged,
    KeyBox,
    SubjectErased,
    SubjectErasureConfirmed,
)
from hubnode.privacy.keyring import (
    KEYRING_FILE,
    KeyCatchUp,
    Keyring,
    catch_up_keys,
    publish_seal_key,
    published_seal_key,
    seal_keys,
)
from hubnode.privacy.seal import (
    Note,
    Person,
    box_aad,
    key_boxes,
    new_subject,
    open_box,
    open_note,
    open_person,
    seal_value,
    sealed_aad,
)
from tests.conftest import NET, registered

PERSON = Person(
    name="Zoë Ångström-Nakamura",
    phone="+44 7700 900123",
    email="zoe@example.org",
    dob=dt.date(1961, 2, 3),
    address="1 Example Street, Darlington DL1 1AA",
    notes="needs a ground-floor room",
)

# -- primitives ---------------------------------------------------------------------------


def test_a_sealed_key_opens_only_for_its_recipient_and_context() -> None:
    bob, eve = crypto.SealKey.generate(), crypto.SealKey.generate()
    data_key = crypto.new_data_key()
    epk, box = crypto.seal(bob.public, data_key, b"context")
    assert crypto.open_sealed(bob, epk, box, b"context") == data_key
    with pytest.raises(crypto.OpenFailed):
        crypto.open_sealed(eve, epk, box, b"context")
    with pytest.raises(crypto.OpenFailed):
        crypto.open_sealed(bob, epk, box, b"other context")
    for i in range(len(box)):
        flipped = bytearray(box)
        flipped[i] ^= 1
        with pytest.raises(crypto.OpenFailed):
            crypto.open_sealed(bob, epk, bytes(flipped), b"context")


def test_every_box_uses_a_fresh_ephemeral_key() -> None:
    bob = crypto.SealKey.generate()
    data_key = crypto.new_data_key()
    (e1, b1), (e2, b2) = (crypto.seal(bob.public, data_key, b"c") for _ in range(2))
    assert e1 != e2 and b1 != b2


def test_one_consent_shares_an_ephemeral_key_but_never_a_key_encryption_key() -> None:
    owner, subject, data_key = os.urandom(32), new_subject(), crypto.new_data_key()
    hubs = {os.urandom(32): crypto.SealKey.generate() for _ in range(4)}
    boxes = key_boxes(NET, owner, subject, data_key, {h: k.public for h, k in hubs.items()})
    assert len({b.epk for b in boxes}) == 1  # one ephemeral key per consent event
    assert len({b.box for b in boxes}) == 4
    for (hub, key), box in zip(hubs.items(), boxes, strict=True):
        assert open_box(NET, owner, subject, hub, key, box) == data_key
    shared = crypto.SealKey.generate().public
    with pytest.raises(PrivacyError, match="share one seal key"):
        key_boxes(NET, owner, subject, data_key, {os.urandom(32): shared, os.urandom(32): shared})
    twice = (
        boxes[0],
        KeyBox(hub=boxes[1].hub, key=boxes[0].key, epk=boxes[1].epk, box=boxes[1].box),
    )
    with pytest.raises(msgspec.ValidationError, match="same seal key"):
        msgspec.convert(
            {
                "subject": subject,
                "purposes": ["referral"],
                "recipients": [b.hub for b in twice],
                "keys": [msgspec.to_builtins(b) for b in twice],
            },
            ConsentRecorded,
        )


def test_a_low_order_recipient_key_is_refused() -> None:
    with pytest.raises((crypto.OpenFailed, ValueError)):
        crypto.seal(bytes(32), crypto.new_data_key(), b"c")


def test_sealed_details_are_bound_to_their_record() -> None:
    owner, author = os.urandom(32), os.urandom(32)
    data_key = crypto.new_data_key()
    subject = new_subject()
    aad = sealed_aad(NET, owner, subject, "enquiry.logged", author, "enq-1")
    sealed = seal_value(data_key, PERSON, aad)
    assert open_person(data_key, sealed, aad) == PERSON
    assert PERSON.name.encode() not in sealed.data
    moved = sealed_aad(NET, owner, subject, "enquiry.logged", author, "enq-2")
    with pytest.raises(PrivacyError, match="altered, or moved"):
        open_person(data_key, sealed, moved)
    with pytest.raises(PrivacyError):
        open_person(crypto.new_data_key(), sealed, aad)
    note_aad = sealed_aad(NET, owner, subject, "referral.requested", author, "ref-1")
    assert open_note(data_key, seal_value(data_key, Note(text="x"), note_aad), note_aad).text == "x"


def test_subject_pseudonyms_are_random() -> None:
    subjects = {new_subject() for _ in range(1000)}
    assert len(subjects) == 1000
    assert all(s.startswith("s-") and len(s) == 22 for s in subjects)


def test_a_key_box_names_its_recipient_and_opens_only_there() -> None:
    owner, bob_hub, eve_hub = os.urandom(32), os.urandom(32), os.urandom(32)
    bob, eve = crypto.SealKey.generate(), crypto.SealKey.generate()
    subject, data_key = new_subject(), crypto.new_data_key()
    (box,) = key_boxes(NET, owner, subject, data_key, {bob_hub: bob.public})
    assert box.hub == hub_display(bob_hub) and box.key == bob.public
    assert open_box(NET, owner, subject, bob_hub, bob, box) == data_key
    with pytest.raises(PrivacyError, match="another seal key"):
        open_box(NET, owner, subject, eve_hub, eve, box)
    # A box copied into another subject's consent, or re-labelled, does not open.
    with pytest.raises(PrivacyError, match="altered or moved"):
        open_box(NET, owner, new_subject(), bob_hub, bob, box)
    with pytest.raises(PrivacyError, match="altered or moved"):
        open_box(NET, os.urandom(32), subject, bob_hub, bob, box)
    assert box_aad(NET, owner, subject, bob_hub, bob.public) != box_aad(
        NET, owner, subject, eve_hub, bob.public
    )


# -- the keyring across hubs ----------------------------------------------------------------


async def copy(src: HubFolder, dst: HubFolder) -> None:
    """Give ``dst`` every record ``src`` holds, as gossip would."""
    async with await src.open_log(with_key=False) as source:
        records = [raw async for raw in source.export_records(None)]
    async with await dst.open_log(with_key=False) as target:
        await target.ingest(records)


async def hub(tmp_path: Path, name: str) -> HubFolder:
    folder = HubFolder.init(tmp_path / name, name=name, network=NET)
    with Keyring.open(folder) as ring:
        async with await folder.open_log() as log:
            assert not await publish_seal_key(log, ring)  # not registered: nobody asks yet
            await log.append("hub.registered", registered(name))
            assert await publish_seal_key(log, ring)  # an upgraded hub publishes its key
            assert not await publish_seal_key(log, ring)  # already published: nothing to do
    return folder


async def log_enquiry(a: HubFolder, consent: list[HubFolder]) -> tuple[str, bytes]:
    subject, data_key = new_subject(), crypto.new_data_key()
    with Keyring.open(a) as ring:
        ring.remember(a.hub, subject, data_key)
        async with await a.open_log() as log:
            keys = await seal_keys(log, [h.hub for h in consent])
            keys[a.hub] = ring.seal_key.public
            aad = sealed_aad(NET, a.hub, subject, "enquiry.logged", a.hub, "enq-1")
            enquiry = EnquiryLogged(
                enquiry="enq-1",
                subject=subject,
                channel="walk-in",
                needs=("housing",),
                area="DL1",
                person=seal_value(data_key, PERSON, aad),
            )
            consent_body = ConsentRecorded(
                subject=subject,
                purposes=("referral",),
                recipients=tuple(h.config.hub_id for h in consent),
                keys=key_boxes(NET, a.hub, subject, data_key, keys),
            )
            await log.append_many([("enquiry.logged", enquiry), ("consent.recorded", consent_body)])
    return subject, data_key


async def catch_up(folder: HubFolder) -> tuple[Keyring, KeyCatchUp]:
    ring = Keyring.open(folder)
    async with await folder.open_log() as log:
        done = await catch_up_keys(log, ring)
    return ring, done


async def test_consented_hubs_get_the_key_others_never_do(tmp_path: Path) -> None:
    a, b, c = [await hub(tmp_path, n) for n in "abc"]
    for x in (b, c):
        await copy(x, a)
    subject, data_key = await log_enquiry(a, [b])
    for x in (b, c):
        await copy(a, x)
    ring_b, done_b = await catch_up(b)
    ring_c, done_c = await catch_up(c)
    with ring_b, ring_c:
        assert ring_b.data_key(a.hub, subject) == data_key
        assert done_b.opened == 1
        with pytest.raises(PrivacyError, match="consent does not name this hub"):
            ring_c.data_key(a.hub, subject)
        assert done_c.opened == 0


async def test_a_recipient_without_a_published_key_is_named(tmp_path: Path) -> None:
    a = await hub(tmp_path, "a")
    stranger = HubFolder.init(tmp_path / "s", name="s", network=NET)
    async with await a.open_log() as log:
        with pytest.raises(PrivacyError, match=stranger.config.hub_id):
            await seal_keys(log, [stranger.hub])


async def test_erasure_destroys_every_copy_rotates_and_confirms(tmp_path: Path) -> None:
    a, b, c = [await hub(tmp_path, n) for n in "abc"]
    for x in (b, c):
        await copy(x, a)
    subject, data_key = await log_enquiry(a, [b])
    await copy(a, b)
    await copy(a, c)
    ring_b, _ = await catch_up(b)
    old_b_key = ring_b.seal_key.public
    ring_b.close()

    async with await a.open_log() as log:
        await log.append("subject.erased", SubjectErased(subject=subject, reason="asked"))
    for x in (a, b, c):
        if x is not a:
            await copy(a, x)
        ring, done = await catch_up(x)
        with ring:
            with pytest.raises(PrivacyError):
                ring.data_key(a.hub, subject)
            involved = x is not c
            assert done.rotated is involved
            assert done.confirmed == int(involved)
            if involved:
                assert ring.destroyed_at(a.hub, subject) is not None

    # B's old seal key is gone: the box in the signed log can no longer be opened.
    with Keyring.open(b) as ring_b:
        assert ring_b.seal_key.public != old_b_key
        with pytest.raises(PrivacyError, match="erased"):
            ring_b.data_key(a.hub, subject)
        with pytest.raises(PrivacyError):
            ring_b.remember(a.hub, subject, data_key)
    async with await b.open_log(with_key=False) as log:
        assert await published_seal_key(log, b.hub) != old_b_key
        confirms = await log.events(hub=b.hub, kind="subject.erasure_confirmed")
        assert [e.body for e in confirms] == [
            SubjectErasureConfirmed(owner=a.config.hub_id, subject=subject)
        ]
        consent = (await log.events(hub=a.hub, kind="consent.recorded"))[0].body
    assert isinstance(consent, ConsentRecorded)
    box_b = next(k for k in consent.keys if k.hub == b.config.hub_id)
    with Keyring.open(b) as ring_b, pytest.raises(PrivacyError):
        open_box(NET, a.hub, subject, b.hub, ring_b.seal_key, box_b)

    # Catching up again (a restart) neither re-opens nor re-confirms anything.
    ring, done = await catch_up(b)
    with ring:
        assert done.opened == done.confirmed == 0


async def test_withdrawn_consent_drops_other_hubs_keys(tmp_path: Path) -> None:
    from hubnode.events.pathway import ConsentWithdrawn

    a, b = [await hub(tmp_path, n) for n in "ab"]
    await copy(b, a)
    subject, _ = await log_enquiry(a, [b])
    async with await a.open_log() as log:
        await log.append("consent.withdrawn", ConsentWithdrawn(subject=subject))
    await copy(a, b)
    ring_b, done = await catch_up(b)
    ring_a, _ = await catch_up(a)
    with ring_a, ring_b:
        assert done.opened == 1 and done.dropped == 1
        with pytest.raises(PrivacyError):
            ring_b.data_key(a.hub, subject)
        assert ring_a.has_key(a.hub, subject)  # the point of access keeps its record


async def test_a_tampered_box_is_recorded_as_unreadable(tmp_path: Path) -> None:
    a, b = [await hub(tmp_path, n) for n in "ab"]
    await copy(b, a)
    subject, data_key = new_subject(), crypto.new_data_key()
    async with await a.open_log() as log:
        keys = await seal_keys(log, [b.hub])
        (box,) = key_boxes(NET, a.hub, subject, data_key, keys)
        bad = KeyBox(hub=box.hub, key=box.key, epk=box.epk, box=bytes(48))
        await log.append(
            "consent.recorded",
            ConsentRecorded(
                subject=subject, purposes=("referral",), recipients=(box.hub,), keys=(bad,)
            ),
        )
    await copy(a, b)
    ring_b, done = await catch_up(b)
    with ring_b:
        assert done.unreadable == 1
        with pytest.raises(PrivacyError, match="altered or moved"):
            ring_b.data_key(a.hub, subject)


def test_the_keyring_file_is_private(tmp_path: Path) -> None:
    folder = HubFolder.init(tmp_path / "a", name="a", network=NET)
    with Keyring.open(folder) as ring:
        first = ring.seal_key.public
    with Keyring.open(folder) as ring:
        assert ring.seal_key.public == first
    mode = stat.S_IMODE((folder.path / KEYRING_FILE).stat().st_mode)
    assert mode == 0o600


async def test_two_processes_catching_up_at_once_publish_and_confirm_once(tmp_path: Path) -> None:
    a, b = [await hub(tmp_path, n) for n in "ab"]
    await copy(b, a)
    subject, _ = await log_enquiry(a, [b])
    async with await a.open_log() as log:
        await log.append("subject.erased", SubjectErased(subject=subject, reason="asked"))
    await copy(a, b)

    # Two keyrings and two log handles on B's folder: what a node and a command hold.
    rings = [Keyring.open(b), Keyring.open(b)]
    logs = [await b.open_log(), await b.open_log()]
    try:
        await asyncio.gather(
            *(catch_up_keys(log, ring) for log, ring in zip(logs, rings, strict=True))
        )
    finally:
        for ring in rings:
            ring.close()
        for log in logs:
            await log.close()
    async with await b.open_log(with_key=False) as log:
        confirms = await log.events(hub=b.hub, kind="subject.erasure_confirmed")
        updates = await log.events(hub=b.hub, kind="hub.profile_updated")
    assert len(confirms) == 1
    assert len(updates) == 2  # the key published on upgrade, then once after the rotation
