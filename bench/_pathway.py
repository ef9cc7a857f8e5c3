"""The data of bench/pathway.py: people, recipient hubs, a point of access, the bodies of
one referral (sealed, or the same sizes in clear), and opening them at a recipient."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec
from _common import CpuSample, registered_body
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from hubnode import crypto
from hubnode.config import HubFolder
from hubnode.events.directory import CapacityReported
from hubnode.events.ids import hub_display
from hubnode.events.kinds import KINDS, Body
from hubnode.events.pathway import (
    CHANNELS,
    ConsentRecorded,
    EnquiryLogged,
    KeyBox,
    ReferralRequested,
    Sealed,
)
from hubnode.privacy.keyring import Keyring, SealKeyBook, publish_seal_key, seal_keys
from hubnode.privacy.seal import (
    Note,
    Person,
    key_boxes,
    new_subject,
    open_box,
    open_person,
    seal_value,
    sealed_aad,
)
from hubnode.store.log import EventLog

NET: Final = "bench-net"
RECIPIENTS: Final = 3
TAG: Final = bytes(crypto.TAG_SIZE)
Items = list[tuple[str, Body]]
Keys = dict[bytes, bytes]
Who = tuple[Person, Note]


class Meter:
    """Wall and CPU time of this process (all threads), to the nanosecond.

    ``_common.CpuMeter`` reads ``os.times()``, which moves in 10 ms ticks: too coarse
    for the per-referral steps timed here.
    """

    def __enter__(self) -> Meter:
        self._w0, self._c0 = time.monotonic(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.start, self.end = self._w0, time.monotonic()
        self.sample = CpuSample(self.end - self._w0, time.process_time() - self._c0)


# -- people ------------------------------------------------------------------------------

_GIVEN = ("Zoë", "Mohammed", "Aleksandra", "Siobhán", "Oluwaseun", "Jürgen", "Priya", "Ewan")
_FAMILY = ("Ångström-Nakamura", "Okonkwo", "Kowalczyk", "Ó Súilleabháin", "Patel", "Thompson")
_STREETS = ("Northgate", "Skinnergate", "Yarm Road", "Victoria Road", "Albert Hill", "Cockerton")
_NEEDS = ("housing", "debt", "benefits", "mental-health", "food", "carers", "employment")
_AREAS = ("DL1", "DL2", "DL3", "TS1", "TS5", "DH1")


def people(n: int) -> list[Who]:
    """``n`` (person, referral note) pairs, varied, from a fixed seed."""
    rng = random.Random(20261126)
    out = []
    for i in range(n):
        given, family = rng.choice(_GIVEN), rng.choice(_FAMILY)
        person = Person(
            name=f"{given} {family}",
            phone=f"+44 7700 9{rng.randrange(10**5):05d}",
            email=f"{given.lower()}.{i}@example.org",
            dob=dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(30_000)),
            address=f"{rng.randrange(1, 200)} {rng.choice(_STREETS)}, Darlington "
            f"{rng.choice(_AREAS)} 1AA",
            notes=rng.choice(("", "prefers phone calls after 4pm", "needs a BSL interpreter")),
        )
        note = Note(
            text=f"Referred after a {rng.choice(CHANNELS)} enquiry: rent arrears of "
            f"£{rng.randrange(200, 4000)}, landlord has served notice; {given} has two "
            "children at home and asks to be contacted by phone, not by letter."
        )
        out.append((person, note))
    return out


# -- the hubs ----------------------------------------------------------------------------


@dataclass
class Network:
    """The recipient hubs, and their records as a new point of access receives them."""

    recipients: list[HubFolder] = field(default_factory=list)
    records: list[bytes] = field(default_factory=list)


async def build_network(folder: Path, history: int) -> Network:
    net = Network()
    for i in range(RECIPIENTS):
        hub = HubFolder.init(folder / f"recipient-{i}", name=f"recipient-{i}", network=NET)
        async with await hub.open_log() as log:
            await log.append("hub.registered", registered_body(i))
            statuses = ("accepting", "waitlist", "no-capacity")
            filler = [
                CapacityReported(
                    service=f"svc-{n % 40}",
                    status=statuses[n % 3],
                    as_of=dt.date(2026, 1, 1) + dt.timedelta(days=n % 300),
                )
                for n in range(history)
            ]
            if filler:
                await log.append_many([("capacity.reported", b) for b in filler])
            with Keyring.open(hub) as ring:
                assert await publish_seal_key(log, ring)
            net.records += [raw async for raw in log.export_records(None)]
        net.recipients.append(hub)
    return net


@dataclass
class PointOfAccess:
    """A point-of-access hub holding the recipients' records: a fresh one per timed run."""

    folder: HubFolder
    recipients: list[bytes]
    ring: Keyring

    @property
    def hub(self) -> bytes:
        return self.folder.hub

    async def keys(self, log: EventLog, *, cached: bool = True) -> Keys:
        """The recipients' seal keys and this hub's own, looked up as ``Casework`` does:
        in the log's own book, kept between lookups, or (not ``cached``) in a fresh one, as
        a one-shot CLI command does."""
        keys = await seal_keys(log, self.recipients, None if cached else SealKeyBook())
        keys[self.hub] = self.ring.seal_key.public
        return keys


async def new_point_of_access(folder: Path, net: Network) -> PointOfAccess:
    poa = HubFolder.init(folder, name="point-of-access", network=NET)
    ring = Keyring.open(poa)
    async with await poa.open_log() as log:
        await log.append("hub.registered", registered_body(9))
        await publish_seal_key(log, ring)
        outcomes = await log.ingest(net.records)
        assert all(o.status == "accepted" for o in outcomes), "recipient records refused"
    return PointOfAccess(poa, [r.hub for r in net.recipients], ring)


