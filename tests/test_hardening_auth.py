"""Issue 12 (hardening), the console's sign-in.

Item 2: the sign-in limit could be bypassed by writing a name another way (the limiter
and the account lookup folded names differently), or by a loopback client sending a
made-up ``X-Forwarded-For``. Item 6: two consoles on one host shared one cookie, so
signing in at one signed the user out of the other.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import tomllib
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import pytest

from hubnode.config import HubFolder
from hubnode.console.app import create_app
from hubnode.console.security import LoginLimiter
from hubnode.console.server import ConsoleServer
from hubnode.console.staff import StaffStore, hash_password, staff_key
from hubnode.console.web import Settings
from hubnode.errors import ConfigError
from tests.conftest import NET
from tests.test_console import CHEAP, CSRF, PASSWORD, Clock, Desk, error_for, open_desk

ANN = "Ann Smith"
FULLWIDTH_ANN = "\uff21\uff4e\uff4e \uff33\uff4d\uff49\uff54\uff48"  # Ann Smith, fullwidth
SPELLINGS = ["Ann  Smith", "Ann\u00a0Smith", "ann\tsmith", "Ann\u2003Smith", FULLWIDTH_ANN]


def make_hub(path: Path, name: str, staff: str) -> HubFolder:
    """A new hub (its log created) with one staff account, ``staff``."""
    folder = HubFolder.init(path, name=name, network=NET)

    async def create_log() -> None:
        await (await folder.open_log()).close()

    asyncio.run(create_log())
    with StaffStore.open(folder.path) as store:
        store.add(staff, "coordinator", PASSWORD, CHEAP)
    return folder


@pytest.fixture
def hub(tmp_path: Path) -> HubFolder:
    """A hub with one account, "Ann Smith"."""
    return make_hub(tmp_path / "hub", "Hub A", ANN)


@pytest.fixture
def desk(hub: HubFolder) -> Iterator[Desk]:
    yield from open_desk(hub, Clock())


def signed_in_as(desk: Desk) -> str | None:
    """The staff name the console shows on Today, or None when it sends us to sign in."""
    page = desk.get("/")
    if page.status_code != 200:
        return None
    found = re.search(r'<span class="who">([^<]+?) <span class="role">', page.text)
    assert found is not None, page.text
    return found.group(1)


# -- item 2: one key for a staff name -----------------------------------------------------


def test_a_staff_key_ignores_case_width_and_kinds_of_space() -> None:
    """Issue 12 item 2: every way of writing a name that looks the same is one key."""
    assert {staff_key(name) for name in [ANN, *SPELLINGS]} == {"ann smith"}
    assert staff_key("  Ann \u200bSmith\n") == "ann smith"  # an invisible character is none
    assert staff_key("STRASSE") == staff_key("Straße")
    assert staff_key("Ann Smyth") != staff_key(ANN)


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_the_limit_for_a_name_holds_however_the_name_is_written(desk: Desk, spelling: str) -> None:
    """Issue 12 item 2: after 5 failures for "Ann Smith", another spelling of the name
    gets no more guesses."""
    for _ in range(5):
        assert desk.login(ANN, "wrong password").status_code == 401
    refused = desk.login(spelling, "another wrong password")
    assert refused.status_code == 429, refused.text
    assert "Too many failed sign-ins for this name" in refused.text


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_another_spelling_cannot_sign_in_past_the_limit(desk: Desk, spelling: str) -> None:
    """Issue 12 item 2: "Ann\u2003Smith" with the right password signed in after the
    limit for "Ann Smith" was reached."""
    for _ in range(5):
        assert desk.login(spelling, "wrong password").status_code == 401
    assert desk.login(ANN).status_code == 429
    assert signed_in_as(desk) is None
    desk.clock.advance(16)
    assert desk.login(ANN).status_code == 303


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_spelling_of_a_name_signs_in_to_its_one_account(desk: Desk, spelling: str) -> None:
    """Issue 12 item 2: the account lookup uses the same key (fullwidth letters too)."""
    assert desk.login(spelling).status_code == 303
    assert signed_in_as(desk) == ANN


def test_a_name_longer_than_any_account_is_refused_before_the_limiter(desk: Desk) -> None:
    """Issue 12 item 2: the limiter keeps only names an account could have (bounded)."""
    for _ in range(25):  # more than the per-address limit: none is counted
        response = desk.login("x" * 121, "wrong password")
        assert response.status_code == 400
        assert error_for(response.text, "name") == "Enter a name of at most 120 characters"
    assert desk.login(ANN).status_code == 303


def test_the_limiter_counts_a_name_by_its_staff_key() -> None:
    """Issue 12 item 2: the limiter itself folds with :func:`staff_key`."""
    limiter = LoginLimiter(lambda: 0.0, per_account=2, per_address=100)
    limiter.failed(ANN, "192.0.2.1")
    limiter.failed("ann\u00a0smith", "192.0.2.2")
    assert limiter.blocked(FULLWIDTH_ANN, "192.0.2.3") == ("account", 15 * 60)
    limiter.succeeded("ANN  SMITH")
    assert limiter.blocked(ANN, "192.0.2.3") is None


def test_a_name_that_folds_to_a_taken_one_is_refused(hub: HubFolder) -> None:
    """Issue 12 item 2: one account per staff key."""
    from hubnode.console.staff import StaffError

    with StaffStore.open(hub.path) as store:
        with pytest.raises(StaffError, match="already a staff account"):
            store.add(FULLWIDTH_ANN, "worker", PASSWORD, CHEAP)
        with pytest.raises(StaffError, match="give a name"):
            store.add("\u200b\u200d", "worker", PASSWORD, CHEAP)
        ann = store.by_name("ann\u2003smith")
        assert ann is not None and ann.name == ANN


_OLD_SCHEMA = """
CREATE TABLE staff (
    pseudonym TEXT PRIMARY KEY, name TEXT NOT NULL, folded TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL, password TEXT NOT NULL, disabled INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL, last_login_ms INTEGER
);
CREATE TABLE sessions (
    token_hash BLOB PRIMARY KEY, pseudonym TEXT NOT NULL REFERENCES staff (pseudonym),
    csrf TEXT NOT NULL, created_ms INTEGER NOT NULL, seen_ms INTEGER NOT NULL, flash TEXT
);
"""


def old_staff_file(folder: Path, names: Sequence[str]) -> None:
    """``staff.sqlite3`` as the console wrote it before item 2: the name's whitespace
    collapsed and case-folded, nothing more."""
    with sqlite3.connect(folder / "staff.sqlite3") as db:
        db.executescript(_OLD_SCHEMA)
        for n, name in enumerate(names):
            shown = " ".join(name.split())
            db.execute(
                "INSERT INTO staff VALUES (?, ?, ?, 'worker', ?, 0, ?, NULL)",
                (f"st-{n:016d}", shown, shown.casefold(), hash_password(PASSWORD, CHEAP), n),
            )


async def test_an_account_made_before_the_change_still_signs_in(tmp_path: Path) -> None:
    """Issue 12 item 2: an existing staff file is re-folded when opened."""
    old_staff_file(tmp_path, [ANN, "\uff2ao Brown"])  # a fullwidth J, folded to a fullwidth j
    with StaffStore.open(tmp_path) as store:
        for name, shown in [("ann smith", ANN), ("Jo Brown", "\uff2ao Brown")]:
            found = await store.authenticate(name, PASSWORD)
            assert found is not None and found.name == shown
    with sqlite3.connect(tmp_path / "staff.sqlite3") as db:
        folded = {row[0] for row in db.execute("SELECT folded FROM staff")}
    assert folded == {"ann smith", "jo brown"}


@pytest.mark.parametrize("names", [[ANN, FULLWIDTH_ANN], [FULLWIDTH_ANN, ANN]])
async def test_old_accounts_that_now_share_a_name_are_not_merged(
    tmp_path: Path, names: list[str]
) -> None:
    """Issue 12 item 2: of two old accounts whose names now fold alike, the one that
    already answered to the plain name keeps it; the other is disabled, rather than
    merged or left to answer to the first one's name."""
    old_staff_file(tmp_path, names)
    plain = f"st-{names.index(ANN):016d}"
    with StaffStore.open(tmp_path) as store:
        found = await store.authenticate(FULLWIDTH_ANN, PASSWORD)
        assert found is not None and found.pseudonym == plain
        assert {a.pseudonym: a.disabled for a in store.accounts()}[plain] is False
        assert [a.disabled for a in store.accounts()].count(True) == 1
    with StaffStore.open(tmp_path) as store:  # done once: opening again changes nothing
        assert [a.disabled for a in store.accounts()].count(True) == 1
        assert (await store.authenticate(ANN, PASSWORD)) == store.by_pseudonym(plain)


