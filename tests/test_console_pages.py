"""The console's pages and forms: a person's journey from enquiry to advocacy across two
hubs' consoles, validation errors next to their fields with nothing appended, what each
role may do, and what never reaches URLs or logs."""

from __future__ import annotations

import json
import logging
import re

import msgspec
import pytest

from hubnode.casework import Casework
from hubnode.events.ids import hub_display
from hubnode.events.verify import decode_event, reread
from hubnode.node import status_path
from tests.test_console import (
    Clock,
    Desk,
    Net,
    act,
    error_for,
    log_kinds,
    open_desk,
)

ADA = {
    "name": "Ada Lovelace",
    "phone": "07700 900123",
    "email": "ada@example.org",
    "dob": "1961-02-03",
    "address": "1 Grange Road, Darlington",
    "notes": "Needs mornings",
    "need": ["debt", "housing"],
    "channel": "walk-in",
    "urgency": "soon",
    "area": "DL1",
    "purpose": ["referral", "follow-up"],
    "agreed": "yes",
}


def bodies(net: Net, hub: str, kind: str) -> list[dict[str, object]]:
    """The bodies of ``hub``'s own events of ``kind``, decoded."""
    found = []
    for k, raw in log_kinds(net.folders[hub]):
        if k == kind:
            event = decode_event(reread(raw))
            found.append(msgspec.to_builtins(event.body))
    return found


def pseudonym(net: Net, hub: str, name: str) -> str:
    from hubnode.console.staff import StaffStore

    with StaffStore.open(net.folders[hub].path) as store:
        account = store.by_name(name)
    assert account is not None
    return account.pseudonym


def log_ada(a: Desk, net: Net, **changes: object) -> str:
    """Log Ada's enquiry at hub a with consent for hub b; her pseudonym."""
    data = {**ADA, "consent": [hub_display(net.b.hub)], **changes}
    response = a.post("/enquiry", data)
    assert response.status_code == 303, response.text
    found = re.fullmatch(r"/people/(s-[a-z2-7]{20})", response.headers["location"])
    assert found is not None
    return found.group(1)


def flash(desk: Desk, path: str) -> str:
    page = desk.get(path)
    found = re.search(r'<div class="notice" role="status">(.*?)</div>', page.text, re.S)
    assert found is not None, page.text
    return found.group(1)


def buttons(html: str) -> list[str]:
    return re.findall(r'<input type="hidden" name="to" value="([^"]+)">', html)


# -- the journey ------------------------------------------------------------------------


