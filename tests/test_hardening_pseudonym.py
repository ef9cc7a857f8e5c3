"""Issue 12 item 3: a pseudonym reused by another hub never blocks the person's casework.

A trusted but malicious hub (c) logs an ``enquiry.logged`` under the pseudonym hub a gave
Ada. At a, the owner, everything about Ada goes on as before: a's own subject comes first.
At b, which Ada's consent names, the pseudonym is ambiguous: the console lists the owners by
hub name with links that carry the owner, and the command line names them with ``--owner``.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from typer.testing import CliRunner

from hubnode.casework import Casework, PersonRecord, SeveralOwners
from hubnode.cli import app
from hubnode.config import HubFolder
from hubnode.events.ids import hub_display
from hubnode.events.pathway import EnquiryLogged
from tests.test_console import Desk, Net, act
from tests.test_console_pages import log_ada


def reuse(net: Net, subject: str) -> None:
    """Hub c logs an enquiry under ``subject``: a's own body, appended as c's."""

    async def copy(cw: Casework) -> None:
        (ev,) = await cw.log.events(hub=net.a.hub, kind="enquiry.logged")
        assert isinstance(ev.body, EnquiryLogged) and ev.body.subject == subject
        await cw.log.append("enquiry.logged", ev.body)

    act(net.c, copy)
    net.gossip()


@pytest.fixture
def reused(net: Net, desks: tuple[Desk, Desk]) -> str:
    """Ada's pseudonym, logged by a (consent: b) and then reused by c."""
    a, _ = desks
    a.signed_in("a coordinator")
    subject = log_ada(a, net)
    net.gossip()
    reuse(net, subject)
    return subject


def person_at(folder: HubFolder, subject: str, owner: bytes | None = None) -> PersonRecord:
    async def go() -> PersonRecord:
        async with Casework.open(folder) as cw:
            await cw.refresh()
            return cw.person(subject, owner)

    return asyncio.run(go())


def test_the_owner_reads_its_own_person_though_another_hub_reused_the_pseudonym(
    net: Net, reused: str
) -> None:
    record = person_at(net.a, reused)
    assert record.info.owner == net.a.hub
    assert record.details


def test_elsewhere_a_reused_pseudonym_names_its_owners_by_hub_name(net: Net, reused: str) -> None:
    with pytest.raises(SeveralOwners) as refused:
        person_at(net.b, reused)
    assert sorted(refused.value.owners) == sorted([net.a.hub, net.c.hub])
    message = str(refused.value)
    assert "Hub A" in message and "Hub C" in message and "--owner" in message
    record = person_at(net.b, reused, net.a.hub)
    assert record.details  # b holds a's key for Ada


def test_the_owners_console_opens_the_person_and_its_actions_still_work(
    desks: tuple[Desk, Desk], reused: str
) -> None:
    a, _ = desks
    page = a.get(f"/people/{reused}")
    assert page.status_code == 200, page.text
    assert "Ada Lovelace" in page.text
    withdraw = a.post(f"/people/{reused}/withdraw", {"withdraw_reason": "asked to stop"})
    assert withdraw.status_code == 303, withdraw.text


def test_another_hubs_console_lists_the_owners_with_links_that_carry_the_owner(
    net: Net, desks: tuple[Desk, Desk], reused: str
) -> None:
    _, b = desks
    b.signed_in("b worker")
    page = b.get(f"/people/{reused}")
    assert page.status_code == 200, page.text
    assert "Hub A" in page.text and "Hub C" in page.text
    links = re.findall(rf'href="(/people/{reused}\?owner=[^"]+)"', page.text)
    assert len(links) == 2, page.text
    owner_a = next(link for link in links if hub_display(net.a.hub) in link.replace("%3A", ":"))
    chosen = b.get(owner_a.replace("&amp;", "&"))
    assert chosen.status_code == 200 and "Ada Lovelace" in chosen.text
    bad = b.get(f"/people/{reused}?owner=hub:nonsense")
    assert bad.status_code == 404


def test_links_to_a_person_from_a_referral_carry_its_owner(
    net: Net, desks: tuple[Desk, Desk], reused: str
) -> None:
    a, b = desks
    form = a.get(f"/refer?subject={reused}")
    assert form.status_code == 200, form.text
    sent = a.post("/refer", {"subject": reused, "service": f"{hub_display(net.b.hub)}:debt-advice"})
    assert sent.status_code == 303, sent.text
    net.gossip()
    b.signed_in("b worker")
    listing = b.get("/referrals").text
    assert f"/people/{reused}?owner=" in listing, listing


def test_person_show_at_the_owner_works_and_elsewhere_asks_for_the_owner(
    net: Net, reused: str
) -> None:
    cli = CliRunner(env={"HUBNODE_DATA": None, "COLUMNS": "250", "NO_COLOR": "1"})
    at_a = cli.invoke(app, ["person", "show", "--data", str(net.a.path), reused])
    assert at_a.exit_code == 0, at_a.output
    assert "Ada Lovelace" in at_a.output
    at_b = cli.invoke(app, ["person", "show", "--data", str(net.b.path), reused])
    assert at_b.exit_code == 2, at_b.output
    assert "Hub A" in at_b.output and "--owner" in at_b.output
    chosen = cli.invoke(
        app,
        ["person", "show", "--data", str(net.b.path), reused, "--owner", hub_display(net.a.hub)],
    )
    assert chosen.exit_code == 0 and "Ada Lovelace" in chosen.output
    status = cli.invoke(app, ["person", "erasure-status", "--data", str(net.a.path), reused])
    assert status.exit_code == 0, status.output
