"""The console's directory, tenders and skills pages: what they show from the views, their
forms appending through the same actions as the commands, errors next to their fields with
nothing appended, what each role may do, CSRF and signed-out visitors."""

from __future__ import annotations

import html as html_
import re
from collections.abc import Awaitable, Callable, Iterator
from datetime import date
from pathlib import Path

import msgspec
import pytest

from hubnode.casework import Casework
from hubnode.console.pages.directory import PRINT_CSS_PATH
from hubnode.events.directory import CapacityReported, ServicePublished, WeeklyHours
from hubnode.events.feedback import FeedbackSubmitted, ServiceRef
from hubnode.events.ids import hub_display
from hubnode.events.tenders import ClusterFormed, Lot, Period, TenderShared, Value
from tests.test_console import Clock, Desk, Net, act, error_for, log_kinds, open_desk
from tests.test_console_pages import bodies, pseudonym

TENDER = "ocds-hubnode-aaaa-1"


@pytest.fixture(scope="module")
def made_net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Hubs a, b, c (see :class:`Net`); b also publishes a free befriending service open
    on Mondays, a and c rate b's debt advice, c shares a care tender and b forms a bid cluster
    for it."""
    root = tmp_path_factory.mktemp("console-areas")
    net = Net.create(root)

    async def publish(cw: Casework) -> None:
        await cw.log.append("service.published", BEFRIENDING)
        await cw.log.append(
            "cluster.formed", ClusterFormed(cluster="c1", tender=TENDER, lots=("L1",))
        )
        await cw.log.append(
            "capacity.reported",
            CapacityReported(service="befriending", status="waitlist", as_of="2033-06-01"),
        )

    def rating(stars: int, comment: str) -> Callable[[Casework], Awaitable[None]]:
        async def rate(cw: Casework) -> None:
            ref = ServiceRef(hub=hub_display(net.b.hub), id="debt-advice")
            body = FeedbackSubmitted(feedback="f1", service=ref, rating=stars, comment=comment)
            await cw.log.append("feedback.submitted", body)

        return rate

    async def share(cw: Casework) -> None:
        await cw.log.append(
            "tender.shared",
            TenderShared(
                ocid=TENDER,
                title="Home care",
                buyer="Darlington Borough Council",
                value=Value(amount=120000, currency="GBP"),
                period=Period(start=date(2030, 1, 1), end=date(2030, 3, 1)),
                lots=(Lot(id="L1", title="North"), Lot(id="L2", title="South")),
                categories=("care",),
                area=("DL1",),
            ),
        )

    for folder in (net.a, net.b):  # each hub may owe up to 10 hours
        folder.config = msgspec.structs.replace(folder.config, time_overdraft_seconds=36_000)
        folder.save_config()
    act(net.c, share)
    net.gossip()
    act(net.b, publish)
    act(net.a, rating(4, "Kind and quick"))  # each rating hub counts once: two hubs rate
    act(net.c, rating(2, "Long wait"))
    net.gossip()
    return root


BEFRIENDING = ServicePublished(
    id="befriending",
    organisation="Care Navigators North",
    name="Befriending visits",
    description="Weekly visits for people living alone.",
    categories=("community",),
    eligibility="Adults living alone",
    areas=("DL3",),
    schedules=(WeeklyHours(days=("MO",), opens="09:00", closes="17:00"),),
)


@pytest.fixture
def desk(net: Net, clock: Clock) -> Iterator[Desk]:
    """Hub a's console, nobody signed in."""
    yield from open_desk(net.a, clock)


def text_of(html: str) -> str:
    """The page's visible words, tags removed and spaces collapsed."""
    return " ".join(html_.unescape(re.sub(r"<[^>]+>", " ", html)).split())


def service_path(net: Net, service: str) -> str:
    return f"/directory/{hub_display(net.b.hub)}:{service}"


# -- the directory ------------------------------------------------------------------------