def test_a_person_goes_from_enquiry_to_referral_follow_up_and_advocacy(
    desks: tuple[Desk, Desk], net: Net
) -> None:
    a, b = desks
    a.signed_in("a worker")
    b.signed_in("b worker")

    # Log the enquiry: sealed, with consent for hub b, by this staff member.
    form = a.get("/enquiry").text
    assert "Hub B" in form and "Hub C" in form  # the consent step names the hubs
    subject = log_ada(a, net)
    assert f"The person&#39;s pseudonym is {subject}" in flash(a, f"/people/{subject}")
    page = a.get(f"/people/{subject}").text
    assert "Ada Lovelace" in page and "07700 900123" in page
    (logged,) = bodies(net, "a", "enquiry.logged")
    assert logged["staff"] == pseudonym(net, "a", "a worker")
    assert list(logged["needs"]) == ["debt", "housing"] and logged["area"] == "DL1"
    assert b"Ada" not in b"".join(raw for _, raw in log_kinds(net.a))

    # Refer: choose b's service (capacity shown), then the form.
    choose = a.get(f"/refer?subject={subject}").text
    service = f"{hub_display(net.b.hub)}:debt-advice"
    assert "Debt advice clinic" in choose and f"service={service}" in choose
    assert "No capacity reported" in choose
    assert a.get(f"/refer?subject={subject}&service={service}").status_code == 200
    made = a.post(
        "/refer", {"subject": subject, "service": service, "note": "mornings", "urgency": "soon"}
    )
    assert made.status_code == 303
    ref = made.headers["location"].removeprefix("/referrals/")
    (requested,) = bodies(net, "a", "referral.requested")
    assert requested["staff"] == pseudonym(net, "a", "a worker")

    # It reaches b's "today" page; b sees the note and may accept or turn it down.
    net.gossip()
    today = b.get("/").text
    assert f"/referrals/{ref}" in today and "from Hub A" in today
    detail = b.get(f"/referrals/{ref}").text
    assert buttons(detail) == ["accepted", "rejected"]
    assert "mornings" in detail
    assert b.post(f"/referrals/{ref}/move", {"to": "accepted"}).status_code == 303
    assert buttons(b.get(f"/referrals/{ref}").text) == [
        "in-progress", "on-hold", "completed", "failed"
    ]  # fmt: skip
    done = b.post(
        f"/referrals/{ref}/move",
        {"to": "completed", "outcome": "payment plan agreed", "satisfied": "no"},
    )
    assert done.status_code == 303
    assert bodies(net, "b", "referral.status_changed")[-1]["staff"] == pseudonym(
        net, "b", "b worker"
    )

    # Back at a: the follow-up is due after followup_days; the person was not satisfied,
    # and the follow-up opens an advocacy case, which a coordinator closes.
    net.gossip()
    assert (
        f"/referrals/{ref}"
        not in a.get("/followups").text.split("Due now")[1].split("</section")[0]
    )
    a.clock.advance(15 * 24 * 60)
    a.get("/")  # the session would have expired: sign in again
    a.signed_in("a worker")
    due = a.get("/followups").text
    assert f"/referrals/{ref}/follow-up" in due
    recorded = a.post(
        f"/referrals/{ref}/follow-up", {"satisfied": "no", "note": "still owes", "advocacy": "yes"}
    )
    assert recorded.status_code == 303
    assert "Advocacy case c-" in flash(a, f"/referrals/{ref}")
    (case,) = bodies(net, "a", "advocacy.opened")
    cases = a.get("/advocacy").text
    assert f"Case {case['case']}" in cases and "Close case" not in cases  # workers cannot
    a.post("/logout", {})
    a.signed_in("a coordinator")
    closed = a.post(f"/advocacy/{case['case']}/close", {"outcome": "resolved"})
    assert closed.status_code == 303
    assert bodies(net, "a", "advocacy.closed")[0]["staff"] == pseudonym(net, "a", "a coordinator")


def test_an_open_referral_is_taken_by_a_hub_the_person_agreed_to(
    desks: tuple[Desk, Desk], net: Net
) -> None:
    a, b = desks
    a.signed_in("a worker")
    b.signed_in("b worker")
    subject = log_ada(a, net)
    made = a.post("/refer", {"subject": subject, "open": "debt"})
    ref = made.headers["location"].removeprefix("/referrals/")
    net.gossip()
    assert "Open referral" in b.get("/").text
    assert buttons(b.get(f"/referrals/{ref}").text) == ["claim"]
    assert b.post(f"/referrals/{ref}/move", {"to": "claim"}).status_code == 303
    assert "Referral taken." in flash(b, f"/referrals/{ref}")
    assert bodies(net, "b", "referral.claimed")[0]["staff"] == pseudonym(net, "b", "b worker")


# -- validation: errors next to the field, nothing appended -----------------------------


