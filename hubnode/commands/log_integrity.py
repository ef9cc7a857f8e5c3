"""``hubnode log check`` and ``hubnode log repair``: is the log still what it stored?

``check`` verifies every record as ingest did, the chains and SQLite's own pages and
indexes, and names what is damaged; ``repair`` rebuilds a damaged log from sound copies
of its records (docs/operating.md, "A stored record is damaged"; docs/storage.md).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated

import typer

from hubnode.commands.common import (
    DataOpt,
    JsonOpt,
    err,
    fail,
    folder_of,
    out,
    print_json,
    progress,
    run_async,
)
from hubnode.config import HubFolder
from hubnode.errors import ConfigError, HubnodeError
from hubnode.events.ids import hub_display, parse_hub
from hubnode.hublog import HublogFormatError, read_hublog
from hubnode.store.integrity import HELP, LogReport
from hubnode.store.log import EventLog


def register(log_app: typer.Typer) -> None:
    """Add ``check`` and ``repair`` to the ``hubnode log`` group."""
    log_app.command("check")(log_check)
    log_app.command("repair")(log_repair)


_SHOWN_BAD = 100
"""Damaged records `log check` names one per line; `--json` lists them all."""


def log_check(data: DataOpt, as_json: JsonOpt = False) -> None:
    """Verify every record (signatures, chains) and SQLite's pages; name damage, exit 1 if any."""
    folder = folder_of(data)

    async def check() -> tuple[LogReport, dict[bytes, str]]:
        async with await folder.open_log(with_key=False) as log:
            total = await log.last_pos()  # not count(): it reads an index, maybe the damage
            with progress("checking", total or None) as advance:
                report = await log.check(advance)
            return report, await hub_names(folder, log, {bad.hub for bad in report.bad})

    report, names = run_async(check())
    where = folder.log_path

    def named(hub: bytes) -> str:
        name = names.get(hub)
        return hub_display(hub) + (f" ({name})" if name else "")

    if as_json:
        print_json(
            {
                "log": str(where),
                "ok": report.ok,
                "records": report.records,
                "hubs": report.hubs,
                "fork_proofs": report.proofs,
                "sqlite": report.sqlite,
                "unreadable": report.unreadable,
                "bad_records": [
                    {**bad.as_json(), "name": names.get(bad.hub)} for bad in report.bad
                ],
            }
        )
    else:
        repair = f"`hubnode log repair --data {folder.path}"
        if report.sqlite or report.unreadable:
            err.print(
                f"damaged: event log {where}: SQLite's integrity check: {report.sqlite_line()}; "
                f"rebuild it with {repair}` ({HELP})",
                markup=False,
            )
        for bad in report.bad[:_SHOWN_BAD]:
            err.print(
                f"damaged: {named(bad.hub)} seq {bad.seq}: {bad.reason}: {bad.detail}; "
                f"repair it from a sound copy with {repair} --from COPY` ({HELP})",
                markup=False,
            )
        if len(report.bad) > _SHOWN_BAD:
            err.print(f"… and {len(report.bad) - _SHOWN_BAD} more (`--json` lists all)")
        if report.ok:
            out.print(
                f"{where}: {_n(report.records, 'record')} of {_n(report.hubs, 'hub')} and "
                f"{_n(report.proofs, 'fork proof')} verified; SQLite integrity check ok",
                markup=False,
            )
    if not report.ok:
        raise typer.Exit(1)


def _n(count: int, thing: str) -> str:
    return f"{count} {thing}{'' if count == 1 else 's'}"


def log_repair(
    data: DataOpt,
    sources: Annotated[
        list[Path] | None,
        typer.Option(
            "--from",
            help="A sound copy: a .hublog export (any holder's, e.g. `hubnode log export "
            "--hub HUB` run at a peer) or a hub data folder (a backup). Repeatable.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Rebuild a damaged log with sound copies of its damaged records (stop the node first)."""
    from hubnode.node import read_status
    from hubnode.store.repair import repair_log

    folder = folder_of(data)
    status = read_status(folder) or {}
    if status.get("running") and _alive(status.get("pid")):
        fail(f"the node of {folder.path} is running (pid {status['pid']}): stop it first", 2)
    copies = []
    for source in sources or []:
        if source.is_dir():
            copies.append(_folder_records(folder_of(source)))
        elif source.is_file():
            copies.append(_hublog_records(source))
        else:
            fail(f"--from {source}: no such file or folder", 2)
    done = run_async(repair_log(folder.log_path, folder.config.network, copies, progress=progress))
    if done.kept is None:
        out.print(f"{folder.log_path}: sound, nothing to repair", markup=False)
        return
    out.print(
        f"repaired {folder.log_path}: {done.records} records rebuilt in their places; "
        f"{len(done.replaced)} replaced by sound copies, {len(done.ids_fixed)} with what "
        f"was stored beside them rewritten, {done.twins_replaced} fork-proof twins replaced. "
        f"The damaged file is kept as {done.kept}: delete it once `hubnode log check` passes",
        markup=False,
    )


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, run by another user
    return True


def _folder_records(source: HubFolder) -> Callable[[], AsyncIterator[bytes]]:
    async def records() -> AsyncIterator[bytes]:
        async with await source.open_log(with_key=False, create=False) as log:
            # As stored: each copy is verified before it is used, and one damaged record
            # in the source must not hide the sound ones.
            async for raw in log.export_records(checked=False):
                yield raw

    return records


def _hublog_records(source: Path) -> Callable[[], AsyncIterator[bytes]]:
    async def records() -> AsyncIterator[bytes]:
        with open(source, "rb") as f:
            try:
                for _, raw in read_hublog(f):
                    yield raw
            except HublogFormatError as e:
                raise ConfigError(f"--from {source}: {e}") from None

    return records


async def hub_names(folder: HubFolder, log: EventLog, hubs: set[bytes]) -> dict[bytes, str]:
    """Names for ``hubs``: given when trusting them, else registered in their first event."""
    names = {folder.hub: folder.config.name}
    names.update({parse_hub(t.id): t.name for t in folder.config.trust if t.name})
    for hub in hubs - set(names):
        try:
            first = await log.events(hub=hub, kind="hub.registered", limit=1)
        except HubnodeError:  # that record may be the damaged one
            continue
        name = getattr(first[0].body, "name", None) if first else None
        if name:
            names[hub] = name
    return {h: n for h, n in names.items() if h in hubs}