def test_the_directory_lists_services_with_capacity_and_rating(desk: Desk, net: Net) -> None:
    desk.signed_in("a worker")
    page = desk.get("/directory")
    assert page.status_code == 200
    words = text_of(page.text)
    assert "2 services found" in words
    assert "Debt advice clinic" in words and "Befriending visits" in words
    assert "Rated 3.0 out of 5 from 2 ratings" in words
    assert "Waiting list (said 2033-06-01)" in words
    assert f'href="{service_path(net, "befriending")}"' in page.text
    assert 'href="/directory" aria-current="page"' in page.text  # in the navigation


@pytest.mark.parametrize(
    ("query", "shown", "hidden"),
    [
        ("text=weekly+visits", "Befriending visits", "Debt advice clinic"),
        ("category=debt", "Debt advice clinic", "Befriending visits"),
        ("area=dl3", "Befriending visits", "Debt advice clinic"),
    ],
)
def test_the_directory_filters_by_words_need_and_district(
    desk: Desk, query: str, shown: str, hidden: str
) -> None:
    desk.signed_in("a worker")
    words = text_of(desk.get(f"/directory?{query}").text)
    assert "1 service found" in words and shown in words and hidden not in words


def test_open_now_keeps_only_services_open_at_the_consoles_clock(desk: Desk, clock: Clock) -> None:
    monday_noon = 1_906_113_600  # Monday 2030-05-27 12:00 UTC
    for hours, expected in ((0, "1 service found"), (9, "0 services found")):
        clock.now = monday_noon + hours * 3600 - _utc_offset(monday_noon)
        desk.signed_in("a worker")  # a jump of years ends any session
        words = text_of(desk.get("/directory?open=yes").text)
        assert expected in words
        assert ("Befriending visits" in words) == (hours == 0)


def _utc_offset(moment: float) -> int:
    """The server's local offset from UTC at ``moment``, in seconds (pages use local time)."""
    import datetime as dt

    offset = dt.datetime.fromtimestamp(moment).astimezone().utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def test_the_directory_says_a_bad_district_next_to_its_field(desk: Desk) -> None:
    desk.signed_in("a worker")
    page = desk.get("/directory?area=Darlington")
    assert page.status_code == 400
    assert error_for(page.text, "area") == "Enter a postcode district, such as DL1 or DL3"
    assert "services found" not in page.text


def test_a_service_page_shows_details_capacity_and_feedback(desk: Desk, net: Net) -> None:
    net.capacity("no-capacity")
    desk.signed_in("a worker")
    page = desk.get(service_path(net, "debt-advice"))
    assert page.status_code == 200
    words = text_of(page.text)
    assert "<h1>Debt advice clinic</h1>" in page.text
    assert "published by Hub B" in words
    assert "No capacity (said 2033-05-01)" in words
    assert "Rated 3.0 out of 5 from 2 ratings" in words
    # Newest first, each from the hub that rated it.
    assert words.index("Long wait") < words.index("Kind and quick")
    assert "2 out of 5, from Hub C" in words
    befriending = text_of(desk.get(service_path(net, "befriending")).text)
    assert "Adults living alone" in befriending and "Monday: 09:00 to 17:00" in befriending
    assert "Not rated yet" in befriending


def test_a_missing_service_is_a_page_not_found(desk: Desk, net: Net) -> None:
    desk.signed_in("a worker")
    assert desk.get(service_path(net, "no-such-service")).status_code == 404
    assert desk.get("/directory/not-a-service").status_code == 404


def test_the_printable_directory_is_the_one_the_command_writes(desk: Desk) -> None:
    desk.signed_in("a worker")
    page = desk.get("/directory/print?area=DL3")
    assert page.status_code == 200
    assert "<h1>Directory of services in DL3</h1>" in page.text
    assert "Befriending visits" in page.text and "Debt advice clinic" not in page.text
    # The console forbids inline style: the print stylesheet is a file of its own.
    assert "<style>" not in page.text and f'href="{PRINT_CSS_PATH}"' in page.text
    css = desk.get(PRINT_CSS_PATH)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "@page { size: A4" in css.text
    assert 'href="/directory/print"' in desk.get("/directory").text


