"""Issue 12 item 9: cheap bloat. Bodies are bounded per kind, unknown body fields are held
to a small allowance, and a per-hub storage budget per day alerts an admin.

Before the fix a trusted hub could sign bodies of up to the record limit (256 KiB) made of
keys no kind has, and every node stored them. Now each kind has a body limit (checked
before the body is decoded, at ingest and before signing an append), a body may carry at
most 8 unknown fields in at most 1 KiB (room for the optional fields of a newer version),
and the bytes each hub's records take are counted per day so an admin sees a hub sending
too much — while everything valid is still stored.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import re._parser as sre  # the stdlib's regex parser: how long a pattern's match can be
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from typer.testing import CliRunner

from hubnode import KINDS, EventLog, InvalidEvent, KindRegistry, Reason, SigningKey, Status, crypto
from hubnode.cli import app
from hubnode.config import HubFolder
from hubnode.events.directory import Contact, CostOption, Location, ServicePublished, WeeklyHours
from hubnode.events.ids import hub_display
from hubnode.events.network import HubRegistered
from hubnode.events.pathway import MAX_SEALED, ConsentRecorded, EnquiryLogged, ReferralRequested
from hubnode.events.tenders import Document, Lot, Period, TenderShared, Value
from hubnode.node import Node, read_status
from hubnode.privacy.seal import Note, Person, key_boxes, new_subject, seal_value
from hubnode.protocol.transport import Counters
from hubnode.testing import ChainWriter

from .conftest import NET, registered

PROTOCOL_MD = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"
GOOD = {"name": "Hub", "roles": ["gateway"], "area": "Darlington", "contact": "a@b.org"}
BODY_TOO_LARGE = "body_too_large"  # compared as a string: Reason is a StrEnum
CAPPED = {"service.published", "service.updated", "tender.shared", "tender.updated"}
"""Kinds whose fields together allow more than their limit (docs/protocol.md says what the
limit holds); every other kind's limit holds its largest valid body."""


def trusting(*keys: SigningKey) -> Any:
    hubs = {k.public for k in keys}
    return lambda hub: hub in hubs


async def ingest_one(log: EventLog, raw: bytes, trusted: Any = None) -> Any:
    (outcome,) = await log.ingest([raw], trusted=trusted)
    return outcome


# -- refused at ingest ------------------------------------------------------------------------


async def test_a_trusted_hubs_body_bloated_with_unknown_keys_is_refused_and_counted(
    log: EventLog,
) -> None:
    writer = ChainWriter(NET)
    bloat = {f"extra{i}": "x" * 4096 for i in range(50)}  # 200 KiB no kind has
    raw = writer.next("hub.registered", msgspec.msgpack.encode({**GOOD, **bloat}))
    assert len(raw) > 200 * 1024
    outcome = await ingest_one(log, raw, trusting(writer.key))
    assert (outcome.status, outcome.reason) == (Status.REJECTED, BODY_TOO_LARGE), outcome
    assert "hub.registered" in outcome.detail
    assert await log.count() == 0
    counters = Counters()
    counters.count([outcome])
    assert counters.rejected == {BODY_TOO_LARGE: 1}


async def test_unknown_content_within_the_size_limit_is_refused_past_its_allowance(
    log: EventLog,
) -> None:
    """1 KiB of unknown content is allowed, one byte more is not, however small the body."""
    # One unknown entry: key "x" (2 bytes) + a bin of n bytes (3-byte header): n + 5 bytes.
    writer = ChainWriter(NET)
    at = writer.next("hub.registered", msgspec.msgpack.encode({**GOOD, "x": bytes(1019)}))
    assert (await ingest_one(log, at)).status is Status.ACCEPTED
    over = writer.next("hub.registered", msgspec.msgpack.encode({**GOOD, "x": bytes(1020)}))
    assert len(over) < KINDS.spec("hub.registered").max_body
    outcome = await ingest_one(log, over)
    assert (outcome.status, outcome.reason) == (Status.REJECTED, BODY_TOO_LARGE), outcome
    assert "1,025 bytes" in outcome.detail


