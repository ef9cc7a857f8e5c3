"""The pathway actions on their own (no command line): three hubs, each with its log,
keyring and views open for the whole test as a long-running process holds them, events
copied between them as gossip would."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubnode.casework import (
    Casework,
    InvalidInput,
    NoCapacity,
    NotFound,
    NotPermitted,
    check_clear_text,
)
from hubnode.config import HubFolder
from hubnode.errors import ConsentRefused, IllegalTransition
from hubnode.events.directory import CapacityReported, ServicePublished
from hubnode.events.ids import hub_display
from hubnode.node import projection_runner
from hubnode.privacy.keyring import Keyring, catch_up_keys
from tests.conftest import NET, registered

CAFE = ServicePublished(
    id="carers-cafe",
    organisation="Care Navigators North",
    name="Carers' café",
    description="A weekly drop-in for unpaid carers.",
    categories=("carers",),
)


class Hubs:
    """Hubs a, b, c: registered with their seal keys, each known to the others."""

    def __init__(self) -> None:
        self.cw: list[Casework] = []

    @property
    def ids(self) -> list[bytes]:
        return [cw.me for cw in self.cw]

    async def gossip(self) -> None:
        """Every hub ingests every record any other holds."""
        records = [[r async for r in cw.log.export_records()] for cw in self.cw]
        for cw in self.cw:
            for held in records:
                await cw.log.ingest(held)

    async def count(self, n: int) -> int:
        return await self.cw[n].log.count()


@pytest.fixture
async def hubs(tmp_path: Path) -> AsyncIterator[Hubs]:
    net = Hubs()
    opened = []
    for name in ("a", "b", "c"):
        folder = HubFolder.init(tmp_path / name, name=f"Hub {name}", network=NET)
        log = await folder.open_log()
        ring = Keyring.open(folder)
        views = projection_runner(folder)
        opened.append((log, ring, views))
        await log.append("hub.registered", registered(f"Hub {name}", ring.seal_key.public))
        net.cw.append(Casework(folder, log, ring, views))
    await net.gossip()
    yield net
    for log, ring, views in opened:
        views.close()
        ring.close()
        await log.close()


async def enquiry(cw: Casework, *consent: bytes, name: str = "Ada Lovelace") -> str:
    logged = await cw.log_enquiry(
        name=name, phone="07700 900123", needs=["Carers"], channel="walk-in", consent=consent
    )
    return logged.subject


# -- the journey ------------------------------------------------------------------------


async def test_a_person_is_referred_helped_followed_up_and_taken_up_by_advocacy(
    hubs: Hubs,
) -> None:
    a, b, c = hubs.cw
    await b.log.append("service.published", CAFE)
    await hubs.gossip()
    logged = await a.log_enquiry(
        name="Ada Lovelace",
        dob="1961-02-03",
        needs=[" Carers "],
        channel="phone",
        area="dl3",
        consent=[b.me, b.me],
    )
    assert (logged.consent, logged.purposes) == ((b.me,), ("referral", "follow-up"))
    made = await a.refer(logged.subject, service=(b.me, "carers-cafe"), note="mornings only")
    assert made.ref == f"{hub_display(a.me)}:{made.referral}" and made.warning is None
    await hubs.gossip()

    # The long-running casework of b sees the referral without being reopened.
    moved = await b.move(made.key, "accepted")
    assert (moved.was, moved.to) == ("requested", "accepted")
    done = await b.move(made.key, "completed", outcome="café place offered", satisfied=True)
    await hubs.gossip()
    for cw in (a, b, c):
        await cw.refresh()
    detail = b.referral_detail(made.key)
    assert detail.referral.status == "completed" and detail.referral.outcome == "café place offered"
    assert detail.note == "mornings only"
    assert c.referral_detail(made.key).note == "[sealed]"  # not in the person's consent
    assert [s.what for s, _ in detail.timeline][:2] == ["accepted", "completed"]
    assert done.seq == moved.seq + 1

    followed = await a.record_followup(made.key, False, "the times clash", advocacy=True)
    assert followed.case is not None
    [case] = a.advocacy_cases()
    assert (case.case.id, case.note) == (followed.case, None)
    closed = await a.close_advocacy(followed.case, "resolved", "moved to the evening group")
    assert closed.outcome == "resolved" and a.advocacy_cases() == []
    [shut] = a.advocacy_cases(closed=True)
    assert shut.close_note == "moved to the evening group"
    await hubs.gossip()
    await c.refresh()
    assert c.advocacy_cases(closed=True)[0].close_note == "[sealed]"


async def test_details_open_only_where_the_consent_put_the_key(hubs: Hubs) -> None:
    a, b, c = hubs.cw
    subject = await enquiry(a, b.me)
    await hubs.gossip()
    for cw in (a, b, c):
        await cw.refresh()
    for cw in (a, b):
        [(_, person)] = cw.person(subject).details
        assert (person.name, person.phone) == ("Ada Lovelace", "07700 900123")
    seen_by_c = c.person(subject)
    assert seen_by_c.details == [] and "consent does not name this hub" in (seen_by_c.why_not or "")
    assert seen_by_c.info.enquiries[0].needs == ("carers",)


# -- refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"channel": "fax"}, "channel", "--channel 'fax': use one of walk-in, phone, web, paper"),
        ({"urgency": "now"}, "urgency", "--urgency 'now': use one of routine, soon, urgent"),
        ({"dob": "31/01/1990"}, "dob", "write the date of birth as YYYY-MM-DD"),
        ({"area": "Darlington"}, "area", "give a postcode district such as DL1"),
        ({"purposes": ["marketing"]}, "purpose", "--purpose 'marketing'"),
        ({"name": ""}, "person", "the person's details"),
        ({"needs": []}, "EnquiryLogged", "EnquiryLogged"),
    ],
)
async def test_bad_enquiry_input_is_refused_naming_the_field_and_nothing_is_appended(
    hubs: Hubs, fields: dict[str, object], field: str, says: str
) -> None:
    a = hubs.cw[0]
    before = await hubs.count(0)
    given: dict[str, object] = {"name": "Jo", "needs": ["debt"], "channel": "web", **fields}
    with pytest.raises(InvalidInput) as refused:
        await a.log_enquiry(**given)  # type: ignore[arg-type]
    assert refused.value.field == field and says in str(refused.value)
    assert await hubs.count(0) == before


async def test_referrals_outside_the_consent_are_refused_saying_how_to_fix_it(
    hubs: Hubs,
) -> None:
    a, b, c = hubs.cw
    subject = await enquiry(a, b.me)
    with pytest.raises(ConsentRefused, match=f"consent does not name {hub_display(c.me)}") as e:
        await a.refer(subject, to_hub=c.me)
    fix = f"--consent {hub_display(b.me)} --consent {hub_display(c.me)}"
    assert fix in str(e.value)
    await a.record_consent(subject, [b.me], ["follow-up"])
    with pytest.raises(ConsentRefused, match="does not cover referral"):
        await a.refer(subject, to_hub=b.me)
    await a.record_consent(subject, [b.me])
    await a.withdraw_consent(subject)
    with pytest.raises(ConsentRefused, match="names no other hub"):
        await a.refer(subject, category="debt")
    with pytest.raises(InvalidInput, match="exactly one"):
        await a.refer(subject, to_hub=b.me, category="debt")
    with pytest.raises(NotPermitted, match="this hub logged no enquiry for"):
        await b.refer(subject, to_hub=a.me)


async def test_a_service_with_no_capacity_needs_anyway_and_then_warns(hubs: Hubs) -> None:
    a, b, _ = hubs.cw
    await b.log.append_many(
        [
            ("service.published", CAFE),
            (
                "capacity.reported",
                CapacityReported(
                    service="carers-cafe", status="no-capacity", as_of=dt.date(2030, 1, 2)
                ),
            ),
        ]
    )
    await hubs.gossip()
    subject = await enquiry(a, b.me)
    before = await hubs.count(0)
    with pytest.raises(NoCapacity, match="reported no capacity on 2030-01-02") as full:
        await a.refer(subject, service=(b.me, "carers-cafe"))
    assert full.value.as_of == "2030-01-02" and await hubs.count(0) == before
    made = await a.refer(subject, service=(b.me, "carers-cafe"), anyway=True)
    assert made.warning == f"{hub_display(b.me)}:carers-cafe reported no capacity on 2030-01-02"
    with pytest.raises(NotFound, match="is not in this hub's directory"):
        await a.refer(subject, service=(b.me, "nothing"))


async def test_moves_are_checked_against_the_table_and_the_parties(hubs: Hubs) -> None:
    a, b, c = hubs.cw
    subject = await enquiry(a, b.me)
    made = await a.refer(subject, to_hub=b.me)
    await hubs.gossip()
    with pytest.raises(IllegalTransition) as wrong:
        await a.move(made.key, "accepted")
    assert (wrong.value.current, wrong.value.to, wrong.value.party) == (
        "requested",
        "accepted",
        "referring",
    )
    with pytest.raises(IllegalTransition, match="needs a reason"):
        await b.move(made.key, "rejected")
    with pytest.raises(InvalidInput, match="remove the phone number") as personal:
        await b.move(made.key, "rejected", reason="call her on 07700 900123")
    assert personal.value.field == "reason"
    with pytest.raises(InvalidInput, match="give both --outcome"):
        await b.move(made.key, "accepted", outcome="fine")
    with pytest.raises(InvalidInput, match="--status 'done'"):
        await b.move(made.key, "done")
    with pytest.raises(NotPermitted, match="neither the referring hub"):
        await c.move(made.key, "accepted")
    with pytest.raises(NotFound, match="no referral r-0000000000 by this hub"):
        await a.move((a.me, "r-0000000000"), "cancelled", "x")
    with pytest.raises(NotPermitted, match="its receiving hub is"):
        await c.claim(made.key)
    with pytest.raises(NotPermitted, match="cannot open advocacy on"):
        await c.open_advocacy(made.key)
    with pytest.raises(NotFound, match="opened no advocacy case c-1"):
        await a.close_advocacy("c-1", "resolved")
    with pytest.raises(InvalidInput, match="--outcome 'won'"):
        await a.close_advocacy("c-1", "won")


async def test_an_open_referral_is_claimed_by_a_consented_hub(hubs: Hubs) -> None:
    a, b, c = hubs.cw
    subject = await enquiry(a, b.me)
    made = await a.refer(subject, category="Carers")
    await hubs.gossip()
    with pytest.raises(NotPermitted, match="this hub made it"):
        await a.claim(made.key)
    with pytest.raises(NotPermitted, match="consent does not name this hub"):
        await c.claim(made.key)
    claimed = await b.claim(made.key)
    assert claimed.ref == made.ref
    assert b.find_referral(made.key).receiver == b.me  # its own views include the claim


def test_clear_text_refuses_email_addresses_and_phone_numbers() -> None:
    check_clear_text("--reason", "moved away, no forwarding address")
    with pytest.raises(InvalidInput, match="--outcome: remove the email address") as e:
        check_clear_text("--outcome", "write to jo@example.org")
    assert e.value.field == "outcome"


# -- erasure ----------------------------------------------------------------------------


async def test_erasure_destroys_the_key_at_every_hub_that_held_it(hubs: Hubs) -> None:
    a, b, c = hubs.cw
    subject = await enquiry(a, b.me)
    await hubs.gossip()
    await b.refresh()
    with pytest.raises(InvalidInput, match="say why"):
        await a.erase(subject, " ")
    with pytest.raises(NotFound, match=f"no person {subject} is known here"):
        await b.erase(subject, "the person asked")  # only the point of access erases
    erased = await a.erase(subject, "the person asked")
    assert erased.destroyed and erased.rotated
    gone = a.person(subject)  # the views include what the action appended
    assert gone.why_not == "erased" and gone.destroyed_ms is not None
    with pytest.raises(NotPermitted, match="already erased"):
        await a.erase(subject, "again")
    with pytest.raises(NotPermitted, match="was erased on"):
        await a.refer(subject, to_hub=b.me)

    await hubs.gossip()
    for cw in (b, c):
        await cw.refresh()  # b destroys its key and confirms
    assert b.person(subject).destroyed_ms is not None
    assert c.person(subject).destroyed_ms is None  # c never held the key
    await hubs.gossip()
    await a.refresh()
    confirmed = {x.hub for x in a.subject(subject).confirmations}
    assert confirmed == {a.me, b.me}


async def test_without_keep_keys_the_running_node_destroys_the_key(hubs: Hubs) -> None:
    a = hubs.cw[0]
    quiet = Casework(a.folder, a.log, a.keyring, a.views, keep_keys=False)
    subject = await enquiry(quiet)
    erased = await quiet.erase(subject, "the person asked")
    assert not erased.destroyed and not erased.rotated
    assert a.keyring.has_key(a.me, subject)  # until the node's keyring catch-up
    await catch_up_keys(a.log, a.keyring)
    assert not a.keyring.has_key(a.me, subject)


async def test_actions_inside_acting_record_the_staff_pseudonym_and_only_there(
    hubs: Hubs,
) -> None:
    a, b, _ = hubs.cw
    with a.acting("st-abcdefghijklmnop") as cw:
        subject = await enquiry(cw, b.me)
    await enquiry(a, b.me, name="Grace Hopper")  # outside: no one recorded
    logged = await a.log.events(hub=a.me, kind=("enquiry.logged", "consent.recorded"))
    staffs = [getattr(ev.body, "staff", None) for ev in logged]
    assert staffs == ["st-abcdefghijklmnop"] * 2 + [None] * 2
    assert getattr(logged[0].body, "subject", None) == subject
    assert a.staff is None
