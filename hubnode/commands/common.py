"""Shared pieces of the command line: options, output, errors, progress, data folders.

Every command module (``hubnode/cli.py`` and ``hubnode/commands/*.py``) builds on these,
so all commands behave alike: ``--data``/``HUBNODE_DATA``, ``--json``, one-line errors
(exit 1, or 2 for usage errors), progress bars only on a terminal.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn, TypeVar

import msgspec
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from hubnode.casework import InvalidInput, check_clear_text
from hubnode.config import HubFolder
from hubnode.errors import HubnodeError
from hubnode.events.fields import (
    LINE_RULE,
    REFUSED_IN_LINE,
    REFUSED_IN_TEXT,
    TEXT_RULE,
    first_refused,
)
from hubnode.events.ids import HUB_PREFIX, parse_hub
from hubnode.projections import ProjectionRunner
from hubnode.store.integrity import HELP

T = TypeVar("T")


def shown(text: str, *, lines: bool = False) -> str:
    """``text`` made safe to print: every character a body text field refuses (controls,
    bidi and zero-width characters, docs/protocol.md "Human text") written as a visible
    escape such as ``\\x1b`` or ``\\u202e``. ``lines`` keeps newlines and tabs."""
    return (REFUSED_IN_TEXT if lines else REFUSED_IN_LINE).sub(_escape, text)


_NAMED: Final = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(found: re.Match[str]) -> str:
    char = found.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


class Terminal(Console):
    """A rich Console for output that quotes peers' text (names, titles, notes).

    Strings are plain text: rich markup is read only where a print asks for it with
    ``markup=True`` (and escapes what it quotes), or ``[/]`` in a hub's name would stop a
    table and ``[link=…]`` would write a hyperlink. Every string printed, a table's cells
    included, goes through :func:`shown` (newlines kept): bodies refuse those characters
    now, but records stored before, views built before and hand-edited config files may
    still hold them."""

    def render_str(self, text: str, **options: Any) -> Text:
        return super().render_str(shown(text, lines=True), **options)


def terminal(*, stderr: bool = False, markup: bool = False) -> Terminal:
    """A :class:`Terminal` on stdout (or stderr), reading markup only if ``markup``."""
    console = Terminal(stderr=stderr, highlight=False, soft_wrap=True, markup=markup, emoji=False)
    if not stderr and not console.is_terminal:
        # Piped output (cron, CI, scripts) gets wide tables so hub ids are never cut short.
        console.width = 250
    return console


out = terminal()
err = terminal(stderr=True)

DataOpt = Annotated[
    Path,
    typer.Option(
        "--data", "-d", envvar="HUBNODE_DATA", help="The hub's data folder.", show_default=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
HubOpt = Annotated[str | None, typer.Option("--hub", help="Only this hub (hub:… id).")]


def fail(message: str, code: int = 1) -> NoReturn:
    # Messages carry paths, regexes and peers' values: never read them as rich markup.
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
    raise typer.Exit(code)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except HubnodeError as e:
        fail(str(e))
    except sqlite3.DatabaseError as e:
        # The event log maps its own (naming the file); this is any other database's.
        fail(f"database error: {e}; if it says malformed, see {HELP}")


def hub_arg(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        return parse_hub(text)
    except ValueError as e:
        fail(str(e), 2)


_HUB_LEN: Final = len(HUB_PREFIX) + 52


def parse_hub_ref(
    text: str, option: str, what: str, example: str, *, own: bytes | None = None
) -> tuple[bytes, str]:
    """``hub:…:ID`` → (hub bytes, ID): a record a hub named with its own id (a service,
    a referral). With ``own``, a bare ``ID`` names ``own``'s record. Exits 2 saying what
    is wrong."""
    value = text.strip()
    if own is not None and value and not value.startswith(HUB_PREFIX):
        return own, value
    hub_text, sep, local = value[:_HUB_LEN], value[_HUB_LEN : _HUB_LEN + 1], value[_HUB_LEN + 1 :]
    if not value.startswith(HUB_PREFIX) or sep != ":" or not local:
        fail(f"{option} {text!r}: write {what}, e.g. {example}", 2)
    try:
        hub = parse_hub(hub_text)
    except ValueError as e:
        fail(f"{option}: {e}", 2)
    return hub, local


def parse_service(text: str, option: str = "--service") -> tuple[bytes, str]:
    """``hub:…:SERVICE`` → (hub bytes, service id); exits 2 saying what is wrong."""
    return parse_hub_ref(
        text,
        option,
        "the publishing hub's id, a colon and the service id",
        "hub:abc…xyz:food-bank",
    )


def no_personal_data(option: str, text: str) -> None:
    """Exit 2 if ``text`` — which travels in clear to every hub — holds an email address
    or a phone number (the pathway actions' own check, :func:`check_clear_text`)."""
    try:
        check_clear_text(option, text)
    except InvalidInput as e:
        fail(str(e), 2)


def folder_of(data: Path) -> HubFolder:
    try:
        return HubFolder.open(data)
    except HubnodeError as e:
        fail(str(e))


def print_json(value: Any) -> None:
    """One line of JSON. JSON escapes only C0 controls; the other characters text fields
    refuse (DEL, C1 controls, bidi and zero-width characters) are written as ``\\uXXXX``
    escapes too, which decode to the same strings but cannot steer a terminal."""
    encoded = REFUSED_IN_LINE.sub(_json_escape, msgspec.json.encode(value).decode())
    sys.stdout.buffer.write(encoded.encode() + b"\n")
    sys.stdout.buffer.flush()


def _json_escape(found: re.Match[str]) -> str:
    # Outside strings JSON is ASCII, so every match is inside a string.
    return f"\\u{ord(found.group()):04x}"


def plain_text(option: str, value: str, *, lines: bool = False) -> str:
    """``value``, or exit 2 if it holds a character text fields refuse (one line unless
    ``lines``): for options that become config values or names peers see."""
    found = first_refused(value, lines=lines)
    if found is not None:
        rule = TEXT_RULE if lines else LINE_RULE
        fail(f"{option} {value!r}: {found} is not allowed; {option} takes {rule}", 2)
    return value


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal (stderr); silent when piped."""
    if not err.is_terminal:
        yield lambda n: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def when(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def runner_of(folder: HubFolder) -> ProjectionRunner:
    """The projection runner of ``folder`` (exits with a message if it has no log)."""
    from hubnode.node import projection_runner  # the node pulls in NATS: only when needed

    if not folder.log_path.exists():
        fail(f"no event log at {folder.log_path}; create the hub with `hubnode init`")
    try:
        return projection_runner(folder)
    except HubnodeError as e:
        fail(str(e))


def caught_up(folder: HubFolder) -> ProjectionRunner:
    """A runner whose projections have applied every event in the log (exits with one
    line if the views or the log cannot be read: damaged, say)."""
    runner = runner_of(folder)
    try:
        behind = sum(s.behind for s in runner.status() if s.status != "stopped")
        with progress("updating views", behind or None) as advance:
            runner.catch_up(progress=advance)
    except HubnodeError as e:
        runner.close()
        fail(str(e))
    return runner