async def test_more_than_eight_unknown_fields_are_refused(log: EventLog) -> None:
    writer = ChainWriter(NET)
    eight = {f"f{i}": i for i in range(8)}
    raw = writer.next("hub.registered", msgspec.msgpack.encode({**GOOD, **eight}))
    assert (await ingest_one(log, raw)).status is Status.ACCEPTED
    nine = {f"f{i}": i for i in range(9)}
    outcome = await ingest_one(
        log, writer.next("hub.registered", msgspec.msgpack.encode({**GOOD, **nine}))
    )
    assert (outcome.status, outcome.reason) == (Status.REJECTED, BODY_TOO_LARGE), outcome
    assert "9 fields" in outcome.detail


async def test_a_newer_versions_optional_fields_are_still_accepted(log: EventLog) -> None:
    """Body evolution (docs/protocol.md): a newer hub adds optional fields; we ignore them."""
    writer = ChainWriter(NET)
    newer = {
        **GOOD,
        "website": "https://hub.example.org/about-us",
        "languages": ["en", "cy", "pl"],
        "opened": "2026-01-01",
    }
    raw = writer.next("hub.registered", msgspec.msgpack.encode(newer))
    assert (await ingest_one(log, raw)).status is Status.ACCEPTED
    (event,) = await log.events()
    assert event.body == KINDS.decode_body("hub.registered", msgspec.msgpack.encode(GOOD))


async def test_a_repeated_key_cannot_hide_content(log: EventLog) -> None:
    """The decoder keeps a repeated key's last value: the earlier ones count as unknown."""
    writer = ChainWriter(NET)
    enc = msgspec.msgpack.encode
    hub = hub_display(SigningKey.generate().public)
    hidden = (enc("note") + enc("x" * 2000)) * 5  # valid notes, each replaced by the next
    body = b"\x87" + enc("hub") + enc(hub) + hidden + enc("note") + enc("hello")
    assert len(body) < KINDS.spec("hub.admitted").max_body
    assert KINDS.decode_body("hub.admitted", body).note == "hello"  # type: ignore[attr-defined]
    outcome = await ingest_one(log, writer.next("hub.admitted", body))
    assert (outcome.status, outcome.reason) == (Status.REJECTED, BODY_TOO_LARGE), outcome
    assert "a repeated key" in outcome.detail


@pytest.mark.parametrize("header", [b"\x85", b"\xde\x00\x05", b"\xdf\x00\x00\x00\x05"])
def test_unknown_content_is_measured_whatever_the_map_header_width(header: bytes) -> None:
    """Bodies need not be canonical: a wide map header changes nothing but its own size."""
    enc = msgspec.msgpack.encode
    known = enc(GOOD)[1:]
    KINDS.check_body("hub.registered", header + known + enc("x") + enc(bytes(1019)))
    with pytest.raises(InvalidEvent) as info:
        KINDS.check_body("hub.registered", header + known + enc("x") + enc(bytes(1020)))
    assert info.value.reason == BODY_TOO_LARGE


def test_a_kinds_limit_may_not_exceed_the_generic_one() -> None:
    from hubnode.events.kinds import GENERIC_MAX_BODY

    registry = KindRegistry()
    with pytest.raises(ValueError, match="max_body"):
        registry.register("test.big", HubRegistered, max_body=GENERIC_MAX_BODY + 1)
    registry.register("test.small", HubRegistered, max_body=100)
    with pytest.raises(InvalidEvent) as info:
        registry.check_body("test.small", msgspec.msgpack.encode({**GOOD, "name": "x" * 100}))
    assert info.value.reason == BODY_TOO_LARGE


async def test_an_unknown_kind_over_the_generic_limit_is_refused_before_its_kind_is_looked_up(
    log: EventLog,
) -> None:
    from hubnode.events.kinds import GENERIC_MAX_BODY

    writer = ChainWriter(NET)
    big = msgspec.msgpack.encode({"text": "x" * GENERIC_MAX_BODY})
    outcome = await ingest_one(log, writer.next("hub.closed", big))
    assert (outcome.status, outcome.reason) == (Status.REJECTED, BODY_TOO_LARGE), outcome
    assert "hub.closed" in outcome.detail
    small = ChainWriter(NET).next("hub.closed", msgspec.msgpack.encode({"text": "x"}))
    assert (await ingest_one(log, small)).reason is Reason.UNKNOWN_KIND
    assert await log.count() == 0


