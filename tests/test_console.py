"""The staff console's safety: sign-in, sessions and their expiry, CSRF, the login rate
limit, roles, headers, and what never reaches URLs or logs.

Also the harness the console's page tests share (:class:`Net`, :class:`Desk`): hub
folders with staff accounts, the console of one hub driven by Starlette's TestClient
over https (so ``Secure`` cookies are sent), a clock the tests move, and events copied
between hubs as gossip would.
"""

from __future__ import annotations

import asyncio
import html as html_
import re
import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from starlette.testclient import TestClient

from hubnode.casework import Casework
from hubnode.config import HubFolder
from hubnode.console.app import create_app
from hubnode.console.permissions import PERMISSIONS, ROLES, allowed
from hubnode.console.staff import ScryptCost, StaffStore
from hubnode.console.web import Settings, cookie_name
from hubnode.events.directory import CapacityReported, ServicePublished
from hubnode.privacy.keyring import Keyring
from tests.conftest import NET, registered

T = TypeVar("T")
PASSWORD = "correct horse battery"
CHEAP = ScryptCost(n=16, r=1, p=1)  # a real scrypt, cheap enough for many tests
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
DEBT_ADVICE = ServicePublished(
    id="debt-advice",
    organisation="Care Navigators North",
    name="Debt advice clinic",
    description="Help with debts and money.",
    categories=("debt",),
)


class Clock:
    """The console's clock, moved by the tests (seconds since the epoch)."""

    def __init__(self) -> None:
        self.now = time.time()  # events carry their authors' real clocks: start from now

    def __call__(self) -> float:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += minutes * 60


def act(folder: HubFolder, action: Callable[[Casework], Awaitable[T]]) -> T:
    """Run one casework action on ``folder`` as a command would (its own process)."""

    async def go() -> T:
        async with Casework.open(folder) as cw:
            await cw.refresh()
            return await action(cw)

    return asyncio.run(go())


def gossip(*folders: HubFolder) -> None:
    """Every hub ingests every record the others hold."""

    async def go() -> None:
        logs = [await f.open_log(with_key=False) for f in folders]
        try:
            held = [[r async for r in log.export_records()] for log in logs]
            for log in logs:
                for records in held:
                    await log.ingest(records)
        finally:
            for log in logs:
                await log.close()

    asyncio.run(go())


def log_kinds(folder: HubFolder) -> list[tuple[str, bytes]]:
    """(kind, raw record) of every event of ``folder``'s own hub, in seq order."""
    with sqlite3.connect(folder.log_path) as db:
        rows = db.execute(
            "SELECT kind, raw FROM events WHERE hub = ? ORDER BY seq", (folder.hub,)
        ).fetchall()
    return [(kind, bytes(raw)) for kind, raw in rows]


class Net:
    """Hubs a, b and c: registered with seal keys, known to each other; b publishes a
    debt advice service. Each has a worker, a coordinator and an admin account."""

    def __init__(self, root: Path) -> None:
        self.folders = {name: HubFolder.open(root / name) for name in ("a", "b", "c")}

    @classmethod
    def create(cls, root: Path) -> Net:
        for name in ("a", "b", "c"):
            folder = HubFolder.init(root / name, name=f"Hub {name.upper()}", network=NET)

            async def register(folder: HubFolder = folder, name: str = name) -> None:
                async with await folder.open_log() as log:
                    with Keyring.open(folder) as ring:
                        body = registered(f"Hub {name.upper()}", ring.seal_key.public)
                        await log.append("hub.registered", body)

            asyncio.run(register())
            with StaffStore.open(folder.path) as store:
                for role in ROLES:
                    store.add(f"{name} {role}", role, PASSWORD, CHEAP)
        net = cls(root)

        async def publish(cw: Casework) -> None:
            await cw.log.append("service.published", DEBT_ADVICE)

        act(net.b, publish)
        net.gossip()
        return net

    @property
    def a(self) -> HubFolder:
        return self.folders["a"]

    @property
    def b(self) -> HubFolder:
        return self.folders["b"]

    @property
    def c(self) -> HubFolder:
        return self.folders["c"]

    def gossip(self) -> None:
        gossip(*self.folders.values())

    def capacity(self, status: str) -> None:
        async def report(cw: Casework) -> None:
            body = CapacityReported(service="debt-advice", status=status, as_of="2033-05-01")
            await cw.log.append("capacity.reported", body)  # type: ignore[arg-type]

        act(self.b, report)
        self.gossip()