# -- item 2: X-Forwarded-For from trusted proxies only ------------------------------------


@asynccontextmanager
async def serving(server: ConsoleServer) -> AsyncIterator[str]:
    """``server`` listening; its base URL."""
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        await server.stop()


async def sign_in(
    client: httpx.AsyncClient, base: str, name: str, password: str, forwarded: str | None = None
) -> int:
    """The status of one sign-in at ``base`` (sent with ``X-Forwarded-For: forwarded``)."""
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    page = await client.get(f"{base}/login", headers=headers)
    token = CSRF.search(page.text)
    assert token is not None, page.text
    data = {"csrf": token.group(1), "name": name, "password": password}
    return (await client.post(f"{base}/login", data=data, headers=headers)).status_code


LIMITED = Settings(https=False, login_per_address=3)


async def test_a_loopback_client_cannot_reset_the_address_limit_with_x_forwarded_for(
    hub: HubFolder,
) -> None:
    """Issue 12 item 2: with no trusted proxy (the default) a made-up X-Forwarded-For is
    ignored and the client is counted by its socket's address."""
    server = ConsoleServer(create_app(hub, LIMITED), "127.0.0.1", 0)
    async with serving(server) as base, httpx.AsyncClient() as client:
        for n in range(3):
            assert await sign_in(client, base, f"guess {n}", "wrong password") == 401
        for forwarded in ("203.0.113.9", "198.51.100.1, 203.0.113.10"):
            assert await sign_in(client, base, ANN, PASSWORD, forwarded) == 429


