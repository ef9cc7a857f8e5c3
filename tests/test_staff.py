"""Staff accounts (``hubnode staff``), their password hashes and pseudonyms, and the
console served by ``hubnode console`` and inside ``hubnode run``."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import pytest
from typer.testing import CliRunner, Result

from hubnode.cli import app
from hubnode.commands import staff as staff_commands
from hubnode.config import HubFolder
from hubnode.console.staff import (
    MIN_PASSWORD,
    ScryptCost,
    StaffError,
    StaffStore,
    hash_password,
    new_pseudonym,
    verify_password,
)
from hubnode.events.pathway import STAFF_PATTERN
from hubnode.node import Node
from tests.conftest import NET

PASSWORD = "correct horse battery"
CHEAP = ScryptCost(n=16, r=1, p=1)


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner(env={"HUBNODE_DATA": None, "COLUMNS": "250", "NO_COLOR": "1"})


@pytest.fixture
def hub(tmp_path: Path) -> Path:
    HubFolder.init(tmp_path / "hub", name="Hub A", network=NET)
    return tmp_path / "hub"


def run(cli: CliRunner, *args: str | Path, input: str | None = None) -> Result:
    return cli.invoke(app, [str(a) for a in args], input=input)


# -- the store --------------------------------------------------------------------------


def test_a_password_hash_names_its_scrypt_parameters_and_verifies() -> None:
    stored = hash_password(PASSWORD, CHEAP)
    assert re.fullmatch(r"scrypt\$16\$1\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+", stored)
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD + " ", stored)
    assert hash_password(PASSWORD, CHEAP) != stored  # a fresh salt each time
    assert not verify_password(PASSWORD, "md5$abc")
    assert not verify_password(PASSWORD, "scrypt$16$1$1$not base64!$x")


def test_the_default_cost_is_a_real_interactive_login_setting() -> None:
    stored = hash_password(PASSWORD)
    n, r, p = (int(x) for x in stored.split("$")[1:4])
    assert (n, r, p) == (2**15, 8, 1)
    assert verify_password(PASSWORD, stored)


def test_pseudonyms_are_random_and_fit_the_events_staff_field() -> None:
    made = {new_pseudonym() for _ in range(200)}
    assert len(made) == 200
    assert all(re.match(STAFF_PATTERN, p) for p in made)


def test_accounts_keep_names_local_and_refuse_duplicates_and_weak_passwords(hub: Path) -> None:
    with StaffStore.open(hub) as store:
        ann = store.add("  Ann   Smith ", "worker", PASSWORD, CHEAP)
        assert (ann.name, ann.role, ann.disabled) == ("Ann Smith", "worker", False)
        assert store.by_name("ANN SMITH") == ann
        with pytest.raises(StaffError, match="already a staff account"):
            store.add("ann smith", "admin", PASSWORD, CHEAP)
        with pytest.raises(StaffError, match=f"at least {MIN_PASSWORD}"):
            store.add("Bob", "worker", "short", CHEAP)
        with pytest.raises(StaffError, match="use one of worker, coordinator, admin"):
            store.add("Bob", "boss", PASSWORD, CHEAP)
        with pytest.raises(StaffError, match="give a name"):
            store.add("   ", "worker", PASSWORD, CHEAP)
        assert [a.name for a in store.accounts()] == ["Ann Smith"]
    assert (hub / "staff.sqlite3").stat().st_mode & 0o777 == 0o600
    assert b"correct horse" not in (hub / "staff.sqlite3").read_bytes()


async def test_authenticate_checks_the_password_and_the_disabled_flag(hub: Path) -> None:
    with StaffStore.open(hub, clock=lambda: 1234) as store:
        store.add("Ann", "admin", PASSWORD, CHEAP)
        found = await store.authenticate("ann", PASSWORD)
        assert found is not None and found.last_login_ms == 1234
        assert await store.authenticate("ann", "wrong password") is None
        assert await store.authenticate("nobody", PASSWORD) is None
        store.disable("Ann")
        assert await store.authenticate("ann", PASSWORD) is None


def test_sessions_expire_and_end_with_the_account(hub: Path) -> None:
    now = [0]
    with StaffStore.open(hub, clock=lambda: now[0]) as store:
        ann = store.add("Ann", "worker", PASSWORD, CHEAP)
        token = store.start_session(ann)
        limits = {"idle_ms": 1000, "absolute_ms": 5000}
        session = store.session(token, **limits)
        assert session is not None and session.account == ann and len(session.csrf) >= 40
        store.flash(token, "done")
        assert store.session(token, **limits).flash == "done"  # type: ignore[union-attr]
        assert store.session(token, **limits).flash is None  # type: ignore[union-attr]
        now[0] = 1001
        assert store.session(token, **limits) is None  # idle too long, and now ended
        token = store.start_session(ann)
        store.disable("Ann")
        assert store.session(token, **limits) is None
        assert store.session("no such token", **limits) is None


# -- the commands -----------------------------------------------------------------------


def test_staff_add_reads_the_password_from_stdin_and_never_from_argv(
    cli: CliRunner, hub: Path
) -> None:
    added = run(
        cli, "staff", "add", "--data", hub, "--name", "Ann Smith", "--role", "coordinator",
        "--password-stdin", input=PASSWORD + "\n",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "added as coordinator" in added.output
    pseudonym = re.search(r"st-[a-z2-7]{16}", added.output)
    assert pseudonym is not None
    listed = json.loads(run(cli, "staff", "list", "--data", hub, "--json").stdout)
    assert listed == [
        {
            "name": "Ann Smith",
            "role": "coordinator",
            "pseudonym": pseudonym.group(0),
            "disabled": False,
            "created_ms": listed[0]["created_ms"],
            "last_login_ms": None,
        }
    ]
    help_text = run(cli, "staff", "add", "--help").output
    assert "--password-stdin" in help_text and "--password " not in help_text


def test_staff_add_without_a_terminal_or_stdin_flag_is_a_usage_error(
    cli: CliRunner, hub: Path
) -> None:
    result = run(cli, "staff", "add", "--data", hub, "--name", "Ann", "--role", "worker")
    assert result.exit_code == 2 and "--password-stdin" in result.output
    assert json.loads(run(cli, "staff", "list", "--data", hub, "--json").stdout) == []


def test_staff_add_asks_twice_on_a_terminal(
    cli: CliRunner, hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(staff_commands, "_interactive", lambda: True)
    args = ("staff", "add", "--data", hub, "--name", "Ann", "--role", "worker")
    differ = run(cli, *args, input=f"{PASSWORD}\n{PASSWORD}x\n")
    assert differ.exit_code == 2 and "the two passwords differ" in differ.output
    same = run(cli, *args, input=f"{PASSWORD}\n{PASSWORD}\n")
    assert same.exit_code == 0, same.output
    assert PASSWORD not in same.output  # not echoed


@pytest.mark.parametrize(
    ("role", "password", "says"),
    [("boss", PASSWORD, "--role 'boss'"), ("worker", "short", "at least 10 characters")],
)
def test_staff_add_refuses_bad_values(
    cli: CliRunner, hub: Path, role: str, password: str, says: str
) -> None:
    result = run(
        cli, "staff", "add", "--data", hub, "--name", "Ann", "--role", role, "--password-stdin",
        input=password + "\n",
    )  # fmt: skip
    assert result.exit_code == 2 and says in result.output


def test_staff_disable(cli: CliRunner, hub: Path) -> None:
    with StaffStore.open(hub) as store:
        store.add("Ann", "worker", PASSWORD, CHEAP)
    assert run(cli, "staff", "disable", "--data", hub, "--name", "ann").exit_code == 0
    assert "disabled" in run(cli, "staff", "list", "--data", hub).output
    missing = run(cli, "staff", "disable", "--data", hub, "--name", "Zed")
    assert missing.exit_code == 2 and "no staff account named 'Zed'" in missing.output


def test_console_refuses_plain_http_off_loopback(cli: CliRunner, hub: Path) -> None:
    result = run(cli, "console", "--data", hub, "--host", "0.0.0.0", "--insecure-http")
    assert result.exit_code == 2 and "TLS reverse proxy" in " ".join(result.output.split())


# -- served by the node -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_hubnode_run_serves_the_console_when_the_config_asks(hub: Path) -> None:
    from hubnode.console.server import node_attachments

    folder = HubFolder.open(hub)
    port = free_port()
    folder.config = msgspec.structs.replace(
        folder.config, console=True, console_port=port, console_insecure_http=True
    )
    folder.save_config()
    folder = HubFolder.open(hub)  # as `hubnode run` reads it
    with StaffStore.open(hub) as store:
        store.add("Ann", "worker", PASSWORD, CHEAP)
    stop, ready = asyncio.Event(), asyncio.Event()

    @asynccontextmanager
    async def listening(node: Node) -> AsyncIterator[None]:
        ready.set()  # attachments are entered in order: the console is serving
        yield

    node = Node(folder, attach=[*node_attachments(folder), listening])
    running = asyncio.create_task(node.run(stop))
    try:
        async with asyncio.timeout(30):
            await ready.wait()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            page = await client.get("/login")
            assert page.status_code == 200 and "Sign in" in page.text
            token = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert token is not None
            signed = await client.post(
                "/login", data={"csrf": token.group(1), "name": "ann", "password": PASSWORD}
            )
            assert signed.status_code == 303
            today = await client.get("/")
            assert today.status_code == 200 and "<h1>Today</h1>" in today.text
            assert "node is not running" not in today.text  # it reads the node's status
    finally:
        stop.set()
        await running
    with pytest.raises(httpx.ConnectError):  # stopped with the node
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/login")