# -- today: tenders matching the hub's watches -------------------------------------------


def watch(net: Net, **filters: object) -> None:
    """Add a watch to hub a as ``hubnode tender watch add`` does."""
    from hubnode.casework.tenders import add_watch

    add_watch(net.a, **filters)  # type: ignore[arg-type]


def test_today_lists_the_tenders_matching_the_hubs_watches(desk: Desk, net: Net) -> None:
    desk.signed_in("a worker")
    assert "This hub watches no tenders" in text_of(desk.get("/").text)
    watch(net, category="housing")
    assert "No tender matches this hub's watches" in text_of(desk.get("/").text)
    watch(net, area="DL", max_value=200000)
    words = text_of(desk.get("/").text)
    assert "Home care" in words and "Darlington Borough Council, 120000 GBP" in words
    assert "bids close 2030-03-01; 2 lots, 1 bid cluster (watch 2)" in words


def test_today_warns_when_the_watches_cannot_be_read(desk: Desk, net: Net) -> None:
    (net.a.path / "tender-watches.json").write_text("{not json")
    desk.signed_in("a worker")
    page = desk.get("/")
    assert page.status_code == 200
    assert "tender watches cannot be read" in page.text


# -- every area page: signed out, every role ---------------------------------------------

AREA_PAGES = ["/directory", "/directory/print", PRINT_CSS_PATH]


@pytest.mark.parametrize("path", AREA_PAGES)
def test_area_pages_send_signed_out_visitors_to_sign_in(desk: Desk, path: str) -> None:
    response = desk.get(path)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


@pytest.mark.parametrize("role", ["worker", "coordinator", "admin"])
def test_every_role_may_read_the_directory(desk: Desk, net: Net, role: str) -> None:
    desk.signed_in(f"a {role}")
    for path in [*AREA_PAGES, service_path(net, "debt-advice")]:
        assert desk.get(path).status_code == 200, path


def test_reading_the_directory_appends_nothing(desk: Desk, net: Net) -> None:
    before = log_kinds(net.a)
    desk.signed_in("a worker")
    desk.get("/directory?area=Darlington")
    desk.get(service_path(net, "debt-advice"))
    assert log_kinds(net.a) == before


# -- skills and time credits -------------------------------------------------------------

OFFER = {
    "kind": "offer",
    "title": "Help filling in forms",
    "tags": "form-filling, advice",
    "area": "dl1",
    "hours": "3",
}


def own_kinds(net: Net, hub: str) -> list[str]:
    return [kind for kind, _ in log_kinds(net.folders[hub])]


def test_an_offer_made_in_the_console_matches_another_hubs_request(desk: Desk, net: Net) -> None:
    desk.signed_in("a worker")
    made = desk.post("/skills", OFFER)
    assert made.status_code == 303 and made.headers["location"] == "/skills"
    assert own_kinds(net, "a")[-1] == "skill.offered"
    assert bodies(net, "a", "skill.offered")[-1]["staff"] == pseudonym(net, "a", "a worker")

    async def ask(cw: Casework) -> None:
        from hubnode.casework.skills import Skills

        skills = Skills(net.b, cw.log, cw.views)
        await skills.request(tags=["form-filling"], title="Forms for a tenant", area=["DL1"])

    act(net.b, ask)
    net.gossip()
    words = text_of(desk.get("/skills").text)
    assert "Skill offered" in words
    assert "Help filling in forms \N{EN DASH} for “Forms for a tenant”" in words
    assert "From this hub. Skills: advice, form-filling; in DL1; 3 hours a week" in words
    assert "From Hub B. Skills: form-filling; in DL1" in words


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"title": ""}, "title", "Enter a short title"),
        ({"tags": "Form Filling"}, "tags", "Tags are lower-case slugs"),
        ({"area": "Darlington"}, "area", "is not a postcode district"),
        ({"hours": "lots"}, "hours", "Enter the hours a week as a number"),
        ({"hours": "200"}, "hours", "Hours per week must be above 0 and at most 168"),
        ({"kind": "", "needed_by": "soon"}, "kind", "Choose whether this hub offers"),
        ({"kind": "request", "needed_by": "soon"}, "needed_by", "Write the date as YYYY-MM-DD"),
    ],
)
def test_a_bad_skill_form_says_so_next_to_the_field_and_appends_nothing(
    desk: Desk, net: Net, changes: dict[str, str], field: str, message: str
) -> None:
    desk.signed_in("a worker")
    before = log_kinds(net.a)
    page = desk.post("/skills", {**OFFER, **changes})
    assert page.status_code == 400
    assert message in error_for(page.text, field)
    assert log_kinds(net.a) == before


