"""The staff console in a real browser: headless Chromium (Debian's ``/usr/bin/chromium``,
installed by ``make test``) driven by Playwright, against two real ``hubnode run`` nodes
with ``console = true`` on a real nats-server.

One journey, as staff would walk it: sign in at hub A, log an enquiry with consent for hub
B, refer it to B's service; sign in at B, see it arrive on "today", accept it, complete it;
back at A, record the follow-up. A second walk visits every other page of the console (the
directory, a service, the printable directory, skills, time credits, tenders, a tender,
network, find a person, referrals, advocacy) as a coordinator, using a few of their forms.
Every page visited is saved as a screenshot at 1280 and 360 px wide under
``tests/artifacts/browser/`` (git-ignored), must log no error in the browser's console and
must pass axe-core (vendored by ``axe-playwright-python``, injected from disk) with no
serious or critical violation.

Run only these: ``.venv/bin/pytest -q -m browser`` (docs/console.md, "Testing").
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Final

import pytest
import pytest_asyncio
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from hubnode import HubFolder
from hubnode.console.staff import StaffStore
from hubnode.events.directory import ServicePublished
from hubnode.events.tenders import ClusterFormed, Lot, Period, TenderShared, Value

from .cluster import Cluster, free_port, trust_each_other, wait_until
from .test_console import CHEAP, PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM: Final = Path("/usr/bin/chromium")
ARTIFACTS: Final = Path(__file__).parent / "artifacts" / "browser"
WIDTHS: Final = (1280, 360)
WAIT_MS: Final = 15_000
"""Bound on any one wait in the browser (a page load, an element to appear)."""
SERIOUS: Final = frozenset({"serious", "critical"})
# The flags Chromium needs here: no sandbox as root in a container, and no background
# traffic to Google's hosts, which a closed network refuses (and which would be slow).
CHROMIUM_ARGS: Final = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DEBT_ADVICE: Final = ServicePublished(
    id="debt-advice",
    organisation="Care Navigators North",
    name="Debt advice clinic",
    description="Help with debts and money.",
    categories=("debt",),
)
HOME_CARE: Final = TenderShared(
    ocid="ocds-hubnode-home-care-1",
    title="Home care in Darlington",
    buyer="Darlington Borough Council",
    value=Value(amount=120000, currency="GBP"),
    period=Period(start=date(2030, 1, 1), end=date(2030, 3, 1)),
    lots=(Lot(id="L1", title="North"), Lot(id="L2", title="South")),
    categories=("care",),
    area=("DL1",),
)
B_CLUSTER: Final = ClusterFormed(cluster="b-care", tender=HOME_CARE.ocid, lots=("L1", "L2"))


class Hubs:
    """Hubs A and B: registered with seal keys, trusting each other, each running
    ``hubnode run`` with its console on 127.0.0.1 and a random port; B publishes a service,
    shares a tender and forms a bid cluster for it. A has a worker and a coordinator."""

    def __init__(self, cluster: Cluster, a: HubFolder, b: HubFolder) -> None:
        self.cluster = cluster
        self.a = a
        self.b = b

    @staticmethod
    def url(folder: HubFolder) -> str:
        return f"http://127.0.0.1:{folder.config.console_port}"


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def hubs(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Hubs]:
    cluster = Cluster(tmp_path_factory.mktemp("browser"))
    try:
        await cluster.start_server()
        a, b = (
            cluster.hub(name, console=True, console_insecure_http=True, console_port=free_port())
            for name in ("Hub A", "Hub B")
        )
        trust_each_other([a, b])
        for folder in (a, b):
            await cluster.append(folder, 1)  # hub.registered, with the seal key
            with StaffStore.open(folder.path) as store:
                store.add(f"{folder.config.name} worker", "worker", PASSWORD, CHEAP)
        with StaffStore.open(a.path) as store:
            store.add("Hub A coordinator", "coordinator", PASSWORD, CHEAP)
        writer = await cluster.writer(b)
        await writer.append("service.published", DEBT_ADVICE)
        await writer.append("tender.shared", HOME_CARE)
        await writer.append("cluster.formed", B_CLUSTER)
        await cluster.close_logs(b)
        for folder in (a, b):
            await cluster.start(folder)
        for folder in (a, b):
            await wait_until(
                lambda f=folder: _serving(f), 15, f"{folder.config.name}'s console", cluster.logs
            )
        yield Hubs(cluster, a, b)
    finally:
        codes = await cluster.close()
    assert all(c == [0] for c in codes.values()), f"{codes}\n{cluster.logs()}"


async def _serving(folder: HubFolder) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", folder.config.console_port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():  # fail, never skip: a skipped journey would pass unseen
        pytest.fail(
            f"{CHROMIUM} is missing: `make test` installs Debian's chromium (as root:"
            ' apt-get install chromium); meanwhile run the rest with -m "not browser"',
            pytrace=False,
        )
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


class Desk:
    """One member of staff at one hub's console, in a browser page of their own.

    Every page reached through :meth:`look` is screenshot at each width, checked with
    axe-core, and must have logged no console error."""

    axe = Axe()
    shots = 0

    def __init__(self, page: Page, base: str, hub: str) -> None:
        self.page = page
        self.base = base
        self.hub = hub
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        page.set_default_timeout(WAIT_MS)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console error at {message.location}: {message.text}")

    async def goto(self, path: str, what: str) -> None:
        response = await self.page.goto(self.base + path)
        assert response is not None and response.ok, (path, response and response.status)
        await self.look(what)

    async def look(self, what: str) -> None:
        """Check the page the browser is on now and save its screenshots."""
        page = self.page
        await page.wait_for_load_state("load")
        Desk.shots += 1
        slug = re.sub(r"[^a-z0-9]+", "-", f"{self.hub} {what}".lower()).strip("-")
        for width in WIDTHS:
            await page.set_viewport_size({"width": width, "height": 800})
            await page.screenshot(
                path=ARTIFACTS / f"{Desk.shots:02d}-{slug}-{width}.png", full_page=True
            )
            # At 360 px nothing may spill sideways (the page must reflow, not scroll).
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{what} at {self.hub} is {overflow}px too wide at {width}px"
        results = await self.axe.run(page)
        # Every finding goes to the report, for a person to read; only the serious and
        # critical ones (failures of WCAG A/AA that block people) fail the test.
        with open(ARTIFACTS / "axe.txt", "a") as report:
            report.write(f"== {Desk.shots:02d} {self.hub}: {what} ({page.url})\n")
            for v in results.response["violations"]:
                report.write(f"{v['impact']}: {v['id']} - {v['help']} ({len(v['nodes'])})\n")
        serious = [
            f"{v['id']} ({v['impact']}): {v['help']} at "
            + "; ".join(", ".join(n["target"]) for n in v["nodes"][:3])
            for v in results.response["violations"]
            if v["impact"] in SERIOUS
        ]
        assert not serious, f"axe on {what} at {self.hub}:\n" + "\n".join(serious)
        assert not self.errors, f"on {what} at {self.hub}:\n" + "\n".join(self.errors)

    async def submit(self, button: str | re.Pattern[str], what: str, status: int = 200) -> None:
        """Press the button named ``button`` and check the page it leads to, which must
        come with ``status`` (after any redirect)."""
        async with self.page.expect_navigation() as navigation:
            await self.page.get_by_role("button", name=button, exact=True).click()
        response = await navigation.value
        assert response is not None and response.status == status, (what, response)
        if status >= 400:
            # Chromium logs every 4xx page as a failed load; this one was asked for (a form
            # sent back with its errors), so only that one message is expected.
            expected = f"the server responded with a status of {status}"
            failed = [e for e in self.errors if expected in e and response.url in e]
            assert len(failed) == 1, self.errors
            self.errors.remove(failed[0])
        await self.look(what)

    async def sign_in(self, name: str) -> None:
        await self.goto("/", "sign in")
        await self.page.get_by_label("Your name").fill(name)
        await self.page.get_by_label("Password").fill(PASSWORD)
        await self.submit("Sign in", "today")
        await expect(self.page.get_by_role("heading", level=1)).to_have_text(re.compile("Today"))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def desks(browser: Browser, hubs: Hubs) -> AsyncIterator[tuple[Desk, Desk]]:
    """A browser context (its own cookies) for each hub's console."""
    contexts = [await browser.new_context(viewport={"width": 1280, "height": 800}) for _ in "ab"]
    try:
        a = Desk(await contexts[0].new_page(), Hubs.url(hubs.a), "A")
        b = Desk(await contexts[1].new_page(), Hubs.url(hubs.b), "B")
        yield a, b
    finally:
        for context in contexts:
            await context.close()