def test_an_enquiry_with_missing_fields_shows_each_error_and_appends_nothing(
    desks: tuple[Desk, Desk], net: Net
) -> None:
    a, _ = desks
    a.signed_in("a worker")
    before = log_kinds(net.a)
    response = a.post("/enquiry", {"phone": "07700 900123"})
    assert response.status_code == 400
    page = response.text
    assert "There is a problem" in page and "<title>Error: " in page
    assert error_for(page, "name") == "Enter the person's name"
    assert "at least one" in error_for(page, "need")
    assert error_for(page, "channel") == "Choose how the person came to the hub"
    assert error_for(page, "purpose") == "Choose what the person agrees to"
    assert "they agree" in error_for(page, "agreed")
    assert 'value="07700 900123"' in page  # what was typed is kept
    assert log_kinds(net.a) == before


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        ({"area": "Darlington"}, "area", "postcode district such as DL1"),
        ({"dob": "3rd of Feb"}, "dob", "YYYY-MM-DD"),
        ({"name": "x" * 300}, "name", "Make it at most 200 characters"),
    ],
)
def test_the_caseworks_refusals_are_shown_next_to_their_field(
    desks: tuple[Desk, Desk], net: Net, change: dict[str, str], field: str, says: str
) -> None:
    a, _ = desks
    a.signed_in("a worker")
    before = log_kinds(net.a)
    response = a.post("/enquiry", {**ADA, **change})
    assert response.status_code == 400
    shown = error_for(response.text, field)
    assert says in shown and "--" not in shown  # no command-line options in a page
    assert log_kinds(net.a) == before


def test_a_referral_outside_the_persons_consent_is_refused_next_to_the_choice(
    desks: tuple[Desk, Desk], net: Net
) -> None:
    a, _ = desks
    a.signed_in("a worker")
    subject = log_ada(a, net)
    before = log_kinds(net.a)
    response = a.post("/refer", {"subject": subject, "to_hub": hub_display(net.c.hub)})
    assert response.status_code == 400
    shown = error_for(response.text, "target")
    assert "consent does not name" in shown and "record their consent again" in shown
    assert "hubnode consent" not in shown
    assert "not in the person's consent" in a.get(f"/refer?subject={subject}").text
    assert log_kinds(net.a) == before


def test_a_service_without_capacity_needs_refer_anyway(desks: tuple[Desk, Desk], net: Net) -> None:
    a, _ = desks
    a.signed_in("a worker")
    net.capacity("no-capacity")
    subject = log_ada(a, net)
    service = f"{hub_display(net.b.hub)}:debt-advice"
    assert "No capacity</strong> (said 2033-05-01)" in a.get(f"/refer?subject={subject}").text
    before = log_kinds(net.a)
    refused = a.post("/refer", {"subject": subject, "service": service})
    assert refused.status_code == 400
    assert "no capacity" in error_for(refused.text, "anyway")
    assert log_kinds(net.a) == before
    made = a.post("/refer", {"subject": subject, "service": service, "anyway": "yes"})
    assert made.status_code == 303


def test_a_move_that_needs_a_reason_says_so_next_to_the_reason(
    desks: tuple[Desk, Desk], net: Net
) -> None:
    a, b = desks
    a.signed_in("a worker")
    b.signed_in("b worker")
    subject = log_ada(a, net)
    ref = (
        a.post("/refer", {"subject": subject, "to_hub": hub_display(net.b.hub)})
        .headers["location"]
        .removeprefix("/referrals/")
    )
    net.gossip()
    before = log_kinds(net.b)
    response = b.post(f"/referrals/{ref}/move", {"to": "rejected", "reason": ""})
    assert response.status_code == 400
    assert "needs a reason" in error_for(response.text, "reason-rejected")
    response = b.post(f"/referrals/{ref}/move", {"to": "rejected", "reason": "call 07700 900123"})
    assert "Remove the phone number" in error_for(response.text, "reason-rejected")
    # A move the table does not give this hub is refused too, even if posted by hand.
    cancel = b.post(f"/referrals/{ref}/move", {"to": "cancelled", "reason": "no"})
    assert cancel.status_code == 400
    assert error_for(cancel.text, "moves").startswith("Only the referring hub may move")
    assert log_kinds(net.b) == before