def propose(desk: Desk, net: Net, **changes: str) -> object:
    data = {"direction": "pay", "hub": hub_display(net.b.hub), "hours": "1.5", "memo": "Forms"}
    return desk.post("/time/propose", {**data, **changes})


def test_a_transfer_proposed_by_one_hub_is_confirmed_on_the_others_console(
    desk: Desk, net: Net, clock: Clock
) -> None:
    desk.signed_in("a coordinator")
    sent = propose(desk, net)
    assert sent.status_code == 303  # type: ignore[attr-defined]
    proposed = bodies(net, "a", "time.transfer_proposed")[-1]
    assert proposed["staff"] == pseudonym(net, "a", "a coordinator")
    words = text_of(desk.get("/time").text)
    assert "Transfer of 1 h 30 min proposed" in words
    assert "To Hub B: 1 h 30 min for “Forms” \N{EN DASH} waiting for Hub B to confirm" in words
    net.gossip()
    for b in open_desk(net.b, clock):
        b.signed_in("b admin")
        page = b.get("/time")
        assert "Hub A pays this hub 1 h 30 min for “Forms”." in text_of(page.text)
        transfer = re.search(r'name="transfer" value="([^"]+)"', page.text)
        assert transfer is not None
        done = b.post("/time/confirm", {"transfer": transfer.group(1)})
        assert done.status_code == 303
        assert own_kinds(net, "b")[-1] == "time.transfer_confirmed"
        confirmed = bodies(net, "b", "time.transfer_confirmed")[-1]
        assert confirmed["staff"] == pseudonym(net, "b", "b admin")
        words = text_of(b.get("/time").text)
        assert "This hub's balance 1 h 30 min." in words and "Nothing to confirm" in words
        again = b.post("/time/confirm", {"transfer": transfer.group(1)})
        assert again.status_code == 400
        assert "already confirmed" in error_for(again.text, "confirm")
    net.gossip()
    assert "This hub's balance -1 h 30 min" in text_of(desk.get("/time").text)


def test_a_worker_withdraws_the_hubs_own_offer_and_nothing_else(desk: Desk, net: Net) -> None:
    desk.signed_in("a worker")
    desk.post("/skills", OFFER)
    page = desk.get("/skills")
    offer = re.search(
        r'name="item" value="offer">\s*<input type="hidden" name="id" value="([^"]+)"', page.text
    )
    assert offer is not None
    before = log_kinds(net.a)
    for bad in ({"item": "offer", "id": "nope"}, {"item": "thing", "id": offer.group(1)}):
        refused = desk.post("/skills/withdraw", bad)
        assert refused.status_code == 400 and error_for(refused.text, "withdraw")
    assert log_kinds(net.a) == before
    done = desk.post("/skills/withdraw", {"item": "offer", "id": offer.group(1)})
    assert done.status_code == 303 and done.headers["location"] == "/skills"
    withdrawn = bodies(net, "a", "skill.withdrawn")[-1]
    assert withdrawn["offer_id"] == offer.group(1)
    assert withdrawn["staff"] == pseudonym(net, "a", "a worker")
    words = text_of(desk.get("/skills").text)
    assert f"The offer {offer.group(1)} is withdrawn." in words
    assert "Help filling in forms</p>" not in desk.get("/skills").text
    again = desk.post("/skills/withdraw", {"item": "offer", "id": offer.group(1)})
    assert again.status_code == 400
    assert "already withdrawn" in error_for(again.text, "withdraw")