class Desk:
    """One browser on one hub's console: signs in, follows forms, keeps the CSRF token."""

    def __init__(self, client: TestClient, folder: HubFolder, clock: Clock) -> None:
        self.client = client
        self.folder = folder
        self.clock = clock
        self.csrf = ""

    @property
    def cookie(self) -> str:
        """The name of this hub's session cookie (over https, as the client is)."""
        return cookie_name("session", self.folder.hub, secure=True)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        response = self.client.get(path, follow_redirects=False, **kw)
        found = CSRF.search(response.text)
        if found:
            self.csrf = found.group(1)
        return response

    def post(self, path: str, data: dict[str, Any], *, csrf: bool = True) -> httpx.Response:
        if csrf and not self.csrf:
            self.get("/")
        sent = {**data, "csrf": self.csrf} if csrf else data
        return self.client.post(path, data=sent, follow_redirects=False)

    def login(self, name: str, password: str = PASSWORD, *, next: str = "/") -> httpx.Response:
        page = self.client.get(f"/login?next={next}")
        token = CSRF.search(page.text)
        assert token is not None, page.text
        return self.client.post(
            f"/login?next={next}",
            data={"csrf": token.group(1), "name": name, "password": password},
            follow_redirects=False,
        )

    def signed_in(self, name: str) -> Desk:
        response = self.login(name)
        assert response.status_code == 303, response.text
        self.get("/")
        return self


def copy_net(made: Path, tmp: Path) -> Net:
    shutil.copytree(made, tmp / "net")
    return Net(tmp / "net")


def open_desk(folder: HubFolder, clock: Clock, settings: Settings | None = None) -> Iterator[Desk]:
    app = create_app(folder, settings or Settings(), clock=clock)
    with TestClient(app, base_url="https://testserver") as client:
        yield Desk(client, folder, clock)


@pytest.fixture
def desk(net: Net, clock: Clock) -> Iterator[Desk]:
    """Hub a's console, nobody signed in."""
    yield from open_desk(net.a, clock)


def error_for(html: str, field: str) -> str:
    """The error shown next to ``field``, checked to be tied to it by aria-describedby."""
    found = re.search(rf'<p class="error" id="{re.escape(field)}-error">(.*?)</p>', html, re.S)
    assert found is not None, f"no error next to {field}"
    described = re.search(rf'id="{re.escape(field)}"[^>]*aria-describedby="([^"]*)"', html)
    assert described is not None and f"{field}-error" in described.group(1).split(), field
    return html_.unescape(re.sub(r"<[^>]+>", "", found.group(1)).replace("Error:", "").strip())


# -- signing in -------------------------------------------------------------------------

PAGES = ["/", "/enquiry", "/people", "/referrals", "/followups", "/advocacy", "/network"]


@pytest.mark.parametrize("path", PAGES)
def test_signed_out_visitors_are_sent_to_sign_in(desk: Desk, path: str) -> None:
    response = desk.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == f"/login?next={path}"


def test_a_signed_out_post_appends_nothing_and_goes_to_sign_in(desk: Desk, net: Net) -> None:
    before = log_kinds(net.a)
    response = desk.post("/enquiry", {"name": "Ada"}, csrf=False)
    assert (response.status_code, response.headers["location"]) == (303, "/login?next=/")
    assert log_kinds(net.a) == before


def test_signing_in_sets_a_secure_http_only_strict_cookie_and_goes_on(desk: Desk) -> None:
    response = desk.login("A Worker", next="/referrals")  # names are not case-sensitive
    assert (response.status_code, response.headers["location"]) == (303, "/referrals")
    cookies = response.headers.get_list("set-cookie")
    cookie = next(c for c in cookies if c.startswith(f"{desk.cookie}="))
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= attributes
    assert desk.get("/referrals").status_code == 200


def test_sign_in_goes_nowhere_but_this_site(desk: Desk) -> None:
    response = desk.login("a worker", next="//evil.example/")
    assert response.headers["location"] == "/"