async def test_a_referral_goes_from_hub_a_to_hub_b_and_back_in_a_browser(
    desks: tuple[Desk, Desk], hubs: Hubs
) -> None:
    a, b = desks
    page = a.page

    # At A: sign in and log Ada's enquiry, with her consent for hub B.
    await a.sign_in("Hub A worker")
    # From the keyboard, the first stop is the link past the menus to the page's content.
    await page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to main content")
    await expect(skip).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("main")).to_be_focused()
    await page.get_by_role("link", name="Log an enquiry").click()
    await a.look("log an enquiry")
    await a.submit("Log the enquiry", "log an enquiry, with its errors", status=400)
    summary = page.get_by_role("alert")
    await expect(summary).to_contain_text("There is a problem")
    await expect(page.get_by_label("Full name")).to_have_attribute("aria-invalid", "true")
    await page.get_by_label("Full name").fill("Ada Lovelace")
    await page.get_by_label("Phone number").fill("07700 900123")
    await page.get_by_label("Postcode district").fill("DL1")
    await page.locator('input[name="need"][value="debt"]').check()
    await page.locator('input[name="channel"][value="walk-in"]').check()
    await page.get_by_label("Hub B", exact=True).check()
    await page.locator('input[name="agreed"]').check()
    await a.submit("Log the enquiry", "the person")
    await expect(page.get_by_role("status")).to_contain_text("pseudonym is s-")
    subject = page.url.rsplit("/", 1)[1]
    assert re.fullmatch(r"s-[a-z2-7]{20}", subject), page.url

    # Refer her to B's debt advice clinic.
    await a.goto(f"/refer?subject={subject}", "refer: choose a service")
    await page.get_by_role("link", name="Refer to Debt advice clinic").click()
    await a.look("refer: the referral")
    await page.get_by_label("Note for the receiving hub", exact=False).first.fill("mornings")
    await a.submit("Make the referral", "the referral at A")
    ref = page.url.rsplit("/referrals/", 1)[1]
    assert ref.startswith("hub:"), page.url

    # At B: it arrives on "today" by gossip; open it, accept it, complete it.
    await b.sign_in("Hub B worker")
    link = b.page.locator(f'a[href="/referrals/{ref}"]')

    async def arrived() -> bool:
        await b.page.reload()
        return await link.count() > 0

    await wait_until(arrived, 20, "the referral on B's today page", hubs.cluster.logs)
    await b.look("today, with the referral")
    await link.first.click()
    await b.look("the referral at B")
    await expect(b.page.get_by_text("mornings")).to_be_visible()
    await b.submit("Accept", "the referral, accepted")
    done = b.page.locator("form.move", has=b.page.locator('input[name="to"][value="completed"]'))
    await done.get_by_label("Outcome").fill("payment plan agreed")
    await done.get_by_label("Yes").check()
    await b.submit("Mark as completed", "the referral, completed")
    await expect(b.page.get_by_text("payment plan agreed").first).to_be_visible()

    # Back at A: the completion arrives; record the follow-up with the person.
    async def completed() -> bool:
        await page.goto(f"{a.base}/referrals/{ref}")
        return "payment plan agreed" in await page.content()

    await wait_until(completed, 20, "the completion at A", hubs.cluster.logs)
    await a.look("the referral at A, completed")
    await page.get_by_role("link", name="Record a follow-up with the person").click()
    await a.look("record a follow-up")
    await page.get_by_label("Yes, they are satisfied").check()
    await page.get_by_label("Note").fill("all sorted")
    await a.submit("Record the follow-up", "the referral, followed up")
    await a.goto("/followups", "follow-ups")