def test_a_confirmed_transfer_is_reversed_with_a_reason(desk: Desk, net: Net, clock: Clock) -> None:
    desk.signed_in("a coordinator")
    propose(desk, net)
    assert "Reverse this transfer" not in desk.get("/time").text  # not confirmed yet
    net.gossip()
    for b in open_desk(net.b, clock):
        b.signed_in("b admin")
        transfer = re.search(r'name="transfer" value="([^"]+)"', b.get("/time").text)
        assert transfer is not None
        b.post("/time/confirm", {"transfer": transfer.group(1)})
    net.gossip()
    page = desk.get("/time")
    assert "Reverse this transfer" in page.text
    before = log_kinds(net.a)
    unsaid = desk.post("/time/reverse", {"transfer": transfer.group(1), "reason": " "})
    assert unsaid.status_code == 400
    assert "Say why the transfer is reversed" in error_for(unsaid.text, "reverse")
    assert log_kinds(net.a) == before
    done = desk.post("/time/reverse", {"transfer": transfer.group(1), "reason": "Entered twice"})
    assert done.status_code == 303
    reversed_ = bodies(net, "a", "time.transfer_reversed")[-1]
    assert reversed_["reason"] == "Entered twice"
    assert reversed_["staff"] == pseudonym(net, "a", "a coordinator")
    words = text_of(desk.get("/time").text)
    assert "Transfer of 1 h 30 min reversed" in words and "reversed: Entered twice" in words
    assert "This hub's balance 0 h" in words


def test_a_worker_cannot_reverse_a_transfer(desk: Desk, net: Net) -> None:
    desk.signed_in("a worker")
    before = log_kinds(net.a)
    refused = desk.post("/time/reverse", {"transfer": "x", "reason": "because"})
    assert refused.status_code == 403
    assert log_kinds(net.a) == before


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"direction": ""}, "direction", "Choose whether this hub pays or is paid"),
        ({"hub": ""}, "hub", "Choose the other hub"),
        ({"hours": ""}, "hours", "Enter the hours to transfer"),
        ({"hours": "0"}, "hours", "A transfer moves a positive amount of time"),
        ({"hours": "100"}, "hours", "below its limit of -36000 s"),
        ({"hub": "hub:nonsense"}, "hub", ""),
    ],
)
def test_a_bad_transfer_says_so_next_to_the_field_and_appends_nothing(
    desk: Desk, net: Net, changes: dict[str, str], field: str, message: str
) -> None:
    desk.signed_in("a coordinator")
    before = log_kinds(net.a)
    page = propose(desk, net, **changes)
    assert page.status_code == 400  # type: ignore[attr-defined]
    assert message in error_for(page.text, field)  # type: ignore[attr-defined]
    assert log_kinds(net.a) == before


def test_a_worker_offers_skills_but_cannot_move_time_credits(desk: Desk, net: Net) -> None:
    desk.signed_in("a worker")
    page = desk.get("/time")
    assert page.status_code == 200 and "Propose a transfer" not in page.text
    before = log_kinds(net.a)
    refused = propose(desk, net)
    assert refused.status_code == 403  # type: ignore[attr-defined]
    assert "cannot propose, confirm or reverse a time-credit transfer" in refused.text  # type: ignore[attr-defined]
    assert desk.post("/time/confirm", {"transfer": "x"}).status_code == 403
    assert log_kinds(net.a) == before


# -- tenders --------------------------------------------------------------------------------


def test_the_tenders_page_lists_tenders_and_the_hubs_watches(desk: Desk, net: Net) -> None:
    desk.signed_in("a coordinator")
    words = text_of(desk.get("/tenders").text)
    assert (
        "Home care" in words and "Darlington Borough Council, 120,000 GBP; Open for bids" in words
    )
    assert "2 lots, 1 bid cluster; in DL1" in words and "No watches yet" in words
    added = desk.post("/tenders/watch", {"category": "care", "area": "dl", "max_value": "200,000"})
    assert added.status_code == 303
    words = text_of(desk.get("/tenders").text)
    assert "Watch 1 added" in words and "matches watch 1" in words
    assert "Watch 1: Care, in DL, at most 200,000" in words
    assert "Home care" in text_of(desk.get("/").text)  # and on today