def trusting(folder: HubFolder, proxies: list[str]) -> HubFolder:
    """``folder`` with ``trusted_proxies`` set in its hubnode.toml, read back."""
    folder.config = msgspec.structs.replace(folder.config, trusted_proxies=tuple(proxies))
    folder.save_config()
    return HubFolder.open(folder.path)


async def test_a_trusted_proxys_x_forwarded_for_names_the_client(hub: HubFolder) -> None:
    """Issue 12 item 2: from a trusted proxy, the client is the right-most address of
    X-Forwarded-For that is not itself a trusted proxy; what the client wrote to the
    left of it changes nothing."""
    folder = trusting(hub, ["127.0.0.1", "10.0.0.0/8"])
    server = ConsoleServer.of(folder, LIMITED, "127.0.0.1", 0)
    async with serving(server) as base, httpx.AsyncClient() as client:
        for n in range(3):
            forwarded = f"192.0.2.{n}, 203.0.113.9, 10.1.2.3"  # client → 10.1.2.3 → us
            assert await sign_in(client, base, f"guess {n}", "wrong password", forwarded) == 401
        for forwarded in ("203.0.113.9", "192.0.2.200, 203.0.113.9", "203.0.113.9, 10.9.9.9"):
            assert await sign_in(client, base, ANN, PASSWORD, forwarded) == 429, forwarded
        assert await sign_in(client, base, ANN, PASSWORD, "203.0.113.10") == 303


def test_trusted_proxies_are_ip_addresses_or_networks(hub: HubFolder) -> None:
    """Issue 12 item 2: ``trusted_proxies`` defaults to none and is validated."""
    assert hub.config.trusted_proxies == ()
    folder = trusting(hub, ["127.0.0.1", "::1", "10.0.0.0/8", "fd00::/8"])
    assert folder.config.trusted_proxies == ("127.0.0.1", "::1", "10.0.0.0/8", "fd00::/8")
    config = hub.path / "hubnode.toml"
    for bad in ("localhost", "10.0.0.1/8", "300.1.1.1"):
        settings = tomllib.loads(config.read_text())
        config.write_bytes(msgspec.toml.encode({**settings, "trusted_proxies": [bad]}))
        with pytest.raises(ConfigError, match=rf"trusted_proxies: {re.escape(repr(bad))}"):
            HubFolder.open(hub.path)


# -- item 6: cookies scoped to the hub ----------------------------------------------------


@pytest.fixture
def hub_b(tmp_path: Path) -> HubFolder:
    """Another hub, with one account, "Bea Jones"."""
    return make_hub(tmp_path / "hub-b", "Hub B", "Bea Jones")


async def test_two_consoles_on_one_host_keep_their_own_sessions(
    hub: HubFolder, hub_b: HubFolder
) -> None:
    """Issue 12 item 6: signing in at hub B's console (another port of the same host)
    leaves the user signed in at hub A's."""
    insecure = Settings(https=False)
    servers = [ConsoleServer.of(f, insecure, "127.0.0.1", 0) for f in (hub, hub_b)]
    async with (
        serving(servers[0]) as at_a,
        serving(servers[1]) as at_b,
        httpx.AsyncClient() as client,  # one browser: one cookie jar
    ):
        assert await sign_in(client, at_a, ANN, PASSWORD) == 303
        assert await sign_in(client, at_b, "Bea Jones", PASSWORD) == 303
        for base, who in ((at_a, ANN), (at_b, "Bea Jones")):
            today = await client.get(f"{base}/")
            assert today.status_code == 200 and who in today.text, base
        names = {cookie.name for cookie in client.cookies.jar}
    hub_a, hub_b = (f.config.hub_id.removeprefix("hub:")[:10] for f in (hub, hub_b))
    assert {f"hubnode-session-{hub_a}", f"hubnode-session-{hub_b}"} <= names


def test_secure_cookies_are_named_for_the_hub_with_the_host_prefix(desk: Desk) -> None:
    """Issue 12 item 6: over https the names are ``__Host-`` + the hub-scoped name."""
    short = desk.folder.config.hub_id.removeprefix("hub:")[:10]
    page = desk.client.get("/login")
    assert page.headers["set-cookie"].startswith(f"__Host-hubnode-login-{short}=")
    signed = desk.login(ANN)
    cookies = signed.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith(f"__Host-hubnode-session-{short}="))
    attributes = {a.strip().lower() for a in session.split(";")[1:]}
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= attributes
