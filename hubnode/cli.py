"""The ``hubnode`` command line: the edge where ``asyncio.run`` lives."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

from hubnode.commands import (
    audit,
    directory,
    feedback,
    followup,
    pathway,
    person,
    projections,
    referral,
    skills,
    staff,
    tenders,
)
from hubnode.commands.common import (
    DataOpt,
    HubOpt,
    JsonOpt,
    caught_up,
    err,
    fail,
    folder_of,
    hub_arg,
    out,
    print_json,
    progress,
    run_async,
    when,
)
from hubnode.config import EMBEDDED, HubFolder, check_nats_url
from hubnode.errors import HubnodeError
from hubnode.events.ids import hub_display, short_hub
from hubnode.events.kinds import KINDS
from hubnode.events.verify import Event
from hubnode.hublog import HublogWriter

app = typer.Typer(
    help="hubnode: signed event logs for a peer-to-peer network of community hubs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
log_app = typer.Typer(help="Read, append to and export this hub's event log.", no_args_is_help=True)
peers_app = typer.Typer(help="The hubs this node trusts and sees.", no_args_is_help=True)
app.add_typer(log_app, name="log")
app.add_typer(peers_app, name="peers")


# -- identity ---------------------------------------------------------------------------


@app.command()
def init(
    data: DataOpt,
    name: Annotated[str, typer.Option(help="The hub's name as peers will see it.")],
    network: Annotated[str, typer.Option(help="Network name, e.g. darlington-csn.")],
    nats_url: Annotated[
        str, typer.Option(help='NATS server URL, or "embedded" to run a local one.')
    ] = EMBEDDED,
) -> None:
    """Create a new hub: signing key (mode 0600), config file and empty log. Prints the hub id."""
    try:
        folder = HubFolder.init(data, name=name, network=network, nats_url=nats_url)
    except ValueError as e:
        fail(str(e), 2)
    except HubnodeError as e:
        fail(str(e))

    async def create_log() -> None:
        # The empty log records its network and owner; `audit verify DATA` works at once.
        async with await folder.open_log():
            pass

    run_async(create_log())
    out.print(folder.config.hub_id)


@app.command("id")
def show_id(data: DataOpt) -> None:
    """Print this hub's id (hub:… followed by the base32 public key)."""
    out.print(folder_of(data).config.hub_id)


# -- the log ----------------------------------------------------------------------------


def _event_json(ev: Event) -> dict[str, Any]:
    return {
        "pos": ev.pos,
        "hub": hub_display(ev.hub),
        "seq": ev.seq,
        "id": ev.id.hex(),
        "prev": ev.prev.hex() if ev.prev else None,
        "ts": ev.ts,
        "kind": ev.kind,
        "body": msgspec.to_builtins(ev.body),
    }