def test_a_coordinator_removes_a_watch(desk: Desk, net: Net) -> None:
    desk.signed_in("a coordinator")
    desk.post("/tenders/watch", {"category": "care"})
    missing = desk.post("/tenders/unwatch", {"watch": "7"})
    assert missing.status_code == 400
    assert "not one of this hub's" in error_for(missing.text, "watches")
    assert "Watch 1: Care" in text_of(desk.get("/tenders").text)
    removed = desk.post("/tenders/unwatch", {"watch": "1"})
    assert removed.status_code == 303 and removed.headers["location"] == "/tenders"
    words = text_of(desk.get("/tenders").text)
    assert "Watch 1 removed." in words and "No watches yet" in words
    assert "This hub watches no tenders" in text_of(desk.get("/").text)


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({}, "category", "Choose at least one of a kind of work, an area or an amount"),
        ({"area": "Darlington"}, "area", "Enter a postcode area or district"),
        ({"min_value": "lots"}, "min_value", "Enter an amount in pounds"),
        ({"min_value": "-5"}, "min_value", "Enter 0 or more"),
        ({"min_value": "10", "max_value": "5"}, "max_value", "no smaller than the 'at least'"),
        ({"category": "made-up"}, "category", "Choose a kind of work from the list"),
    ],
)
def test_a_bad_watch_says_so_next_to_the_field_and_saves_nothing(
    desk: Desk, net: Net, form: dict[str, str], field: str, message: str
) -> None:
    desk.signed_in("a coordinator")
    page = desk.post("/tenders/watch", form)
    assert page.status_code == 400
    assert message in error_for(page.text, field)
    assert not (net.a.path / "tender-watches.json").exists()


def join_form(net: Net, cluster: str) -> dict[str, str]:
    return {"ocid": TENDER, "lead": hub_display(net.b.hub), "cluster": cluster}


def test_a_tender_page_shows_lots_and_clusters_and_a_hub_joins_one(desk: Desk, net: Net) -> None:
    desk.signed_in("a coordinator")
    page = desk.get(f"/tenders/{TENDER}")
    words = text_of(page.text)
    assert "<h1>Home care</h1>" in page.text and "Shared by Hub C" in words
    assert "North (lot L1)" in words and "South (lot L2)" in words
    assert "Cluster c1, led by Hub B" in words and "Bidding for lots L1." in words
    joined = desk.post(
        "/tenders/join", {"ocid": TENDER, "lead": hub_display(net.b.hub), "cluster": "c1"}
    )
    assert joined.status_code == 303 and joined.headers["location"] == f"/tenders/{TENDER}"
    assert own_kinds(net, "a")[-1] == "cluster.joined"
    assert bodies(net, "a", "cluster.joined")[-1]["staff"] == pseudonym(net, "a", "a coordinator")
    words = text_of(desk.get(f"/tenders/{TENDER}").text)
    assert "This hub joined the bid cluster c1" in words
    assert "Members: Hub B, this hub" in words and "Join cluster c1" not in words
    before = log_kinds(net.a)
    again = desk.post(
        "/tenders/join", {"ocid": TENDER, "lead": hub_display(net.b.hub), "cluster": "c1"}
    )
    assert again.status_code == 400
    assert "This hub has already joined cluster 'c1'" in error_for(again.text, "clusters")
    missing = desk.post(
        "/tenders/join", {"ocid": TENDER, "lead": hub_display(net.b.hub), "cluster": "c9"}
    )
    assert missing.status_code == 400 and "No cluster 'c9'" in error_for(missing.text, "clusters")
    assert log_kinds(net.a) == before
    assert desk.get("/tenders/ocds-none-x").status_code == 404


