"""``hubnode tender watch add|list|remove|run``: local watches on the network's tenders.

A watch is kept in the data folder and never shared; ``run`` prints each tender that
matches a watch when it is new or has changed since last shown (a line, or JSON lines).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Final

import typer
from rich.table import Table

from hubnode.casework.inputs import InvalidInput
from hubnode.casework.tenders import (
    add_watch,
    fingerprint,
    load_watches,
    matches,
    remove_watch,
    save_watches,
)
from hubnode.casework.tenders import (
    tenders as read_tenders,
)
from hubnode.commands.common import (
    DataOpt,
    JsonOpt,
    caught_up,
    fail,
    folder_of,
    out,
    print_json,
    shown,
)
from hubnode.config import HubFolder
from hubnode.errors import ConfigError
from hubnode.projections.runner import ProjectionRunner

POLL_S: Final = 0.5

watch_app = typer.Typer(
    help="Local watches: be told of new or changed tenders that match.", no_args_is_help=True
)


def _watches(folder: HubFolder) -> dict[str, Any]:
    try:
        return load_watches(folder)
    except ConfigError as e:
        fail(str(e))


@watch_app.command("add")
def watch_add(
    data: DataOpt,
    category: Annotated[str | None, typer.Option(help="Tenders with this category.")] = None,
    area: Annotated[
        str | None, typer.Option(help="Tenders in this postcode district (or area, e.g. DL).")
    ] = None,
    min_value: Annotated[float | None, typer.Option(help="Value at least this.")] = None,
    max_value: Annotated[float | None, typer.Option(help="Value at most this.")] = None,
) -> None:
    """Add a local watch (kept in the data folder, not shared)."""
    try:
        watch = add_watch(
            folder_of(data),
            category=category,
            area=area,
            min_value=min_value,
            max_value=max_value,
        )
    except InvalidInput as e:
        fail(str(e), 2)
    except ConfigError as e:
        fail(str(e))
    out.print(f"added watch {watch['id']}")


@watch_app.command("list")
def watch_list(data: DataOpt, as_json: JsonOpt = False) -> None:
    """The watches of this hub."""
    watches = _watches(folder_of(data))["watches"]
    if as_json:
        print_json(watches)
        return
    table = Table("id", "category", "area", "min value", "max value")
    for w in watches:
        table.add_row(
            *(str(w[k]) if w[k] is not None else "-" for k in ("id", "category", "area")),
            *(str(w[k]) if w[k] is not None else "-" for k in ("min_value", "max_value")),
        )
    out.print(table)


@watch_app.command("remove")
def watch_remove(
    data: DataOpt, watch_id: Annotated[int, typer.Argument(help="The watch's id.")]
) -> None:
    """Remove a watch."""
    try:
        remove_watch(folder_of(data), watch_id)
    except InvalidInput as e:
        fail(str(e), 2)
    except ConfigError as e:
        fail(str(e))
    out.print(f"removed watch {watch_id}")


def _show_new(
    folder: HubFolder, runner: ProjectionRunner, state: dict[str, Any], as_json: bool
) -> None:
    """Print each tender that matches a watch and is new or changed since last shown."""
    changed = False
    for t in read_tenders(runner):
        hits = [w["id"] for w in state["watches"] if matches(w, t)]
        print_ = fingerprint(t)
        if not hits or state["shown"].get(t["ocid"]) == print_:
            continue
        kind = "changed" if t["ocid"] in state["shown"] else "new"
        state["shown"][t["ocid"]] = print_
        changed = True
        if as_json:
            print_json({"event": kind, "watches": hits, "tender": t})
        else:
            value = f"{t['value']['amount']} {t['value']['currency']}"
            out.print(
                f"{kind} {t['ocid']}: {shown(t['title'])} — {shown(t['buyer'])}, {value}, "
                f"ends {t['period']['end']} (watch {', '.join(map(str, hits))})"
            )
    if changed:
        save_watches(folder, state)


@watch_app.command("run")
def watch_run(
    data: DataOpt,
    once: Annotated[bool, typer.Option("--once", help="Print current matches and exit.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Stream new or changed tenders matching a watch as they arrive (Ctrl-C stops)."""
    folder = folder_of(data)
    state = _watches(folder)
    if not state["watches"]:
        fail("no watches; add one with `hubnode tender watch add`", 2)
    runner = caught_up(folder)
    try:
        _show_new(folder, runner, state, as_json)
        while not once:
            time.sleep(POLL_S)  # a poll of the view at the edge, never in tests (--once)
            if runner.step():
                runner.catch_up()
                _show_new(folder, runner, _watches(folder) | {"shown": state["shown"]}, as_json)
    except KeyboardInterrupt:
        pass
    finally:
        runner.close()