async def test_every_other_page_of_the_console_passes_in_a_browser(
    browser: Browser, hubs: Hubs
) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        a = Desk(await context.new_page(), Hubs.url(hubs.a), "A")
        page = a.page
        await a.sign_in("Hub A coordinator")

        # B's service and tender reach A by gossip (at once when the journey ran first).
        async def synced() -> bool:
            await page.goto(f"{a.base}/tenders")
            tender = await page.get_by_role("link", name=HOME_CARE.title).count()
            await page.goto(f"{a.base}/directory")
            return tender > 0 and await page.get_by_text(DEBT_ADVICE.name).count() > 0

        await wait_until(synced, 20, "B's service and tender at A", hubs.cluster.logs)
        await a.look("directory")
        await page.get_by_role("link", name=DEBT_ADVICE.name).first.click()
        await a.look("a service")
        await a.goto("/directory/print", "the printable directory")

        await a.goto("/skills", "skills")
        await page.get_by_label("Short title").fill("Help filling in forms")
        await page.get_by_label("Skills", exact=True).fill("form-filling")
        await page.get_by_label("Postcode districts").fill("DL1")
        await a.submit("Save", "skills, with this hub's offer")
        await expect(page.get_by_role("status")).to_contain_text("other hubs see it")
        await a.submit(re.compile("^Withdraw this offer"), "skills, offer withdrawn")
        await expect(page.get_by_role("status")).to_contain_text("is withdrawn")
        await a.goto("/time", "time credits")

        await a.goto("/tenders", "tenders")
        await page.get_by_role("link", name=HOME_CARE.title).click()
        await a.look("a tender")
        await expect(page.get_by_text("b-care").first).to_be_visible()
        await page.get_by_label("Name of the cluster").fill("a-care")
        await a.submit("Form the cluster", "a tender, with this hub's cluster")
        await expect(
            page.get_by_role("heading", name="Submit the bid of cluster a-care")
        ).to_be_visible()

        for path, what in [
            ("/network", "network"),
            ("/people", "find a person"),
            ("/referrals", "referrals"),
            ("/advocacy", "advocacy"),
            ("/followups", "follow-ups, as a coordinator"),
        ]:
            await a.goto(path, what)
    finally:
        await context.close()