def test_a_coordinator_forms_a_cluster_assigns_a_lot_and_submits_the_bid(
    desk: Desk, net: Net
) -> None:
    desk.signed_in("a coordinator")
    me = pseudonym(net, "a", "a coordinator")
    formed = desk.post("/tenders/form", {"ocid": TENDER, "lots": ["L1", "L2"], "cluster": "a-care"})
    assert formed.status_code == 303 and formed.headers["location"] == f"/tenders/{TENDER}"
    body = bodies(net, "a", "cluster.formed")[-1]
    assert (body["cluster"], list(body["lots"]), body["staff"]) == ("a-care", ["L1", "L2"], me)
    page = desk.get(f"/tenders/{TENDER}")
    assert "This hub formed the bid cluster a-care" in text_of(page.text)
    assert "Cluster a-care, led by this hub" in text_of(page.text)
    assert "Submit the bid of cluster a-care" in page.text
    before = log_kinds(net.a)
    taken = desk.post("/tenders/form", {"ocid": TENDER, "cluster": "a-care"})
    assert taken.status_code == 400
    assert "already leads a cluster with that id" in error_for(taken.text, "cluster")
    bad_lot = desk.post(
        "/tenders/assign",
        {"ocid": TENDER, "cluster": "a-care", "lot": "L9", "member": hub_display(net.a.hub)},
    )
    assert bad_lot.status_code == 400
    assert "'L9' is not in tender" in error_for(bad_lot.text, "clusters")
    no_amount = desk.post("/tenders/bid", {"ocid": TENDER, "cluster": "a-care", "lots": "L1"})
    assert no_amount.status_code == 400
    assert "Enter the bid's amount" in error_for(no_amount.text, "clusters")
    not_mine = desk.post(
        "/tenders/bid", {"ocid": TENDER, "cluster": "c1", "lots": "L1", "amount": "5"}
    )
    assert not_mine.status_code == 400
    assert "No cluster 'c1' led by this hub" in error_for(not_mine.text, "clusters")
    assert log_kinds(net.a) == before
    assigned = desk.post(
        "/tenders/assign",
        {"ocid": TENDER, "cluster": "a-care", "lot": "L1", "member": hub_display(net.a.hub)},
    )
    assert assigned.status_code == 303
    assert bodies(net, "a", "lot.assigned")[-1]["staff"] == me
    bid = desk.post(
        "/tenders/bid", {"ocid": TENDER, "cluster": "a-care", "lots": ["L1"], "amount": "50,000"}
    )
    assert bid.status_code == 303
    submitted = bodies(net, "a", "bid.submitted")[-1]
    assert submitted["value"] == {"amount": 50000.0, "currency": "GBP"}
    assert submitted["staff"] == me
    words = text_of(desk.get(f"/tenders/{TENDER}").text)
    assert "Bid of cluster a-care submitted." in words
    assert "Lot L1: this hub." in words and "Bid for lots L1: 50,000" in words


def test_a_worker_sees_tenders_but_cannot_watch_or_join(desk: Desk, net: Net) -> None:
    desk.signed_in("a worker")
    page = desk.get(f"/tenders/{TENDER}")
    assert page.status_code == 200 and "Join cluster" not in page.text
    assert "Add a watch" not in desk.get("/tenders").text
    before = log_kinds(net.a)
    join = desk.post(
        "/tenders/join", {"ocid": TENDER, "lead": hub_display(net.b.hub), "cluster": "c1"}
    )
    assert join.status_code == 403 and "cannot join a bid cluster" in join.text
    watch = desk.post("/tenders/watch", {"category": "care"})
    assert watch.status_code == 403 and "cannot watch tenders" in watch.text
    unwatch = desk.post("/tenders/unwatch", {"watch": "1"})
    assert unwatch.status_code == 403 and "cannot watch tenders" in unwatch.text
    assert "Form the cluster" not in page.text
    for path in ("/tenders/form", "/tenders/assign", "/tenders/bid"):
        led = desk.post(path, {"ocid": TENDER, "cluster": "c1", "lots": "L1", "amount": "5"})
        assert led.status_code == 403 and "cannot lead a bid cluster" in led.text
    assert log_kinds(net.a) == before
    assert not (net.a.path / "tender-watches.json").exists()


