"""``hubnode audit``: verify signed logs as an auditor, and replay them into projections."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from hubnode.audit import AuditReport, audit_file, audit_folder
from hubnode.commands.common import JsonOpt, fail, out, print_json, progress, run_async
from hubnode.config import HubFolder
from hubnode.events.ids import hub_display

audit_app = typer.Typer(help="Verify signed logs as an auditor.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")


# -- audit ------------------------------------------------------------------------------


def _report_json(report: AuditReport, allow_forks: bool) -> dict[str, Any]:
    return {
        "source": report.source,
        "ok": report.ok(allow_forks),
        "records": report.records,
        "format_error": report.format_error,
        "failures": report.failure_count,
        "first_failures": [str(f) for f in report.failures[:10]],
        "hubs": {
            hub_display(h.hub): {
                "events": h.events,
                "head_seq": h.head_seq,
                "head_id": h.head_id.hex(),
                "forks": h.forks,
                "bad": h.bad,
            }
            for h in report.hubs.values()
        },
    }


def _print_report(report: AuditReport, allow_forks: bool) -> None:
    ok = report.ok(allow_forks)
    mark = "[green]verified[/]" if ok else "[bold red]FAILED[/]"
    source = escape(report.source)
    out.print(f"{source}: {report.records} records, {len(report.hubs)} hubs — {mark}", markup=True)
    table = Table("hub", "events", "head seq", "head id", "forks", "status")
    for h in report.hubs.values():
        status = "ok" if h.verified else (f"{h.bad} bad" if h.bad else "forked")
        table.add_row(
            hub_display(h.hub),
            str(h.events),
            str(h.head_seq),
            h.head_id.hex()[:16],
            ", ".join(map(str, h.forks)) or "-",
            status,
        )
    out.print(table)
    if report.format_error:
        out.print(f"[bold red]format:[/] {escape(report.format_error)}", markup=True)
    if report.failures:
        out.print(f"[bold red]first bad record:[/] {escape(str(report.failures[0]))}", markup=True)
        if report.failure_count > 1:
            out.print(f"… and {report.failure_count - 1} more bad records")
    for h in report.hubs.values():
        for seq in h.forks:
            out.print(
                f"[bold red]fork:[/] {hub_display(h.hub)} signed two events at seq {seq}",
                markup=True,
            )


async def _replay_projections(source: Path) -> dict[str, str]:
    """Replay ``source`` (a .hublog file or a data folder) into fresh projections in a temp
    log and views database; each installed projection's hash, as `projections hash` prints."""
    import tempfile
    from collections.abc import AsyncIterator

    from hubnode.events.envelope import decode_record
    from hubnode.hublog import HublogFormatError, read_hublog
    from hubnode.projections import ProjectionRunner, installed_projections
    from hubnode.store.log import EventLog

    async def from_file() -> AsyncIterator[bytes]:
        with open(source, "rb") as f:
            try:
                for _, raw in read_hublog(f):
                    yield raw
            except HublogFormatError:
                return  # the audit reports it; replay what came before

    async def from_folder() -> AsyncIterator[bytes]:
        folder = HubFolder.open(source)
        async with await EventLog.open(
            folder.log_path, net=folder.config.network, create=False
        ) as held:
            async for raw in held.export_records():
                yield raw

    if source.is_dir():
        net = HubFolder.open(source).config.network
        records = from_folder()
    else:
        net = "unknown"  # an empty file: nothing to replay
        async for raw in from_file():  # the network the records name (the audit checks it)
            try:
                net = decode_record(raw)[1].net
                break
            except Exception:
                continue
        records = from_file()
    with tempfile.TemporaryDirectory(prefix="hubnode-replay-") as tmp:
        log_path, views_path = Path(tmp) / "log.sqlite3", Path(tmp) / "views.sqlite3"
        async with await EventLog.open(log_path, net=net) as log:
            chunk: list[bytes] = []
            async for raw in records:
                chunk.append(raw)
                if len(chunk) == 5000:
                    await log.ingest(chunk, trusted=None)
                    chunk = []
            await log.ingest(chunk, trusted=None)
        runner = ProjectionRunner(log_path, views_path, installed_projections())
        try:
            runner.catch_up()
            return {name: runner.hash(name) for name in runner.projections}
        finally:
            runner.close()


@audit_app.command("verify")
def audit_verify(
    sources: Annotated[
        list[Path], typer.Argument(help=".hublog files or hub data folders.", show_default=False)
    ],
    allow_forks: Annotated[
        bool, typer.Option(help="Exit 0 even when fork proofs are found (they are still shown).")
    ] = False,
    projections: Annotated[
        bool,
        typer.Option(
            "--projections",
            help="Also replay the logs into fresh projections and print each one's hash, "
            "to compare with `hubnode projections hash` on a live hub.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check every signature, chain link and seq. Exits 0 only if everything verifies."""
    reports: list[AuditReport] = []
    hashes: list[dict[str, str]] = []
    for source in sources:
        if source.is_dir():
            with progress(f"auditing {source}", None) as advance:
                reports.append(run_async(audit_folder(source, advance)))
        elif source.is_file():
            with progress(f"auditing {source}", source.stat().st_size) as advance:
                reports.append(audit_file(source, advance))
        else:
            fail(f"{source} is neither a .hublog file nor a hub data folder", 2)
        if projections:
            with progress(f"replaying {source} into projections", None):
                hashes.append(run_async(_replay_projections(source)))
    if as_json:
        rows = [_report_json(r, allow_forks) for r in reports]
        for row, replayed in zip(rows, hashes, strict=False):
            row["projections"] = replayed
        print_json(rows)
    else:
        for i, report in enumerate(reports):
            _print_report(report, allow_forks)
            if projections:
                out.print("projection hashes of the replayed log:")
                for name, digest in hashes[i].items():
                    out.print(f"{name:<20} {digest}")
    if not all(r.ok(allow_forks) for r in reports):
        raise typer.Exit(1)
