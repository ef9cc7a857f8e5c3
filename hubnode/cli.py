"""The ``hubnode`` command line: the edge where ``asyncio.run`` lives."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.markup import escape
from rich.table import Table

from hubnode.commands import (
    audit,
    directory,
    feedback,
    followup,
    log_integrity,
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
    plain_text,
    print_json,
    progress,
    run_async,
    shown,
    terminal,
    when,
)
from hubnode.config import EMBEDDED, HubFolder, check_nats_url
from hubnode.errors import HubnodeError
from hubnode.events.ids import hub_display, short_hub
from hubnode.events.kinds import KINDS
from hubnode.events.verify import Event
from hubnode.hublog import HublogWriter
from hubnode.store.chain import now_ms
from hubnode.store.intake import DailyIntake, alert_since, day_of, megabytes

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
    name: Annotated[
        str, typer.Option(help="The hub's name as peers will see it: one line of plain text.")
    ],
    network: Annotated[str, typer.Option(help="Network name, e.g. darlington-csn.")],
    nats_url: Annotated[
        str, typer.Option(help='NATS server URL, or "embedded" to run a local one.')
    ] = EMBEDDED,
) -> None:
    """Create a new hub: signing key (mode 0600), config file and empty log. Prints the hub id."""
    plain_text("--name", name)
    plain_text("--nats-url", nats_url)
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
            after, printed = 0, 0
            while limit is None or printed < limit:
                page = await log.events(after_pos=after, hub=hub_id, kind=kind, limit=500)
                if not page:
                    break
                for ev in page[: None if limit is None else limit - printed]:
                    if as_json:
                        print_json(_event_json(ev))
                    else:
                        body = msgspec.json.encode(ev.body).decode()
                        out.print(
                            f"{ev.pos:>6}  {short_hub(ev.hub)}  #{ev.seq:<5} {when(ev.ts)}  "
                            f"{ev.kind:<20} {body}",
                            markup=False,
                        )
                    printed += 1
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
    """List the event kinds this hubnode knows, with their body fields and size limits."""
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
                "max_body": spec.max_body,
            }
        )
    if as_json:
        print_json(rows)
        return
    table = Table("kind", "v", "fields (? = optional)", "about", "body limit")
    for row in rows:
        table.add_row(
            row["kind"],
            str(row["version"]),
            ", ".join(row["fields"]),
            row["about"],
            f"{row['max_body'] // 1024} KiB",
        )
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
            try:
                with progress("exporting", total) as advance, open(tmp, "wb") as f:
                    writer = HublogWriter(f)
                    # Each record is checked as it is read: a damaged one stops the export.
                    async for raw in log.export_records(hub_id):
                        writer.write(raw)
                        advance(1)
            except BaseException:
                tmp.unlink(missing_ok=True)  # no half export to mistake for a whole one
                raise
            tmp.replace(out_file)
            return writer.count, writer.size

    count, size = run_async(export())
    err.print(f"wrote {count} records ({size} bytes) to {out_file}", markup=False)


log_integrity.register(log_app)  # `log check` and `log repair`


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
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            envvar="HUBNODE_STRICT",
            help="Refuse to start if the key file or keyring is open to other users "
            "(mode & 077), instead of logging a warning.",
        ),
    ] = False,
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
    folder.strict_keys = folder.strict_keys or strict
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
    plain_text("--name", name)
    if hub_id == folder.hub:
        fail("that is this hub's own id; it is always trusted", 2)
    if folder.add_trusted(hub_id, name):
        out.print(f"trusting {hub_display(hub_id)}" + (f" ({name})" if name else ""))
    else:
        out.print(f"{hub_display(hub_id)} is already trusted")


@peers_app.command("list")
def peers_list(data: DataOpt, as_json: JsonOpt = False) -> None:
    """Every hub this node knows: name, who trusts it and why, head, last seen running
    (a signed event of it arrived) and last heard from (an unsigned heads message), forked."""
    from hubnode.node import read_status, trust_set
    from hubnode.protocol.sync import bounded_lag
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
            display = hub_display(h)
            head = heads.get(h)
            peer = seen.get(display, {})
            lag, absurd = bounded_lag(peer.get("lag"), peer.get("lag_claim_absurd"))
            rows.append(
                {
                    "id": display,
                    "name": names.get(display, ""),
                    "trusted": trust.why(h),
                    "admitted_by": sorted(hub_display(a) for a in trust.admitters(h)),
                    "head_seq": head.seq if head else 0,
                    "last_record": peer.get("last_record"),
                    "last_heard": peer.get("last_heard"),
                    "lag": lag,
                    "lag_claim_absurd": absurd,
                    "forked_at": forked.get(h),
                }
            )
        return rows

    rows = run_async(gather())
    if as_json:
        print_json(rows)
        return
    table = Table(
        "hub",
        "name",
        "trusted",
        "admitted by",
        "head",
        "last seen running",
        "last heard from",
        "forked",
    )
    for r in rows:
        table.add_row(
            r["id"],
            shown(r["name"]),
            r["trusted"],
            ", ".join(a[:14] for a in r["admitted_by"]) or "-",
            str(r["head_seq"]),
            _moment(r["last_record"]),
            _moment(r["last_heard"]),
            f"at seq {r['forked_at']}" if r["forked_at"] else "no",
        )
    out.print(table)


def _moment(seconds: object) -> str:
    """A status file's wall-clock seconds as a time, or ``-``."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return "-"
    return when(int(seconds * 1000))