def service_of_exactly(size: int) -> ServicePublished:
    """A valid service whose body is ``size`` bytes: long texts in 4-byte characters, the
    description padded to the byte."""
    wide = "\N{GRINNING FACE}"  # 4 bytes in UTF-8, one character
    base = dict(
        id="debt-advice",
        organisation="Care Navigators North",
        organisation_description=wide * 5000,
        name="Debt advice",
        categories=("debt", "advice"),
        eligibility=wide * 5000,
        costs=tuple(
            CostOption(
                kind="fee", amount=10.0, currency="GBP", option=wide * 200, description=wide * 200
            )
            for _ in range(10)
        ),
    )

    def length(description: str) -> int:
        body = ServicePublished(description=description, **base)  # type: ignore[arg-type]
        return len(KINDS.encode_body("service.published", body))

    description = "a" * 300  # past 255 bytes: its header width stays the same from here
    description += "a" * (size - length(description))
    description = wide * (len(description) // 4) + "a" * (len(description) % 4)
    service = ServicePublished(description=description, **base)  # type: ignore[arg-type]
    assert length(description) == size
    return service


async def test_a_body_at_its_kinds_limit_is_accepted_and_one_byte_more_is_refused(
    log: EventLog,
) -> None:
    limit = KINDS.spec("service.published").max_body
    writer = ChainWriter(NET)
    at = service_of_exactly(limit)
    assert (await ingest_one(log, writer.next("service.published", at))).status is (Status.ACCEPTED)
    over = service_of_exactly(limit + 1)
    outcome = await ingest_one(log, writer.next("service.published", over))
    assert (outcome.status, outcome.reason) == (Status.REJECTED, BODY_TOO_LARGE), outcome
    assert f"{limit + 1:,} bytes" in outcome.detail and f"{limit:,}" in outcome.detail


async def test_append_refuses_a_body_over_its_kinds_limit_before_signing(log: EventLog) -> None:
    limit = KINDS.spec("service.published").max_body
    with pytest.raises(InvalidEvent) as info:
        await log.append("service.published", service_of_exactly(limit + 1))
    assert info.value.reason == BODY_TOO_LARGE
    assert "shorten" in info.value.detail
    assert await log.count() == 0
    await log.append("service.published", service_of_exactly(limit))
    assert await log.count() == 1


async def test_an_oversized_twin_still_proves_a_fork(log: EventLog) -> None:
    """The size is part of the body step, after the chain link: evidence is kept."""
    writer = ChainWriter(NET)
    first = writer.next("hub.registered", registered())
    twin = writer.fork()
    twin.seq, twin.head = 0, None
    bloated = twin.next("hub.registered", msgspec.msgpack.encode({**GOOD, "x": "y" * 9000}))
    assert (await ingest_one(log, first)).status is Status.ACCEPTED
    assert (await ingest_one(log, bloated)).status is Status.FORK


# -- every kind's limit holds its largest real body -------------------------------------------


def _char_bytes(items: Any) -> int:
    """Most UTF-8 bytes one character of a regex set ``[...]`` can take."""
    widest = 1
    for op, av in items:
        name = str(op)
        if name in ("NEGATE", "CATEGORY"):
            return 4  # negated sets and \d \s \w match non-ASCII characters too
        if name == "LITERAL":
            widest = max(widest, len(chr(av).encode()))
        elif name == "RANGE":
            widest = max(widest, len(chr(av[1]).encode()))
        else:
            raise TypeError(f"regex set item {name}")
    return widest


def _pattern_bytes(parsed: Any) -> tuple[float, int]:
    """(most UTF-8 bytes a match can take, most bytes one of its characters can take)."""
    total, widest = 0.0, 1
    for op, av in parsed:
        name = str(op)
        if name == "LITERAL":
            n, w = len(chr(av).encode()), len(chr(av).encode())
        elif name in ("NOT_LITERAL", "ANY"):
            n, w = 4, 4
        elif name == "IN":
            n = w = _char_bytes(av)
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            _, hi, sub = av
            each, w = _pattern_bytes(sub)
            n = math.inf if hi == sre.MAXREPEAT else hi * each  # type: ignore[assignment]
        elif name == "SUBPATTERN":
            n, w = _pattern_bytes(av[-1])  # type: ignore[assignment]
        elif name == "BRANCH":
            found = [_pattern_bytes(b) for b in av[1]]
            n, w = max(f[0] for f in found), max(f[1] for f in found)  # type: ignore[assignment]
        elif name in ("AT", "ASSERT_NOT"):  # match no character (a lookahead only refuses)
            continue
        else:
            raise TypeError(f"regex op {name}")
        total, widest = total + n, max(widest, w)
    return total, widest


def _header(n: float, sizes: tuple[tuple[float, int], ...]) -> int:
    return next(size for most, size in sizes if n <= most)


STR = ((31, 1), (255, 2), (65535, 3), (math.inf, 5))
BIN = ((255, 2), (65535, 3), (math.inf, 5))
ARRAY = ((15, 1), (65535, 3), (math.inf, 5))  # map headers have the same widths


def _int_bytes(v: int) -> int:
    if v >= 0:
        return _header(v, ((127, 1), (255, 2), (65535, 3), (2**32 - 1, 5), (math.inf, 9)))
    return _header(-v, ((32, 1), (128, 2), (2**15, 3), (2**31, 5), (math.inf, 9)))


def largest(t: Any) -> float:
    """Most bytes a valid value of type info ``t`` takes, canonically encoded."""
    if isinstance(t, mi.Metadata):
        return largest(t.type)
    if isinstance(t, mi.StrType):
        chars = math.inf if t.max_length is None else t.max_length
        n = chars * 4
        if t.pattern is not None:
            most, widest = _pattern_bytes(sre.parse(t.pattern))
            n = min(most, chars * widest)
        return _header(n, STR) + n
    if isinstance(t, mi.BytesType):
        n = math.inf if t.max_length is None else t.max_length
        return _header(n, BIN) + n
    if isinstance(t, mi.IntType):
        lo = t.ge if t.ge is not None else t.gt + 1 if t.gt is not None else -(2**63)
        hi = t.le if t.le is not None else t.lt - 1 if t.lt is not None else 2**64 - 1
        return max(_int_bytes(lo), _int_bytes(hi))
    if isinstance(t, mi.FloatType):
        return 9
    if isinstance(t, mi.BoolType | mi.NoneType):
        return 1
    if isinstance(t, mi.DateType):
        return 11  # "YYYY-MM-DD"
    if isinstance(t, mi.LiteralType):
        return max(_header(len(v), STR) + len(v) for v in t.values)
    if isinstance(t, mi.UnionType):
        return max(largest(x) for x in t.types)
    if isinstance(t, mi.VarTupleType | mi.ListType):
        n = math.inf if t.max_length is None else t.max_length
        return _header(n, ARRAY) + n * largest(t.item_type)
    if isinstance(t, mi.StructType):
        return _header(len(t.fields), ARRAY) + sum(
            _header(len(f.encode_name), STR) + len(f.encode_name) + largest(f.type)
            for f in t.fields
        )
    raise TypeError(f"no size bound for {t!r}")


def test_the_size_bound_is_the_largest_body_for_a_simple_kind() -> None:
    """The bound above is exact where it can be: check it against a real largest body."""
    from hubnode.events.pathway import ConsentWithdrawn

    body = ConsentWithdrawn(
        subject=new_subject(), reason="\N{GRINNING FACE}" * 300, staff="st-" + "a" * 16
    )
    assert len(KINDS.encode_body("consent.withdrawn", body)) == largest(
        mi.type_info(ConsentWithdrawn)
    )


@pytest.mark.parametrize("kind", sorted(s.kind for s in KINDS if s.kind not in CAPPED))
def test_a_kinds_limit_holds_its_largest_valid_body_and_the_unknown_allowance(kind: str) -> None:
    from hubnode.events.kinds import UNKNOWN_BYTES_MAX

    spec = KINDS.spec(kind)
    most = largest(mi.type_info(spec.body))
    assert most + UNKNOWN_BYTES_MAX <= spec.max_body, (
        f"{kind}: its largest valid body takes {most:,} bytes; with the {UNKNOWN_BYTES_MAX} "
        f"bytes allowed for unknown fields that is over its limit of {spec.max_body:,}: raise "
        "the limit in its register() call (and in docs/protocol.md) or list it in CAPPED"
    )


def test_the_generic_limit_holds_every_known_kinds_limit() -> None:
    from hubnode.events.kinds import GENERIC_MAX_BODY

    assert max(s.max_body for s in KINDS) <= GENERIC_MAX_BODY


def plain(n: int, i: int = 0) -> str:
    return (f"{i:04d}" + "x" * n)[:n]


def test_a_service_with_every_field_at_its_longest_in_plain_letters_fits() -> None:
    service = ServicePublished(
        id="s" * 64,
        organisation=plain(200),
        organisation_description=plain(5000),
        name=plain(200),
        description=plain(5000),
        categories=tuple(f"c{i}-" + "x" * 36 for i in range(10)),
        eligibility=plain(5000),
        costs=tuple(
            CostOption(
                kind="fee",
                amount=999_999.5,
                currency="GBP",
                option=plain(200, i),
                description=plain(200, i),
            )
            for i in range(20)
        ),
        languages=tuple(f"en-{i:02d}abcdef-GB" for i in range(30)),
        schedules=tuple(
            WeeklyHours(
                days=("MO", "TU", "WE", "TH", "FR", "SA", "SU"),
                opens="09:00",
                closes="17:30",
                note=plain(200, i),
            )
            for i in range(20)
        ),
        areas=tuple(f"{p}{n}" for p in ("DL", "TS", "NE", "SR", "DH") for n in range(40)),
        location=Location(
            name=plain(200),
            address=tuple(plain(200, i) for i in range(4)),
            town=plain(200),
            region=plain(200),
            postcode="DL1 1AA" + " " * 9,
        ),
        contacts=tuple(
            Contact(
                label=plain(200, i),
                phone="+44 1325 000 000 000 0000",
                email=plain(60, i) + "@" + "e" * 189 + ".org",
            )
            for i in range(10)
        ),
        url="https://" + "u" * 2000,
        email="info@" + "e" * 245 + ".org",
    )
    data = KINDS.encode_body("service.published", service)
    KINDS.check_body("service.published", data)
    assert len(data) <= KINDS.spec("service.published").max_body


def test_a_tender_with_many_lots_and_documents_fits() -> None:
    """100 lots with 200-character titles and values, 50 documents with 300-character links."""
    tender = TenderShared(
        ocid="ocds-abc123-" + "t" * 100,
        title=plain(200),
        description=plain(5000),
        buyer=plain(200),
        value=Value(amount=1e12, currency="GBP"),
        period=Period(start="2026-01-01", end="2026-12-31"),  # type: ignore[arg-type]
        lots=tuple(
            Lot(
                id=f"lot-{i:03d}" + "x" * 32,
                title=plain(200, i),
                value=Value(amount=1e9, currency="GBP"),
            )
            for i in range(100)
        ),
        documents=tuple(
            Document(title=plain(200, i), url=f"https://tenders.example.org/{i:03d}/" + "d" * 267)
            for i in range(50)
        ),
        categories=tuple(f"cat-{i:02d}" + "x" * 33 for i in range(20)),
        area=tuple(f"DL{i}" for i in range(100)),
    )
    data = KINDS.encode_body("tender.shared", tender)
    KINDS.check_body("tender.shared", data)
    assert len(data) <= KINDS.spec("tender.shared").max_body


WIDE = "\N{GRINNING FACE}"  # one character, 4 bytes in UTF-8


def largest_person() -> Person:
    """A person whose sealed plaintext is exactly the most that may be sealed."""
    base = Person(name=plain(200), phone=plain(200), email=plain(200), address=plain(500))
    room = MAX_SEALED - len(msgspec.msgpack.encode(base)) - 2  # notes: a 3-byte str header
    person = msgspec.structs.replace(base, notes=WIDE * (room // 4) + "n" * (room % 4))
    assert len(msgspec.msgpack.encode(person)) == MAX_SEALED
    return person


def test_the_largest_real_sealed_bodies_fit_their_limits() -> None:
    """A person sealed at the most a seal takes, and a consent sealing to 50 hubs."""
    owner, subject, data_key = os.urandom(32), new_subject(), crypto.new_data_key()
    person = seal_value(data_key, largest_person(), b"aad")
    assert len(person.data) == MAX_SEALED + 16
    enquiry = EnquiryLogged(
        enquiry="e" * 64,
        subject=subject,
        channel="walk-in",
        needs=tuple(f"need-{i}" for i in range(10)),
        urgency="routine",
        area="DL14",
        person=person,
        staff="st-" + "a" * 16,
    )
    note = seal_value(data_key, Note(text=WIDE * 4000), b"aad")  # the longest note
    referral = ReferralRequested(
        referral="r" * 64,
        subject=subject,
        category="debt",
        urgency="urgent",
        note=note,
        staff="st-" + "a" * 16,
    )
    recipients = {os.urandom(32): crypto.SealKey.generate().public for _ in range(50)}
    boxes = key_boxes(
        NET, owner, subject, data_key, {**recipients, owner: crypto.SealKey.generate().public}
    )
    consent = ConsentRecorded(
        subject=subject,
        purposes=("referral", "follow-up", "advocacy"),
        recipients=tuple(hub_display(h) for h in recipients),
        keys=boxes,
        staff="st-" + "a" * 16,
    )
    for kind, body in (
        ("enquiry.logged", enquiry),
        ("referral.requested", referral),
        ("consent.recorded", consent),
    ):
        data = KINDS.encode_body(kind, body)
        KINDS.check_body(kind, data)
        assert len(data) <= KINDS.spec(kind).max_body, kind


def test_the_limits_table_in_protocol_md_matches_the_registry() -> None:
    from hubnode.events.kinds import GENERIC_MAX_BODY

    text = PROTOCOL_MD.read_text()
    section = text[text.index("### Body limits") :]
    section = section[: section.index("\n#", 1)]
    rows = dict(re.findall(r"^\| `([a-z_.]+)` \| ([0-9 ]+) \|", section, re.M))
    documented = {kind: int(size.replace(" ", "")) for kind, size in rows.items()}
    expected = {s.kind: s.max_body for s in KINDS}
    shown = "\n".join(f"| `{k}` | {v:,} |".replace(",", " ") for k, v in sorted(expected.items()))
    assert documented == expected, f"docs/protocol.md § Body limits should list:\n{shown}"
    assert f"{GENERIC_MAX_BODY:,}".replace(",", " ") in section
    listed = msgspec.json.decode(CliRunner().invoke(app, ["log", "kinds", "--json"]).stdout)
    assert {row["kind"]: row["max_body"] for row in listed} == expected


# -- the storage budget -----------------------------------------------------------------------


def today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


async def test_stored_bytes_are_counted_per_hub_and_day_of_receipt(log: EventLog) -> None:
    a, b = ChainWriter(NET), ChainWriter(NET)
    a1, a2, a3 = (a.next("hub.registered", registered(f"A {i}")) for i in range(3))
    b1 = b.next("hub.registered", registered("B"))
    bad = ChainWriter(NET).next("hub.closed", msgspec.msgpack.encode({"x": 1}))
    day = today()
    outcomes = await log.ingest([a1, a3, b1, bad, a1])  # a3 waits for a2; a1 twice
    assert [o.status for o in outcomes] == [
        Status.ACCEPTED,
        Status.PENDING,
        Status.ACCEPTED,
        Status.REJECTED,
        Status.DUPLICATE,
    ]
    await log.append("hub.registered", registered("own"))  # not received: not counted
    stored = await ingest_one(log, a2)
    assert (stored.status, stored.released) == (Status.ACCEPTED, 1)  # a3 stored with it
    totals: dict[bytes, list[int]] = {}
    for row in await log.received(since=day):
        assert row.day in (day, today())  # a run across midnight UTC counts on two days
        counted = totals.setdefault(row.hub, [0, 0])
        counted[0] += row.records
        counted[1] += row.bytes
    assert totals == {a.hub: [3, len(a1) + len(a2) + len(a3)], b.hub: [1, len(b1)]}


async def test_over_budget_lists_only_hubs_past_the_budget(log: EventLog) -> None:
    a, b = ChainWriter(NET), ChainWriter(NET)
    big = [a.next("hub.registered", registered("A" * 100)) for _ in range(20)]
    small = [b.next("hub.registered", registered("B"))]
    await log.ingest(big + small)
    budget = sum(map(len, big)) - 1
    over = await log.over_budget(budget, since=today())
    assert [(o.hub, o.records, o.bytes) for o in over] == [(a.hub, 20, budget + 1)]
    assert await log.over_budget(budget + 1, since=today()) == []


@pytest.fixture
def budget_hub(tmp_path: Path) -> Iterator[HubFolder]:
    from hubnode.console.staff import StaffStore

    from .test_console import CHEAP, PASSWORD

    folder = HubFolder.init(tmp_path / "hub", name="Hub Home", network=NET)
    folder.config = msgspec.structs.replace(folder.config, storage_budget_mb_per_day=0.02)
    folder.save_config()
    with StaffStore.open(folder.path) as store:
        store.add("Ann", "worker", PASSWORD, CHEAP)
    yield HubFolder.open(folder.path)


def today_page(folder: HubFolder) -> str:
    from .test_console import Clock, open_desk

    desks = open_desk(folder, Clock())
    try:
        page = next(desks).signed_in("Ann").get("/")
    finally:
        desks.close()
    assert page.status_code == 200, page.text
    return page.text


async def test_over_budget_traffic_shows_in_status_and_today_and_nothing_is_dropped(
    budget_hub: HubFolder,
) -> None:
    from hubnode.store.intake import megabytes

    sender = ChainWriter(NET)
    records = [sender.next("hub.registered", registered("Flood Hub"))]
    records += [
        sender.next("hub.profile_updated", msgspec.msgpack.encode({"area": "a" * 190}))
        for _ in range(120)
    ]
    sent = sum(map(len, records))
    assert sent > 20_000  # the budget is 0.02 MB a day
    node = Node(budget_hub)
    await node.start()
    try:
        assert node.log is not None
        outcomes = await node.log.ingest(records)
        assert {o.status for o in outcomes} == {Status.ACCEPTED}
        assert await node.log.count(sender.hub) == len(records)  # nothing dropped

        async def flagged() -> list[dict[str, Any]]:
            while True:
                status = read_status(budget_hub) or {}
                if status.get("over_budget"):
                    return list(status["over_budget"])
                await asyncio.sleep(0.05)

        async with asyncio.timeout(10):
            (entry,) = await flagged()
        assert entry == {
            "hub": hub_display(sender.hub),
            "day": today(),
            "records": len(records),
            "bytes": sent,
            "budget": 20_000,
        }
        result = await asyncio.to_thread(
            CliRunner().invoke, app, ["status", "--data", str(budget_hub.path)]
        )
        assert result.exit_code == 0, result.output
        line = next(x for x in result.stdout.splitlines() if hub_display(sender.hub)[:20] in x)
        assert "over budget" in line.lower() and megabytes(sent) in line
        html = await asyncio.to_thread(today_page, budget_hub)
        assert f"Flood Hub sent {megabytes(sent)} today" in html
        assert "budget of 0.02 MB" in html
    finally:
        await node.stop()
    assert (read_status(budget_hub) or {}).get("over_budget")  # kept in the final status