@log_app.command("show")
def log_show(
    data: DataOpt,
    hub: HubOpt = None,
    kind: Annotated[str | None, typer.Option(help="Only events of this kind.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many events.", min=1)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print events in local order, decoded for people (--json: one JSON object per line)."""
    hub_id = hub_arg(hub)
    folder = folder_of(data)

    async def show() -> None:
        async with await folder.open_log(with_key=False) as log:
            after, shown = 0, 0
            while limit is None or shown < limit:
                page = await log.events(after_pos=after, hub=hub_id, kind=kind, limit=500)
                if not page:
                    break
                for ev in page[: None if limit is None else limit - shown]:
                    if as_json:
                        print_json(_event_json(ev))
                    else:
                        body = msgspec.json.encode(ev.body).decode()
                        out.print(
                            f"{ev.pos:>6}  {short_hub(ev.hub)}  #{ev.seq:<5} {when(ev.ts)}  "
                            f"{ev.kind:<20} {body}",
                            markup=False,
                        )
                    shown += 1
                after = page[-1].pos

    run_async(show())


@log_app.command("append")
def log_append(
    data: DataOpt,
    kind: Annotated[str, typer.Option(help="A registered kind (see `hubnode log kinds`).")],
    body: Annotated[str, typer.Option("--json", help="The event body as a JSON object.")],
) -> None:
    """Sign and append one event of this hub, after validating its body. Prints seq and id."""
    folder = folder_of(data)
    try:
        parsed = KINDS.body_from_json(kind, body)
    except HubnodeError as e:
        fail(str(e), 2)

    async def append() -> None:
        async with await folder.open_log() as log:
            done = await log.append(kind, parsed)
        out.print(f"appended {kind} seq {done.seq} id {done.id.hex()}")

    run_async(append())


@log_app.command("kinds")
def log_kinds(as_json: JsonOpt = False) -> None:
    """List the event kinds this hubnode knows, with their body fields."""
    rows: list[dict[str, Any]] = []
    for spec in KINDS:
        fields = [
            f.encode_name + ("" if f.required else "?") for f in msgspec.structs.fields(spec.body)
        ]
        rows.append(
            {
                "kind": spec.kind,
                "version": spec.version,
                "fields": fields,
                "about": spec.description,
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table("kind", "v", "fields (? = optional)", "about")
    for row in rows:
        table.add_row(row["kind"], str(row["version"]), ", ".join(row["fields"]), row["about"])
    out.print(table)


@log_app.command("heads")
def log_heads(data: DataOpt, as_json: JsonOpt = False) -> None:
    """Print the last seq and event id this log holds for every hub."""
    folder = folder_of(data)

    async def heads() -> None:
        async with await folder.open_log(with_key=False) as log:
            held = await log.heads()
        if as_json:
            print_json({hub_display(h): {"seq": v.seq, "id": v.id.hex()} for h, v in held.items()})
            return
        table = Table("hub", "seq", "head id")
        for h, v in held.items():
            table.add_row(hub_display(h), str(v.seq), v.id.hex())
        out.print(table)

    run_async(heads())


@log_app.command("forks")
def log_forks(data: DataOpt, as_json: JsonOpt = False) -> None:
    """Print the fork proofs this log holds: two signed events with one (hub, seq)."""
    folder = folder_of(data)

    async def forks() -> None:
        async with await folder.open_log(with_key=False) as log:
            proofs = await log.forks()
        rows: list[dict[str, Any]] = [
            {
                "hub": hub_display(p.hub),
                "seq": p.seq,
                "ids": [i.hex() for i in p.ids],
                "detected": when(p.detected_ms),
            }
            for p in proofs
        ]
        if as_json:
            print_json(rows)
        elif not rows:
            out.print("no forks")
        else:
            for row in rows:
                out.print(f"{row['hub']} seq {row['seq']}: {row['ids'][0]} ≠ {row['ids'][1]}")

    run_async(forks())


@log_app.command("export")
def log_export(
    data: DataOpt,
    out_file: Annotated[Path, typer.Option("--out", "-o", help="The .hublog file to write.")],
    hub: HubOpt = None,
) -> None:
    """Write the log (or one hub's events) to a .hublog file for auditors."""
    hub_id = hub_arg(hub)
    folder = folder_of(data)
    if not out_file.parent.is_dir():
        fail(f"cannot write {out_file}: there is no folder {out_file.parent}", 2)

    async def export() -> tuple[int, int]:
        async with await folder.open_log(with_key=False) as log:
            total = await log.count(hub_id)
            tmp = out_file.with_name(out_file.name + ".part")
            with progress("exporting", total) as advance, open(tmp, "wb") as f:
                writer = HublogWriter(f)
                async for raw in log.export_records(hub_id):
                    writer.write(raw)
                    advance(1)
            tmp.replace(out_file)
            return writer.count, writer.size

    count, size = run_async(export())
    err.print(f"wrote {count} records ({size} bytes) to {out_file}", markup=False)


# -- the node ---------------------------------------------------------------------------


@app.command()
def run(
    data: DataOpt,
    nats_url: Annotated[
        str | None,
        typer.Option(
            help="Use this NATS server instead of the embedded one (config: nats_url): "
            "nats://HOST:PORT, tls://, ws:// or wss://, several separated by commas."
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug detail.")] = False,
) -> None:
    """Run this hub's node until SIGINT/SIGTERM: gossip with peers over NATS, catch up, serve.

    At start it checks the log and the views for damage (docs/operating.md)."""
    import logging

    from hubnode.node import Node, StopDeadline

    if nats_url is not None:
        try:
            check_nats_url(nats_url, "--nats-url")
        except ValueError as e:
            fail(str(e), 2)
    folder = folder_of(data)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("nats").setLevel(logging.WARNING if not verbose else logging.DEBUG)

    async def main() -> None:
        from hubnode.console.server import node_attachments  # the console, if configured

        node = Node(folder, nats_url=nats_url, attach=node_attachments(folder))
        deadline = StopDeadline(asyncio.Event(), lambda: node.server.pid if node.server else None)
        deadline.watch(asyncio.get_running_loop())
        try:
            await node.run(deadline.stop)
        finally:
            deadline.stopped.set()

    run_async(main())


@peers_app.command("add")
def peers_add(
    data: DataOpt,
    hub: Annotated[str, typer.Argument(help="The hub:… id to trust.", show_default=False)],
    name: Annotated[str, typer.Option(help="A name to remember it by.")] = "",
) -> None:
    """Trust a hub: accept its events (and its admissions of other hubs). Restart `run`."""
    hub_id = hub_arg(hub)
    assert hub_id is not None
    folder = folder_of(data)
    if hub_id == folder.hub:
        fail("that is this hub's own id; it is always trusted", 2)
    if folder.add_trusted(hub_id, name):
        out.print(f"trusting {hub_display(hub_id)}" + (f" ({name})" if name else ""))
    else:
        out.print(f"{hub_display(hub_id)} is already trusted")


@peers_app.command("list")
def peers_list(data: DataOpt, as_json: JsonOpt = False) -> None:
    """Every hub this node knows: name, who trusts it and why, head, last seen, forked."""
    from hubnode.node import read_status, trust_set
    from hubnode.trust import fold_admissions

    folder = folder_of(data)

    async def gather() -> list[dict[str, Any]]:
        trust = trust_set(folder)
        async with await folder.open_log(with_key=False) as log:
            await fold_admissions(trust, log)
            heads = await log.heads()
            forked = await log.forked_hubs()
            names = {t.id: t.name for t in folder.config.trust if t.name}
            names[folder.config.hub_id] = folder.config.name
            for kind in ("hub.registered", "hub.profile_updated"):
                after = 0
                while page := await log.events(after_pos=after, kind=kind, limit=1000):
                    for ev in page:
                        name = getattr(ev.body, "name", None)
                        if name:
                            names[hub_display(ev.hub)] = name
                    after = page[-1].pos
        status = read_status(folder) or {}
        seen = status.get("peers", {})
        hubs = set(heads) | trust.known()
        rows = []
        for h in sorted(hubs):
            shown = hub_display(h)
            head = heads.get(h)
            peer = seen.get(shown, {})
            rows.append(
                {
                    "id": shown,
                    "name": names.get(shown, ""),
                    "trusted": trust.why(h),
                    "admitted_by": sorted(hub_display(a) for a in trust.admitters(h)),
                    "head_seq": head.seq if head else 0,
                    "last_seen": peer.get("last_seen"),
                    "lag": peer.get("lag"),
                    "forked_at": forked.get(h),
                }
            )
        return rows

    rows = run_async(gather())
    if as_json:
        print_json(rows)
        return
    table = Table("hub", "name", "trusted", "admitted by", "head", "last seen", "forked")
    for r in rows:
        seen_at = r["last_seen"]
        table.add_row(
            r["id"],
            r["name"],
            r["trusted"],
            ", ".join(a[:14] for a in r["admitted_by"]) or "-",
            str(r["head_seq"]),
            when(int(seen_at * 1000)) if seen_at else "-",
            f"at seq {r['forked_at']}" if r["forked_at"] else "no",
        )
    out.print(table)


@app.command()
def status(data: DataOpt, as_json: JsonOpt = False) -> None:
    """Own head, peers and their lag, counters and the NATS connection of the running node.

    The node is "running", "running but failing (why)" — it cannot reach NATS, write its
    log, read its views, or update its status file — or "not running"."""
    import time

    from hubnode.node import node_state, read_status

    folder = folder_of(data)

    async def heads() -> dict[bytes, Any]:
        async with await folder.open_log(with_key=False) as log:
            return dict(await log.heads())

    held = run_async(heads())
    own = held.get(folder.hub)
    snapshot = read_status(folder) or {}
    state, failing = node_state(snapshot, time.time())
    fresh = state in ("running", "failing")
    report = {
        "hub": folder.config.hub_id,
        "name": folder.config.name,
        "network": folder.config.network,
        "running": state != "not running",
        "state": state,
        "failing": failing,
        "own_head": {"seq": own.seq, "id": own.id.hex()} if own else {"seq": 0, "id": None},
        "hubs_held": len(held),
        "nats": snapshot.get("nats") if fresh else {"url": None, "connected": False},
        "peers": snapshot.get("peers", {}) if fresh else {},
        "counters": snapshot.get("counters", {}),
        "pending": snapshot.get("pending", 0),
        "updated_at": snapshot.get("updated_at"),
    }
    if as_json:
        print_json(report)
        return
    shown = {"running": "running", "not running": "not running"}.get(
        state, f"running but failing ({'; '.join(failing.values())})"
    )
    out.print(f"{report['name']} ({report['hub']}) on {report['network']}: node {shown}")
    out.print(f"own head: seq {report['own_head']['seq']}; holding {len(held)} hubs")
    nats = report["nats"] or {}
    connected = f"connected to {nats.get('url')}" if nats.get("connected") else "not connected"
    out.print(f"NATS: {connected}")
    if report["peers"]:
        table = Table("peer", "last seen", "lag (records)")
        for peer, info in sorted(report["peers"].items()):
            table.add_row(peer, when(int(info["last_seen"] * 1000)), str(info["lag"]))
        out.print(table)
    counters = report["counters"]
    if counters:
        shown = (
            ", ".join(f"{k} {v}" for k, v in counters.items() if k != "rejected" and v)
            or "none yet"
        )
        out.print(f"counters: {shown}")
        if counters.get("rejected"):
            out.print(
                "rejected by reason: "
                + ", ".join(f"{k} {v}" for k, v in counters["rejected"].items())
            )


@app.command()
def network(data: DataOpt, as_json: JsonOpt = False) -> None:
    """The network as this hub sees it: hubs, roles, areas, who admitted whom, heads, forks."""
    import json as _json

    folder = folder_of(data)
    runner = caught_up(folder)
    hubs = runner.query("network", "SELECT hub, name, roles, area, contact FROM {hubs}")
    admissions = runner.query("network", "SELECT admitter, admitted FROM {admissions}")
    runner.close()

    async def log_state() -> tuple[dict[bytes, Any], dict[bytes, int]]:
        async with await folder.open_log(with_key=False) as log:
            return dict(await log.heads()), await log.forked_hubs()

    heads, forked = run_async(log_state())
    admitted_by: dict[str, list[str]] = {}
    for admitter, admitted in admissions:
        admitted_by.setdefault(admitted, []).append(hub_display(admitter))
    rows = []
    for hub, name, roles, area, contact in sorted(hubs, key=lambda r: (r[1], r[0])):
        shown = hub_display(hub)
        head = heads.get(hub)
        rows.append(
            {
                "id": shown,
                "name": name,
                "roles": _json.loads(roles),
                "area": area,
                "contact": contact,
                "admitted_by": sorted(admitted_by.get(shown, [])),
                "head_seq": head.seq if head else 0,
                "forked_at": forked.get(hub),
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table("hub", "name", "roles", "area", "admitted by", "head", "forked")
    for r in rows:
        table.add_row(
            r["id"][:18] + "…",
            r["name"],
            ", ".join(r["roles"]),
            r["area"],
            ", ".join(a[:14] for a in r["admitted_by"]) or "-",
            str(r["head_seq"]),
            f"at seq {r['forked_at']}" if r["forked_at"] else "no",
        )
    out.print(table)


# -- demo -------------------------------------------------------------------------------


@app.command()
def demo(
    hubs: Annotated[
        int, typer.Option("--hubs", min=3, max=8, help="How many hubs (node processes) to run.")
    ] = 4,
    events: Annotated[
        int,
        typer.Option("--events", min=1, max=5000, help="Profile updates each hub appends."),
    ] = 50,
    keep: Annotated[
        Path | None,
        typer.Option(help="Build the hubs' data folders in this new folder and keep them."),
    ] = None,
) -> None:
    """Run the demo: hubs as separate processes federate over a NATS cluster and share work."""
    from hubnode.demo import run_demo

    run_async(run_demo(out, hubs=hubs, events=events, keep=keep))


# Commands in ``hubnode/commands/<area>.py``: each module has register(app).
for _area in (
    audit,
    projections,
    directory,
    skills,
    tenders,
    feedback,
    pathway,
    referral,
    followup,
    person,
    staff,
):
    _area.register(app)


def main() -> None:
    try:
        app()
    except OSError as e:  # disk full, permission denied, …: a message, not a traceback
        where = f"{e.filename}: " if e.filename else ""
        err.print(f"error: {where}{e.strerror or e}", markup=False)
        sys.exit(1)
    except HubnodeError as e:  # one a command did not expect (a damaged views table, say)
        err.print(f"error: {e}", markup=False)
        sys.exit(1)