def test_a_follow_up_needs_an_answer(desks: tuple[Desk, Desk], net: Net) -> None:
    a, _ = desks
    a.signed_in("a worker")
    subject = log_ada(a, net)
    ref = (
        a.post("/refer", {"subject": subject, "to_hub": hub_display(net.b.hub)})
        .headers["location"]
        .removeprefix("/referrals/")
    )
    before = log_kinds(net.a)
    response = a.post(f"/referrals/{ref}/follow-up", {"note": "called"})
    assert response.status_code == 400
    assert error_for(response.text, "satisfied") == "Say whether the person was satisfied"
    assert log_kinds(net.a) == before


# -- roles ------------------------------------------------------------------------------


def test_only_an_admin_can_erase_a_person(desks: tuple[Desk, Desk], net: Net) -> None:
    a, _ = desks
    a.signed_in("a worker")
    subject = log_ada(a, net)
    assert "Erase this person" not in a.get(f"/people/{subject}").text
    before = log_kinds(net.a)
    refused = a.post(f"/people/{subject}/erase", {"reason": "asked", "confirm": "yes"})
    assert refused.status_code == 403 and "cannot erase a person" in refused.text
    assert log_kinds(net.a) == before
    a.post("/logout", {})
    a.signed_in("a admin")
    unconfirmed = a.post(f"/people/{subject}/erase", {"reason": "asked to be forgotten"})
    assert unconfirmed.status_code == 400 and error_for(unconfirmed.text, "confirm")
    erased = a.post(
        f"/people/{subject}/erase", {"reason": "asked to be forgotten", "confirm": "yes"}
    )
    assert erased.status_code == 303
    page = a.get(f"/people/{subject}").text
    assert "This person was erased" in page and "Ada Lovelace" not in page
    assert bodies(net, "a", "subject.erased")[0]["staff"] == pseudonym(net, "a", "a admin")


def test_workers_cannot_mark_a_referral_entered_in_error_or_change_consent(
    desks: tuple[Desk, Desk], net: Net
) -> None:
    a, _ = desks
    a.signed_in("a worker")
    subject = log_ada(a, net)
    ref = (
        a.post("/refer", {"subject": subject, "to_hub": hub_display(net.b.hub)})
        .headers["location"]
        .removeprefix("/referrals/")
    )
    page = a.get(f"/referrals/{ref}").text
    assert buttons(page) == ["cancelled"] and "Only a coordinator or an admin can" in page
    before = log_kinds(net.a)
    assert a.post(f"/referrals/{ref}/move", {"to": "entered-in-error"}).status_code == 403
    consent = {"consent": [hub_display(net.c.hub)], "purpose": "referral", "agreed": "yes"}
    assert a.post(f"/people/{subject}/consent", consent).status_code == 403
    assert log_kinds(net.a) == before
    a.post("/logout", {})
    a.signed_in("a coordinator")
    assert buttons(a.get(f"/referrals/{ref}").text) == ["cancelled", "entered-in-error"]
    assert a.post(f"/people/{subject}/consent", consent).status_code == 303
    assert "Hub C" in a.get(f"/people/{subject}").text.split('id="consent-heading"')[1]
    assert a.post(f"/referrals/{ref}/move", {"to": "entered-in-error"}).status_code == 303


# -- who reads what ---------------------------------------------------------------------


def test_details_are_shown_only_on_hubs_the_person_agreed_to(
    net: Net, clock: Clock, desks: tuple[Desk, Desk]
) -> None:
    a, b = desks
    a.signed_in("a worker")
    subject = log_ada(a, net)
    net.gossip()
    b.signed_in("b worker")
    assert "Ada Lovelace" in b.get(f"/people/{subject}").text
    for c in open_desk(net.c, clock):
        c.signed_in("c admin")
        page = c.get(f"/people/{subject}").text
        assert "Their details are locked" in page and "Ada Lovelace" not in page
        assert "Erase this person" not in page  # only the hub that logged the enquiry