# -- every page and form: signed out, CSRF, markup ---------------------------------------

PAGES = ["/directory", "/directory/print", PRINT_CSS_PATH, "/skills", "/time", "/tenders"]
FORMS = [
    "/skills",
    "/skills/withdraw",
    "/time/propose",
    "/time/confirm",
    "/time/reverse",
    "/tenders/watch",
    "/tenders/unwatch",
    "/tenders/join",
    "/tenders/form",
    "/tenders/assign",
    "/tenders/bid",
]


@pytest.mark.parametrize("path", [*PAGES, f"/tenders/{TENDER}"])
def test_signed_out_visitors_are_sent_to_sign_in(desk: Desk, path: str) -> None:
    response = desk.get(path)
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


@pytest.mark.parametrize("path", FORMS)
def test_a_signed_out_post_appends_nothing(desk: Desk, net: Net, path: str) -> None:
    before = log_kinds(net.a)
    response = desk.post(
        path, {**OFFER, "lead": hub_display(net.b.hub), "cluster": "c1"}, csrf=False
    )
    assert response.status_code == 303 and response.headers["location"].startswith("/login")
    assert log_kinds(net.a) == before


@pytest.mark.parametrize("path", FORMS)
def test_a_post_without_the_sessions_token_is_refused(desk: Desk, net: Net, path: str) -> None:
    desk.signed_in("a admin")
    before = log_kinds(net.a)
    data = {**OFFER, "direction": "paid", "hub": hub_display(net.b.hub), "ocid": TENDER,
            "lead": hub_display(net.b.hub), "cluster": "c1", "category": "care"}  # fmt: skip
    for token in (None, "forged"):
        sent = data if token is None else {**data, "csrf": token}
        response = desk.post(path, sent, csrf=False)
        assert response.status_code == 403 and "This form has expired" in response.text
    assert log_kinds(net.a) == before
    assert not (net.a.path / "tender-watches.json").exists()


@pytest.mark.parametrize("path", PAGES[:2] + PAGES[3:] + [f"/tenders/{TENDER}", "/"])
def test_each_page_has_one_h1_and_every_field_labelled(desk: Desk, net: Net, path: str) -> None:
    desk.signed_in("a admin")
    page = desk.get(path).text
    assert page.count("<h1") == 1
    if path != "/directory/print":  # the printable page stands alone, for paper
        assert '<main id="main"' in page and 'aria-label="Main"' in page
    labels = set(re.findall(r'<label for="([^"]+)"', page))
    for kind, field in re.findall(r'<(input|select|textarea)[^>]*\bid="([^"]+)"', page):
        assert field in labels, (path, kind, field)


# -- the staff field on skills and tender bodies ------------------------------------------

HUB = hub_display(b"\x01" * 32)  # not bytes(32): a small-order point, refused


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("time.transfer_confirmed", {"proposer": HUB, "transfer_id": "t1"}),
        ("time.transfer_reversed", {"proposer": HUB, "transfer_id": "t1", "reason": "x"}),
        ("cluster.joined", {"lead": HUB, "cluster": "c1"}),
        ("lot.assigned", {"lead": HUB, "cluster": "c1", "lot": "L1", "member": HUB}),
    ],
)
def test_a_body_without_staff_keeps_the_bytes_it_had_before_the_field(
    kind: str, fields: dict[str, object]
) -> None:
    """The field came after release: a body nobody stamped must encode as it always did,
    and one that was stamped must carry the pseudonym."""
    from hubnode.events.kinds import KINDS

    old_bytes = msgspec.msgpack.encode(fields)
    body = KINDS.decode_body(kind, old_bytes)
    assert body.staff is None
    assert KINDS.encode_body(kind, body) == old_bytes
    stamped = msgspec.structs.replace(body, staff="st-abcdefghijklmnop")
    assert KINDS.decode_body(kind, KINDS.encode_body(kind, stamped)) == stamped