def test_a_wrong_password_is_refused_without_saying_which_was_wrong(desk: Desk) -> None:
    for name in ("a worker", "nobody at all"):
        response = desk.login(name, "not the password")
        assert response.status_code == 401
        assert "The name or the password is not right" in error_for(response.text, "password")
        assert not any(c.startswith(f"{desk.cookie}=") for c in response.headers.get_list(
            "set-cookie"
        ))  # fmt: skip
    assert desk.get("/").status_code == 303


def test_the_sign_in_form_needs_its_own_token(desk: Desk) -> None:
    desk.client.get("/login")
    response = desk.client.post(
        "/login", data={"csrf": "forged", "name": "a worker", "password": PASSWORD}
    )
    assert response.status_code == 403 and "expired" in response.text
    assert desk.get("/").status_code == 303


def test_sign_in_is_refused_after_too_many_failures_for_one_name(desk: Desk) -> None:
    for _ in range(5):
        assert desk.login("a worker", "wrong password").status_code == 401
    refused = desk.login("a worker")  # even the right password, until the window passes
    assert refused.status_code == 429
    assert "Too many failed sign-ins for this name. Wait 15 minutes" in refused.text
    assert desk.login("a admin").status_code == 303  # another name is not locked out
    desk.clock.advance(16)
    assert desk.login("a worker").status_code == 303


def test_sign_in_is_refused_after_too_many_failures_from_one_address(desk: Desk) -> None:
    for n in range(20):
        assert desk.login(f"guess {n}", "wrong password").status_code == 401
    refused = desk.login("a worker")
    assert refused.status_code == 429 and "for this computer" in refused.text


def test_a_session_ends_when_idle_too_long(desk: Desk) -> None:
    desk.signed_in("a worker")
    desk.clock.advance(29)
    assert desk.get("/").status_code == 200  # each request counts as activity
    desk.clock.advance(29)
    assert desk.get("/").status_code == 200
    desk.clock.advance(31)
    assert desk.get("/").status_code == 303


def test_a_session_ends_some_hours_after_sign_in_however_busy(desk: Desk) -> None:
    desk.signed_in("a worker")
    for _ in range(20):  # 10 hours of requests every 30 minutes less a bit
        desk.clock.advance(29.9)
        assert desk.get("/").status_code == 200
    desk.clock.advance(10)
    assert desk.get("/").status_code == 303


def test_signing_out_ends_the_session_for_good(desk: Desk) -> None:
    desk.signed_in("a worker")
    cookie = desk.client.cookies.get(desk.cookie)
    response = desk.post("/logout", {})
    assert (response.status_code, response.headers["location"]) == (303, "/login?signed-out")
    desk.client.cookies.set(desk.cookie, cookie or "", domain="testserver")
    assert desk.get("/").status_code == 303


def test_a_disabled_account_is_signed_out_and_cannot_sign_in(desk: Desk, net: Net) -> None:
    desk.signed_in("a worker")
    with StaffStore.open(net.a.path) as store:
        store.disable("A Worker")
    assert desk.get("/").status_code == 303
    assert desk.login("a worker").status_code == 401


def test_only_a_hash_of_the_session_token_is_stored(desk: Desk, net: Net) -> None:
    desk.signed_in("a worker")
    token = desk.client.cookies.get(desk.cookie)
    assert token
    stored = b"".join(p.read_bytes() for p in net.a.path.glob("staff.sqlite3*"))
    assert token.encode() not in stored
    assert (net.a.path / "staff.sqlite3").stat().st_mode & 0o777 == 0o600


# -- CSRF, roles, headers ---------------------------------------------------------------

POSTS = [
    "/enquiry",
    "/refer",
    "/people/s-aaaaaaaaaaaaaaaaaaaa/consent",
    "/people/s-aaaaaaaaaaaaaaaaaaaa/withdraw",
    "/people/s-aaaaaaaaaaaaaaaaaaaa/erase",
    "/referrals/hub:x:r-1/move",
    "/referrals/hub:x:r-1/follow-up",
    "/advocacy/open",
    "/advocacy/c-1/close",
    "/logout",
]


@pytest.mark.parametrize("path", POSTS)
def test_every_form_post_without_the_sessions_token_is_refused(
    desk: Desk, net: Net, path: str
) -> None:
    desk.signed_in("a admin")
    before = log_kinds(net.a)
    for token in (None, "forged"):
        data = {"name": "Ada Lovelace", "need": "debt", "channel": "walk-in"}
        if token is not None:
            data["csrf"] = token
        response = desk.post(path, data, csrf=False)
        assert response.status_code == 403 and "This form has expired" in response.text
    assert log_kinds(net.a) == before
    assert desk.get("/").status_code == 200  # still signed in: the post was only refused