def _lacking(info: dict[str, Any]) -> str:
    """What this hub lacks of a peer's announced events (heads are not signed)."""
    from hubnode.protocol.sync import bounded_lag, events_lacking

    lag, absurd = bounded_lag(info.get("lag"), info.get("lag_claim_absurd"))
    return "-" if lag is None else events_lacking(lag, absurd)


@app.command()
def status(data: DataOpt, as_json: JsonOpt = False) -> None:
    """Own head, peers and their lag, counters and the NATS connection of the running node.

    The node is "running", "running but failing (why)" — it cannot reach NATS, write its
    log, read its views, or update its status file — or "not running"."""
    import time

    from hubnode.node import node_state, read_status

    folder = folder_of(data)

    async def log_state() -> tuple[dict[bytes, Any], list[DailyIntake]]:
        """The heads held and the other hubs over the storage budget today or yesterday."""
        async with await folder.open_log(with_key=False) as log:
            over = await log.over_budget(
                folder.config.storage_budget_bytes,
                since=alert_since(now_ms()),
                other_than=folder.hub,
            )
            return dict(await log.heads()), over

    held, over_budget = run_async(log_state())
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
        "over_budget": [row.as_json(folder.config.storage_budget_bytes) for row in over_budget],
    }
    # Damaged records the node found while serving (as it last said, running or not).
    report["bad_records"] = snapshot.get("bad_records", [])
    if as_json:
        print_json(report)
        return
    said = {"running": "running", "not running": "not running"}.get(
        state, f"running but failing ({'; '.join(failing.values())})"
    )
    out.print(f"{shown(report['name'])} ({report['hub']}) on {report['network']}: node {said}")
    _print_over_budget(folder, over_budget)
    out.print(f"own head: seq {report['own_head']['seq']}; holding {len(held)} hubs")
    nats = report["nats"] or {}
    connected = f"connected to {nats.get('url')}" if nats.get("connected") else "not connected"
    out.print(f"NATS: {connected}")
    if report["peers"]:
        table = Table("peer", "last seen running", "last heard from", "this hub lacks")
        for peer, info in sorted(report["peers"].items()):
            table.add_row(
                peer,
                _moment(info.get("last_record")),
                _moment(info.get("last_heard")),
                _lacking(info),
            )
        out.print(table)
    counters = report["counters"]
    if counters:
        counted = (
            ", ".join(f"{k} {v}" for k, v in counters.items() if k != "rejected" and v)
            or "none yet"
        )
        out.print(f"counters: {counted}")
        if counters.get("rejected"):
            out.print(
                "rejected by reason: "
                + ", ".join(f"{k} {v}" for k, v in counters["rejected"].items())
            )
    for bad in report["bad_records"]:
        out.print(
            f"DAMAGED RECORD: {bad['hub']} seq {bad['seq']}: {bad['reason']}: {bad['detail']} "
            f"— not served to peers; stop the node and run `hubnode log check --data "
            f"{folder.path}`",
            style="bold red",
            markup=False,
        )


def _print_over_budget(folder: HubFolder, rows: list[DailyIntake]) -> None:
    names = {t.id: t.name for t in folder.config.trust if t.name}
    budget = megabytes(folder.config.storage_budget_bytes)
    today = day_of(now_ms())
    for row in rows:
        hub = hub_display(row.hub)
        who = f"{names[hub]} ({hub})" if hub in names else hub
        day = "today" if row.day == today else f"on {row.day}"
        out.print(
            f"[bold red]OVER BUDGET[/]: {escape(who)} sent {megabytes(row.bytes)} "
            f"({row.records} records) {day}, over this hub's storage budget of {budget} a "
            "day. Nothing was dropped: check with its operator (docs/operating.md, "
            '"A hub is sending too much").'
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
        display = hub_display(hub)
        head = heads.get(hub)
        rows.append(
            {
                "id": display,
                "name": name,
                "roles": _json.loads(roles),
                "area": area,
                "contact": contact,
                "admitted_by": sorted(admitted_by.get(display, [])),
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
            shown(r["name"]),
            ", ".join(r["roles"]),
            shown(r["area"]),
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

    # The demo styles its own lines with rich markup (and escapes what it quotes).
    run_async(run_demo(terminal(markup=True), hubs=hubs, events=events, keep=keep))


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