# -- one referral ------------------------------------------------------------------------

_plain: Final = msgspec.msgpack.Encoder()


def referral(
    poa: PointOfAccess, i: int, keys: Keys, who: Who, clear: bool = False
) -> tuple[Items, str, bytes]:
    """The three bodies of referral ``i``, and its subject and data key.

    ``clear`` gives the same kinds and body sizes byte for byte with nothing sealed.
    """
    me, (person, note) = poa.hub, who
    subject, data_key = new_subject(), crypto.new_data_key()
    enquiry_id, referral_id = f"enq-{i}", f"ref-{i}"
    recipients = tuple(hub_display(h) for h in poa.recipients)

    def sealed(value: Person | Note, kind: str, record: str) -> Sealed:
        if clear:
            return Sealed(nonce=bytes(crypto.NONCE_SIZE), data=_plain.encode(value) + TAG)
        return seal_value(data_key, value, sealed_aad(NET, me, subject, kind, me, record))

    if clear:
        boxes = tuple(
            KeyBox(hub=hub_display(h), key=k, epk=k, box=data_key + TAG) for h, k in keys.items()
        )
    else:
        boxes = key_boxes(NET, me, subject, data_key, keys)
    enquiry = EnquiryLogged(
        enquiry=enquiry_id,
        subject=subject,
        channel=CHANNELS[i % 4],
        needs=(_NEEDS[i % 7], _NEEDS[(i + 3) % 7]),
        area=_AREAS[i % 6],
        person=sealed(person, "enquiry.logged", enquiry_id),
    )
    consent = ConsentRecorded(
        subject=subject, purposes=("referral", "follow-up"), recipients=recipients, keys=boxes
    )
    to = recipients[i % RECIPIENTS]
    note_ = sealed(note, "referral.requested", referral_id)
    items: Items = [
        ("enquiry.logged", enquiry),
        ("consent.recorded", consent),
        (
            "referral.requested",
            ReferralRequested(referral=referral_id, subject=subject, to_hub=to, note=note_),
        ),
    ]
    return items, subject, data_key


def body_bytes(poa: PointOfAccess, keys: Keys, who: list[Who]) -> int:
    """Body bytes per referral; sealed and clear bodies must match byte for byte."""
    total = 0
    for i, w in enumerate(who):
        sealed = [len(KINDS.encode_body(k, b)) for k, b in referral(poa, i, keys, w)[0]]
        clear = [len(KINDS.encode_body(k, b)) for k, b in referral(poa, i, keys, w, True)[0]]
        assert sealed == clear, f"referral {i}: sealed body sizes {sealed} != clear {clear}"
        total += sum(sealed)
    return total // len(who)


# -- opening -----------------------------------------------------------------------------


async def read_back(log_path: Path) -> tuple[bytes, list[tuple[EnquiryLogged, ConsentRecorded]]]:
    """The owner and each subject's enquiry and consent, as a recipient's log holds them."""
    enquiries: dict[str, EnquiryLogged] = {}
    consents: dict[str, ConsentRecorded] = {}
    owner, after = b"", 0
    async with await EventLog.open(log_path, net=NET, create=False) as log:
        kinds = ("enquiry.logged", "consent.recorded")
        while page := await log.events(after_pos=after, kind=kinds, limit=1000):
            for ev in page:
                owner = ev.hub
                if isinstance(ev.body, EnquiryLogged):
                    enquiries[ev.body.subject] = ev.body
                elif isinstance(ev.body, ConsentRecorded):
                    consents[ev.body.subject] = ev.body
            after = page[-1].pos
    return owner, [(enquiries[s], consents[s]) for s in enquiries]


def measure_opens(
    log_path: Path, recipient: HubFolder, who: list[Who]
) -> tuple[CpuSample, CpuSample, CpuSample]:
    """Open every referral of a run at ``recipient``; then the raw references, same data."""
    owner, pairs = asyncio.run(read_back(log_path))
    assert len(pairs) == len(who), f"read back {len(pairs)} of {len(who)}"
    with Keyring.open(recipient) as ring:
        key = ring.seal_key
    me, mine = recipient.hub, recipient.config.hub_id
    opened: list[tuple[bytes, Person]] = []
    with Meter() as opening:
        for enquiry, consent in pairs:
            box = next(k for k in consent.keys if k.hub == mine)
            data_key = open_box(NET, owner, enquiry.subject, me, key, box)
            aad = sealed_aad(NET, owner, enquiry.subject, "enquiry.logged", owner, enquiry.enquiry)
            opened.append((data_key, open_person(data_key, enquiry.person, aad)))
    assert sorted(p.email for _, p in opened) == sorted(p.email for p, _ in who)

    ciphertexts = [
        (dk, e.person, sealed_aad(NET, owner, e.subject, "enquiry.logged", owner, e.enquiry))
        for (dk, _), (e, _) in zip(opened, pairs, strict=True)
    ]
    with Meter() as decrypting:
        for dk, sealed, aad in ciphertexts:
            ChaCha20Poly1305(dk).decrypt(sealed.nonce, sealed.data, aad)
    raw_key = X25519PrivateKey.from_private_bytes(key.private_bytes())
    epks = [bytes(next(k for k in c.keys if k.hub == mine).epk) for _, c in pairs]
    with Meter() as exchanging:
        for epk in epks:
            raw_key.exchange(X25519PublicKey.from_public_bytes(epk))
    return opening.sample, decrypting.sample, exchanging.sample