def test_nothing_personal_reaches_urls_or_the_log(
    desks: tuple[Desk, Desk], net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    a, _ = desks
    a.signed_in("a worker")
    subject = log_ada(a, net)
    urls = [str(r.url) for r in (a.get(f"/people/{subject}"), a.get(f"/refer?subject={subject}"))]
    pages = a.get(f"/refer?subject={subject}").text + a.get(f"/people/{subject}").text
    urls += re.findall(r'(?:href|action)="([^"]+)"', pages)
    secrets_ = ("Ada", "Lovelace", "07700", "ada@example.org", "Grange", "1961")
    for url in urls:
        assert not any(s in url for s in secrets_), url
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert not any(s in logged for s in (*secrets_, "a worker")), logged


# -- today and the network --------------------------------------------------------------


def test_today_warns_when_the_node_is_down_or_a_peer_lags(
    desks: tuple[Desk, Desk], net: Net
) -> None:
    a, _ = desks
    a.signed_in("a worker")
    assert "node is not running" in a.get("/").text
    path = status_path(net.a)
    path.parent.mkdir(exist_ok=True)
    status = {
        "running": True,
        "updated_at": a.clock.now,
        "nats": {"connected": True},
        "peers": {
            hub_display(net.b.hub): {"last_heard": a.clock.now, "lag": 120},
            hub_display(net.c.hub): {"last_heard": a.clock.now - 3600, "lag": 0},
        },
    }
    path.write_text(json.dumps(status))
    today = a.get("/").text
    assert "node is not running" not in today
    assert "This hub lacks 120 events that Hub B holds." in today
    assert "Nothing heard from Hub C for 60 minutes." in today
    network = a.get("/network").text
    assert "running and connected" in network
    assert re.search(r"Hub B.*?120 events", network, re.S)


def test_the_network_page_names_the_hubs_with_their_heads(
    desks: tuple[Desk, Desk], net: Net
) -> None:
    a, _ = desks
    a.signed_in("a worker")
    page = a.get("/network").text
    assert page.count("<h1>") == 1
    for name in ("Hub A", "Hub B", "Hub C"):
        assert name in page
    assert hub_display(net.b.hub) in page and "Forked" not in page


def test_every_page_has_one_h1_a_main_landmark_and_labelled_fields(
    desks: tuple[Desk, Desk], net: Net
) -> None:
    a, _ = desks
    a.signed_in("a admin")
    subject = log_ada(a, net)
    ref = (
        a.post("/refer", {"subject": subject, "to_hub": hub_display(net.b.hub)})
        .headers["location"]
        .removeprefix("/referrals/")
    )
    pages = [
        "/", "/enquiry", "/people", f"/people/{subject}", "/referrals", f"/referrals/{ref}",
        f"/refer?subject={subject}", f"/refer?subject={subject}&open=debt", "/followups",
        f"/referrals/{ref}/follow-up", "/advocacy", "/network",
    ]  # fmt: skip
    for path in pages:
        response = a.get(path)
        assert response.status_code == 200, path
        html = response.text
        assert html.count("<h1") == 1 and '<main id="main"' in html, path
        assert 'lang="en-GB"' in html and 'name="viewport"' in html, path
        ids = re.findall(r'<(?:input|select|textarea)[^>]*\bid="([^"]+)"', html)
        for found in re.finditer(r"<(input|select|textarea)\b([^>]*)>", html):
            attrs = found.group(2)
            if 'type="hidden"' in attrs:
                continue
            id_ = re.search(r'\bid="([^"]+)"', attrs)
            assert id_ is not None, (path, attrs)
            assert f'for="{id_.group(1)}"' in html, (path, id_.group(1))
        assert len(ids) == len(set(ids)), path  # ids are unique on a page


def test_a_casework_action_by_another_process_shows_at_once(
    desks: tuple[Desk, Desk], net: Net
) -> None:
    """The console's long-lived casework sees what a command appended since."""
    a, _ = desks
    a.signed_in("a worker")
    subject = log_ada(a, net)

    async def refer(cw: Casework) -> str:
        return (await cw.refer(subject, to_hub=net.b.hub)).ref

    ref = act(net.a, refer)
    assert f"/referrals/{ref}" in a.get("/referrals").text


# -- the other forms --------------------------------------------------------------------


def test_a_person_is_found_by_pseudonym(desks: tuple[Desk, Desk], net: Net) -> None:
    a, _ = desks
    a.signed_in("a worker")
    subject = log_ada(a, net)
    found = a.get(f"/people?subject={subject.upper()}")
    assert (found.status_code, found.headers["location"]) == (303, f"/people/{subject}")
    wrong = a.get("/people?subject=Ada")
    assert wrong.status_code == 400 and "s- and 20 letters" in error_for(wrong.text, "subject")
    missing = a.get("/people/s-" + "a" * 20)
    assert missing.status_code == 404 and "No person" in missing.text


def test_a_coordinator_records_a_withdrawal_of_consent(desks: tuple[Desk, Desk], net: Net) -> None:
    a, _ = desks
    a.signed_in("a coordinator")
    subject = log_ada(a, net)
    response = a.post(f"/people/{subject}/withdraw", {"withdraw_reason": "changed their mind"})
    assert response.status_code == 303
    assert "The person withdrew their consent" in a.get(f"/people/{subject}").text
    (withdrawn,) = bodies(net, "a", "consent.withdrawn")
    assert withdrawn["staff"] == pseudonym(net, "a", "a coordinator")
    again = a.post(
        f"/people/{subject}/consent", {"purpose": "referral", "agreed": "yes"}
    )  # consent recorded again, for this hub only
    assert again.status_code == 303
    refused = a.post(f"/people/{subject}/consent", {"purpose": "referral"})
    assert refused.status_code == 400 and "they agree" in error_for(refused.text, "agreed")


def test_advocacy_is_opened_from_a_referral_and_closed_with_an_outcome(
    desks: tuple[Desk, Desk], net: Net
) -> None:
    a, _ = desks
    a.signed_in("a coordinator")
    subject = log_ada(a, net)
    ref = (
        a.post("/refer", {"subject": subject, "to_hub": hub_display(net.b.hub)})
        .headers["location"]
        .removeprefix("/referrals/")
    )
    opened = a.post("/advocacy/open", {"ref": ref, "note": "taking it up"})
    assert opened.status_code == 303
    (case,) = bodies(net, "a", "advocacy.opened")
    listed = a.get("/advocacy").text
    assert f"Case {case['case']}" in listed and "taking it up" in listed
    before = log_kinds(net.a)
    unchosen = a.post(f"/advocacy/{case['case']}/close", {"note": "done"})
    assert unchosen.status_code == 400
    assert error_for(unchosen.text, f"outcome-{case['case']}") == "Choose how the case ended"
    assert log_kinds(net.a) == before
    assert a.post(f"/advocacy/{case['case']}/close", {"outcome": "withdrawn"}).status_code == 303
    assert f"Case {case['case']}" not in a.get("/advocacy").text
    assert "withdrawn" in a.get("/advocacy?all=1").text
    gone = a.post(f"/advocacy/{case['case']}/close", {"outcome": "resolved"})
    assert gone.status_code == 409 and "was closed on" in gone.text


def test_the_referral_list_filters_by_status_and_side(desks: tuple[Desk, Desk], net: Net) -> None:
    a, b = desks
    a.signed_in("a worker")
    b.signed_in("b worker")
    subject = log_ada(a, net)
    to_b = hub_display(net.b.hub)
    first = a.post("/refer", {"subject": subject, "to_hub": to_b}).headers["location"]
    second = a.post("/refer", {"subject": subject, "to_hub": to_b}).headers["location"]
    net.gossip()
    b.post(f"{first}/move", {"to": "accepted"})
    net.gossip()
    accepted = a.get("/referrals?status=accepted").text
    assert first in accepted and second not in accepted
    assert first in a.get("/referrals?role=referring").text
    assert first not in a.get("/referrals?role=receiving").text
    assert first in b.get("/referrals?role=receiving").text
