"""``hubnode projections``: the views each hub builds from the logs."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from hubnode.commands.common import (
    DataOpt,
    JsonOpt,
    caught_up,
    fail,
    folder_of,
    out,
    print_json,
    runner_of,
)
from hubnode.errors import HubnodeError, StorageError

projections_app = typer.Typer(
    help="The views each hub builds from the logs: list, status, rebuild, hash.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(projections_app, name="projections")


# -- projections ------------------------------------------------------------------------


@projections_app.command("list")
def projections_list(as_json: JsonOpt = False) -> None:
    """The installed projections: built-in and plugins (entry points `hubnode.projections`)."""
    from hubnode.projections import BUILTIN, installed_projections

    rows: list[dict[str, Any]] = [
        {
            "name": p.name,
            "version": p.version,
            "kinds": sorted(p.kinds),
            "tables": sorted(p.tables),
            "source": "built-in" if p in BUILTIN else f"plugin {p.__module__}",
        }
        for p in installed_projections()
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("name", "version", "kinds", "source")
    for r in rows:
        table.add_row(r["name"], str(r["version"]), ", ".join(r["kinds"]), r["source"])
    out.print(table)


@projections_app.command("status")
def projections_status(data: DataOpt, as_json: JsonOpt = False) -> None:
    """Each projection's builds: version, checkpoint, events behind, state and any error."""
    runner = runner_of(folder_of(data))
    try:
        rows = [vars(s) for s in runner.status()]
    except HubnodeError as e:  # the log or the views cannot be read (damaged, say)
        fail(str(e))
    finally:
        runner.close()
    if as_json:
        print_json(rows)
        return
    table = Table("projection", "build", "version", "checkpoint", "behind", "status", "error")
    for r in rows:
        error = f"{r['error_at']}: {r['error']}" if r["error"] else ""
        table.add_row(
            r["name"],
            str(r["build"]),
            str(r["version"]),
            str(r["checkpoint"]),
            str(r["behind"]),
            r["status"],
            error,
        )
    out.print(table)


@projections_app.command("rebuild")
def projections_rebuild(
    data: DataOpt,
    name: Annotated[str, typer.Argument(help="The projection to rebuild.", show_default=False)],
) -> None:
    """Rebuild a projection into fresh tables; the current ones serve until it has caught up."""
    folder = folder_of(data)
    runner = runner_of(folder)
    try:
        build = runner.rebuild(name)
    except StorageError as e:  # not a usage error: the views cannot be written
        fail(str(e))
    except HubnodeError as e:
        fail(str(e), 2)
    finally:
        runner.close()
    runner = caught_up(folder)
    status = next(s for s in runner.status() if s.name == name and s.build == build)
    runner.close()
    if status.status == "stopped":
        fail(f"{name} build {build} stopped at {status.error_at}: {status.error}")
    out.print(f"{name}: build {build} {status.status}, {status.checkpoint} events read")


@projections_app.command("hash")
def projections_hash(data: DataOpt, as_json: JsonOpt = False) -> None:
    """A digest of each projection's state: equal on every hub holding the same events."""
    runner = caught_up(folder_of(data))
    try:
        hashes = {p: runner.hash(p) for p in runner.projections}
    except HubnodeError as e:  # a damaged table met while hashing it
        fail(str(e))
    finally:
        runner.close()
    if as_json:
        print_json(hashes)
        return
    for name, digest in hashes.items():
        out.print(f"{name:<20} {digest}")
