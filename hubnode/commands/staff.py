"""``hubnode staff`` (the hub's staff accounts) and ``hubnode console`` (the staff
console's web server). See docs/console.md.

Passwords never go on the command line, where other users of the machine and the shell's
history could read them: ``staff add`` asks twice on a terminal, or reads one line from
standard input with ``--password-stdin`` for scripts.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import typer
from rich.table import Table

from hubnode.commands.common import (
    DataOpt,
    JsonOpt,
    fail,
    folder_of,
    out,
    plain_text,
    print_json,
    run_async,
    when,
)
from hubnode.console.permissions import ROLES
from hubnode.console.staff import StaffError, StaffStore
from hubnode.errors import ConfigError

staff_app = typer.Typer(
    help="The hub's staff accounts for the console: add, list, disable.", no_args_is_help=True
)

NameOpt = Annotated[
    str, typer.Option("--name", help="The staff member's name: they sign in with it.")
]


def register(app: typer.Typer) -> None:
    app.add_typer(staff_app, name="staff")
    app.command("console")(console)


def _interactive() -> bool:
    """Whether someone at a terminal can type a password (tests replace this)."""
    return sys.stdin.isatty()


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not _interactive():
        fail("give the password on a terminal, or pipe it in with --password-stdin", 2)
    first: str = typer.prompt("Password", hide_input=True)
    again: str = typer.prompt("The same password again", hide_input=True)
    if first != again:
        fail("the two passwords differ; nothing was saved", 2)
    return first


@staff_app.command("add")
def staff_add(
    data: DataOpt,
    name: NameOpt,
    role: Annotated[
        str, typer.Option(help=f"What they may do: {', '.join(ROLES)} (docs/console.md).")
    ],
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from standard input (scripts)."),
    ] = False,
) -> None:
    """Add a staff account. Asks for the password twice (or reads it with --password-stdin)."""
    plain_text("--name", name)
    folder = folder_of(data)
    if role not in ROLES:
        fail(f"--role {role!r}: use one of {', '.join(ROLES)}", 2)
    password = _password(password_stdin)
    try:
        with StaffStore.open(folder.path) as store:
            account = store.add(name, role, password)
    except StaffError as e:
        fail(str(e), 2)
    out.print(f"staff account {account.name!r} added as {account.role}", markup=False)
    out.print(f"their pseudonym in events: {account.pseudonym}", markup=False)


@staff_app.command("list")
def staff_list(data: DataOpt, as_json: JsonOpt = False) -> None:
    """List the staff accounts: name, role, pseudonym, active or disabled, last sign-in."""
    folder = folder_of(data)
    with StaffStore.open(folder.path) as store:
        accounts = store.accounts()
    if as_json:
        print_json(
            [
                {
                    "name": a.name,
                    "role": a.role,
                    "pseudonym": a.pseudonym,
                    "disabled": a.disabled,
                    "created_ms": a.created_ms,
                    "last_login_ms": a.last_login_ms,
                }
                for a in accounts
            ]
        )
        return
    if not accounts:
        out.print("no staff accounts yet; add one with `hubnode staff add`", markup=False)
        return
    table = Table("name", "role", "pseudonym", "status", "last sign-in")
    for a in accounts:
        table.add_row(
            a.name,
            a.role,
            a.pseudonym,
            "disabled" if a.disabled else "active",
            when(a.last_login_ms) if a.last_login_ms else "never",
        )
    out.print(table)


@staff_app.command("disable")
def staff_disable(data: DataOpt, name: NameOpt) -> None:
    """Disable a staff account: they are signed out at once and cannot sign in again."""
    folder = folder_of(data)
    try:
        with StaffStore.open(folder.path) as store:
            account = store.disable(name)
    except StaffError as e:
        fail(str(e), 2)
    out.print(f"staff account {account.name!r} disabled; its sessions ended", markup=False)


def console(
    data: DataOpt,
    host: Annotated[
        str, typer.Option(help="Address to listen on; keep 127.0.0.1 behind a reverse proxy.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8470,
    insecure_http: Annotated[
        bool,
        typer.Option(
            "--insecure-http",
            help="Plain http without a TLS proxy (cookies not Secure): loopback addresses only.",
        ),
    ] = False,
) -> None:
    """Serve the staff console (web pages for hub staff) until Ctrl-C. See docs/console.md."""
    import logging
    import signal

    from hubnode.console.server import serve, settings_for

    folder = folder_of(data)
    try:
        settings = settings_for(host, insecure_http)
    except ConfigError as e:
        fail(str(e), 2)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(folder, host, port, settings, stop)

    run_async(main())