def test_the_role_table_gives_workers_less_than_coordinators_less_than_admins() -> None:
    for permission in PERMISSIONS:
        rank = [allowed(role, permission) for role in ROLES]
        assert rank == sorted(rank), permission  # never more for a lower role
    assert not allowed("worker", "erase-person") and allowed("admin", "erase-person")
    assert not allowed("worker", "close-advocacy") and allowed("coordinator", "close-advocacy")
    assert not allowed("worker", "void-referral") and allowed("coordinator", "void-referral")
    assert not allowed("coordinator", "erase-person")


def test_pages_carry_the_security_headers(desk: Desk) -> None:
    for response in (desk.get("/login"), desk.get("/")):
        headers = response.headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"
        assert headers["strict-transport-security"].startswith("max-age=")
    static = desk.get("/static/console.css")
    assert static.status_code == 200 and "cache-control" not in static.headers
    assert "<script" not in desk.get("/login").text  # no inline script to allow


def test_plain_http_cookies_are_for_loopback_only(net: Net, clock: Clock) -> None:
    from hubnode.console.server import settings_for
    from hubnode.errors import ConfigError

    assert not settings_for("127.0.0.1", insecure_http=True).https
    assert settings_for("0.0.0.0", insecure_http=False).https
    with pytest.raises(ConfigError, match="only on a loopback address"):
        settings_for("0.0.0.0", insecure_http=True)
    for desk in open_desk(net.a, clock, Settings(https=False)):
        cookie = desk.login("a worker").headers["set-cookie"]
        plain = cookie_name("session", net.a.hub, secure=False)
        assert cookie.startswith(f"{plain}=") and "secure" not in cookie.lower()


def test_unknown_pages_get_a_page_not_a_trace(desk: Desk) -> None:
    desk.signed_in("a worker")
    missing = desk.get("/no/such/page")
    assert missing.status_code == 404 and "<h1>Page not found</h1>" in missing.text
    assert desk.get("/referrals/not-a-referral").status_code == 404
    assert desk.get("/people/someone").status_code == 404


def test_the_roles_table_in_the_docs_is_the_one_the_routes_check() -> None:
    from hubnode.console.permissions import DESCRIPTIONS

    doc = (Path(__file__).parents[1] / "docs" / "console.md").read_text()
    table = doc.split("<!-- roles:start -->\n")[1].split("<!-- roles:end -->")[0]
    rows = [
        "|"
        + "|".join([f" {DESCRIPTIONS[p]} "] + [" yes " if allowed(r, p) else " " for r in ROLES])
        + "|"
        for p in PERMISSIONS
    ]
    expected = "| permission | worker | coordinator | admin |\n|---|---|---|---|\n"
    assert table == expected + "\n".join(rows) + "\n"


def test_an_unexpected_error_is_logged_by_type_only(
    desk: Desk, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from hubnode.console import reading

    def broken(*args: object) -> list[str]:
        raise KeyError("Ada Lovelace 07700 900123")

    monkeypatch.setattr(reading, "warnings", broken)
    desk.signed_in("a worker")
    response = desk.get("/")
    assert response.status_code == 500 and "check whether it was saved" in response.text
    assert "Ada" not in response.text
    assert "KeyError in today" in caplog.text and "Ada" not in caplog.text


def test_every_value_the_pathway_knows_has_plain_words() -> None:
    from hubnode.console.pages import labels
    from hubnode.events.lifecycle import STATUSES
    from hubnode.events.pathway import ADVOCACY_OUTCOMES, CHANNELS, PURPOSES, URGENCIES

    assert list(labels.STATUS_LABELS) == list(STATUSES)
    assert set(labels.MOVE_LABELS) == {*STATUSES, "claim"} - {"requested"}
    assert list(labels.CHANNEL_LABELS) == list(CHANNELS)
    assert list(labels.PURPOSE_LABELS) == list(PURPOSES)
    assert list(labels.URGENCY_LABELS) == list(URGENCIES)
    assert list(labels.OUTCOME_LABELS) == list(ADVOCACY_OUTCOMES)
