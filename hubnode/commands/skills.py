"""``hubnode skills …`` and ``hubnode time …``: the skills exchange and time credits.

Every command checks its input against this hub's own view first (ids already used, a
transfer that is unknown, already confirmed or not this hub's to confirm, an overdraft
beyond ``time_overdraft_seconds``) and exits 2 with one line, appending nothing.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Annotated, Any, TypeVar

import msgspec
import typer
from rich.table import Table

from hubnode.commands.common import DataOpt, JsonOpt, caught_up, fail, folder_of, out, print_json
from hubnode.commands.common import run_async as _run_async
from hubnode.config import HubFolder
from hubnode.events.ids import hub_display, parse_hub
from hubnode.events.kinds import Body
from hubnode.events.skills import (
    SkillOffered,
    SkillRequested,
    SkillWithdrawn,
    TransferConfirmed,
    TransferProposed,
    TransferReversed,
)
from hubnode.projections.runner import ProjectionRunner

B = TypeVar("B", bound=Body)

_TAG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*\Z")
_DISTRICT = re.compile(r"^[A-Z]{1,2}[0-9][0-9A-Z]?\Z")

skills_app = typer.Typer(
    help="Skills exchange: offer and request skills across hubs, see matches.",
    no_args_is_help=True,
)
time_app = typer.Typer(
    help="Time credits in seconds: propose, confirm and reverse transfers; balances.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(skills_app, name="skills")
    app.add_typer(time_app, name="time")


# -- helpers ----------------------------------------------------------------------------


def _body(kind: type[B], fields: dict[str, Any]) -> B:
    """``fields`` validated as ``kind`` (constraints included), or exit 2 naming the field."""
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as e:
        fail(f"{e}; fix that value and try again", 2)


def _append(folder: HubFolder, kind: str, body: Body) -> int:
    async def append() -> int:
        async with await folder.open_log() as log:
            return (await log.append(kind, body)).seq

    return _run_async(append())


def _tags(values: list[str]) -> list[str]:
    tags = [t.strip().lower() for v in values for t in v.split(",") if t.strip()]
    if not tags:
        fail("--tag: give at least one skill tag, e.g. --tag gardening", 2)
    for tag in tags:
        if not _TAG.match(tag) or len(tag) > 40:
            fail(
                f"--tag {tag!r}: tags are lower-case slugs of letters, digits and single "
                "hyphens, up to 40 characters (e.g. form-filling)",
                2,
            )
    return list(dict.fromkeys(tags))


def _area(values: list[str]) -> list[str]:
    area = [d.strip().upper() for v in values for d in v.split(",") if d.strip()]
    if not area:
        fail("--area: give at least one postcode district, e.g. --area DL1", 2)
    for district in area:
        if not _DISTRICT.match(district):
            fail(
                f"--area {district!r} is not a postcode district; use the part before the "
                "space of a postcode, e.g. DL1 or DL14",
                2,
            )
    return list(dict.fromkeys(area))


def _new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def _ref(text: str, option: str) -> tuple[str, str]:
    """``hub:…/ID`` → (hub display, id)."""
    hub, sep, item_id = text.partition("/")
    if not sep or not item_id:
        fail(f"{option} {text!r}: write it as HUB/ID, e.g. hub:ab…/offer-1a2b3c4d", 2)
    try:
        return hub_display(parse_hub(hub)), item_id
    except ValueError as e:
        fail(f"{option}: {e}", 2)


def _transfer_ref(text: str) -> tuple[bytes, str]:
    hub, transfer_id = _ref(text, "TRANSFER")
    return parse_hub(hub), transfer_id


def _shown(hub: bytes, item_id: str) -> str:
    return f"{hub_display(hub)}/{item_id}"


def _hours(seconds: int) -> str:
    sign = "-" if seconds < 0 else ""
    minutes = abs(seconds) // 60
    return f"{sign}{minutes // 60}h{minutes % 60:02d}"


# -- skills -----------------------------------------------------------------------------

TagOpt = Annotated[
    list[str], typer.Option("--tag", help="A skill tag (lower-case slug); repeat for more.")
]
AreaOpt = Annotated[
    list[str], typer.Option("--area", help="A postcode district, e.g. DL1; repeat for more.")
]
TitleOpt = Annotated[str, typer.Option(help="A short title.")]
DescriptionOpt = Annotated[str, typer.Option(help="What is offered or needed.")]
IdOpt = Annotated[
    str | None, typer.Option("--id", help="An id of your choice (default: a new random one).")
]


@skills_app.command("offer")
def skills_offer(
    data: DataOpt,
    tag: TagOpt,
    title: TitleOpt,
    area: AreaOpt,
    description: DescriptionOpt = "",
    hours: Annotated[
        float | None, typer.Option(help="Hours available per week (optional).")
    ] = None,
    item_id: IdOpt = None,
) -> None:
    """Offer a skill to the network. Prints the offer id."""
    folder = folder_of(data)
    if hours is not None and not 0 < hours <= 168:
        fail(f"--hours {hours:g}: hours per week must be above 0 and at most 168", 2)
    offer_id = item_id or _new_id("offer")
    body = _body(
        SkillOffered,
        {
            "offer_id": offer_id,
            "tags": _tags(tag),
            "title": title,
            "description": description,
            "area": _area(area),
            "hours_per_week": hours,
        },
    )
    runner = caught_up(folder)
    used = runner.query(
        "skills", "SELECT 1 FROM {offers} WHERE hub = ? AND offer_id = ?", (folder.hub, offer_id)
    )
    runner.close()
    if used:
        fail(f"--id {offer_id!r}: this hub already has an offer with that id; choose another", 2)
    seq = _append(folder, "skill.offered", body)
    out.print(f"offered {offer_id} (seq {seq})", markup=False)


@skills_app.command("request")
def skills_request(
    data: DataOpt,
    tag: TagOpt,
    title: TitleOpt,
    area: AreaOpt,
    description: DescriptionOpt = "",
    needed_by: Annotated[
        str | None, typer.Option(help="The date it is needed by, YYYY-MM-DD (optional).")
    ] = None,
    item_id: IdOpt = None,
) -> None:
    """Ask the network for a skill. Prints the request id."""
    folder = folder_of(data)
    if needed_by is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", needed_by):
        fail(f"--needed-by {needed_by!r}: write the date as YYYY-MM-DD", 2)
    request_id = item_id or _new_id("request")
    body = _body(
        SkillRequested,
        {
            "request_id": request_id,
            "tags": _tags(tag),
            "title": title,
            "description": description,
            "area": _area(area),
            "needed_by": needed_by,
        },
    )
    runner = caught_up(folder)
    used = runner.query(
        "skills",
        "SELECT 1 FROM {requests} WHERE hub = ? AND request_id = ?",
        (folder.hub, request_id),
    )
    runner.close()
    if used:
        fail(f"--id {request_id!r}: this hub already has a request with that id; choose another", 2)
    seq = _append(folder, "skill.requested", body)
    out.print(f"requested {request_id} (seq {seq})", markup=False)


@skills_app.command("withdraw")
def skills_withdraw(
    data: DataOpt,
    offer: Annotated[str | None, typer.Option(help="The id of one of this hub's offers.")] = None,
    request: Annotated[
        str | None, typer.Option(help="The id of one of this hub's requests.")
    ] = None,
) -> None:
    """Withdraw one of this hub's own offers or requests."""
    if (offer is None) == (request is None):
        fail("give exactly one of --offer ID or --request ID", 2)
    folder = folder_of(data)
    item, item_id = ("offer", offer) if offer is not None else ("request", request)
    runner = caught_up(folder)
    rows = runner.query(
        "skills",
        f"SELECT status FROM {{{item}s}} WHERE hub = ? AND {item}_id = ?",
        (folder.hub, item_id),
    )
    runner.close()
    if not rows:
        fail(f"--{item} {item_id!r}: this hub has no {item} with that id", 2)
    if rows[0][0] != "open":
        fail(f"--{item} {item_id!r} is already withdrawn", 2)
    body = (
        SkillWithdrawn(offer_id=offer) if offer is not None else SkillWithdrawn(request_id=request)
    )
    seq = _append(folder, "skill.withdrawn", body)
    out.print(f"withdrew {item} {item_id} (seq {seq})", markup=False)


@skills_app.command("matches")
def skills_matches(
    data: DataOpt,
    mine: Annotated[
        bool, typer.Option(help="Only matches with an offer or request of ours.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Open offers and requests of different hubs sharing a skill tag and a postcode district."""
    folder = folder_of(data)
    runner = caught_up(folder)
    found = runner.query(
        "skills",
        "SELECT m.offer_hub, m.offer_id, o.title, m.request_hub, m.request_id, r.title, "
        "r.needed_by, m.tags, m.districts FROM {matches} m "
        "JOIN {offers} o ON o.hub = m.offer_hub AND o.offer_id = m.offer_id "
        "JOIN {requests} r ON r.hub = m.request_hub AND r.request_id = m.request_id "
        "ORDER BY r.needed_by IS NULL, r.needed_by, m.offer_hub, m.offer_id, "
        "m.request_hub, m.request_id",
    )
    runner.close()
    rows = [
        {
            "offer": _shown(offer_hub, offer_id),
            "offer_title": offer_title,
            "request": _shown(request_hub, request_id),
            "request_title": request_title,
            "needed_by": needed_by,
            "tags": json.loads(tags),
            "districts": json.loads(districts),
        }
        for (
            offer_hub,
            offer_id,
            offer_title,
            request_hub,
            request_id,
            request_title,
            needed_by,
            tags,
            districts,
        ) in found
        if not mine or folder.hub in (offer_hub, request_hub)
    ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no matches")
        return
    table = Table("offer", "offered", "request", "requested", "needed by", "tags", "districts")
    for r in rows:
        table.add_row(
            r["offer"],
            r["offer_title"],
            r["request"],
            r["request_title"],
            r["needed_by"] or "-",
            ", ".join(r["tags"]),
            ", ".join(r["districts"]),
        )
    out.print(table)


# -- time credits -----------------------------------------------------------------------


def _headroom(runner: ProjectionRunner, hub: bytes, limit: int) -> tuple[int, int]:
    """(balance, seconds this hub may still be debited) under its overdraft ``limit``.

    Own proposals that debit this hub and await the other party's confirmation count as
    spent: they may become confirmed without this hub signing anything more.
    """
    rows = runner.query("skills", "SELECT seconds FROM {balances} WHERE hub = ?", (hub,))
    balance = int(rows[0][0]) if rows else 0
    ((pending,),) = runner.query(
        "skills",
        "SELECT COALESCE(SUM(seconds), 0) FROM {transfers} "
        "WHERE proposer = ? AND from_hub = ? AND state = 'proposed'",
        (hub, hub),
    )
    return balance, balance - int(pending) + limit


def _check_overdraft(runner: ProjectionRunner, folder: HubFolder, seconds: int) -> None:
    limit = folder.config.time_overdraft_seconds
    balance, headroom = _headroom(runner, folder.hub, limit)
    if seconds > headroom:
        runner.close()
        fail(
            f"overdraft: debiting {seconds} s would take this hub below its limit of "
            f"-{limit} s (balance {balance} s, {balance + limit - headroom} s in own "
            f"proposals awaiting confirmation); raise time_overdraft_seconds in "
            f"{folder.path / 'hubnode.toml'} or transfer less",
            2,
        )


@time_app.command("propose")
def time_propose(
    data: DataOpt,
    to: Annotated[
        str | None, typer.Option("--to", help="Pay this hub (hub:… id): this hub is debited.")
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option("--from", help="Be paid by this hub (hub:… id): this hub is credited."),
    ] = None,
    seconds: Annotated[int | None, typer.Option(help="Seconds to transfer (> 0).")] = None,
    hours: Annotated[float | None, typer.Option(help="Or hours to transfer (> 0).")] = None,
    memo: Annotated[str, typer.Option(help="What the time was for.")] = "",
    offer: Annotated[
        str | None, typer.Option(help="The related offer, as HUB/ID (optional).")
    ] = None,
    request: Annotated[
        str | None, typer.Option(help="The related request, as HUB/ID (optional).")
    ] = None,
    transfer_id: IdOpt = None,
) -> None:
    """Propose a time-credit transfer; it counts once the other hub confirms it."""
    if (to is None) == (from_ is None):
        fail("give exactly one of --to HUB (this hub pays) or --from HUB (that hub pays)", 2)
    if (seconds is None) == (hours is None):
        fail("give exactly one of --seconds N or --hours H", 2)
    amount = seconds if seconds is not None else round((hours or 0) * 3600)
    if amount <= 0:
        given = f"--seconds {seconds}" if seconds is not None else f"--hours {hours:g}"
        fail(f"{given}: a transfer moves a positive amount of time; give more than 0", 2)
    folder = folder_of(data)
    me = folder.config.hub_id
    other_text = to if to is not None else from_
    assert other_text is not None
    try:
        other = hub_display(parse_hub(other_text))
    except ValueError as e:
        fail(f"--{'to' if to is not None else 'from'}: {e}", 2)
    if other == me:
        fail("a transfer is between two hubs: the other hub cannot be this hub itself", 2)
    tid = transfer_id or _new_id("t")
    fields: dict[str, Any] = {
        "transfer_id": tid,
        "from_hub": me if to is not None else other,
        "to_hub": other if to is not None else me,
        "seconds": amount,
        "memo": memo,
    }
    if offer is not None:
        hub, item_id = _ref(offer, "--offer")
        fields["offer"] = {"hub": hub, "id": item_id}
    if request is not None:
        hub, item_id = _ref(request, "--request")
        fields["request"] = {"hub": hub, "id": item_id}
    body = _body(TransferProposed, fields)
    runner = caught_up(folder)
    if runner.query(
        "skills",
        "SELECT 1 FROM {transfers} WHERE proposer = ? AND transfer_id = ?",
        (folder.hub, tid),
    ):
        runner.close()
        fail(f"--id {tid!r}: this hub already proposed a transfer with that id", 2)
    if to is not None:
        _check_overdraft(runner, folder, amount)
    runner.close()
    seq = _append(folder, "time.transfer_proposed", body)
    out.print(f"proposed {me}/{tid}: {amount} s (seq {seq}); awaiting {other}", markup=False)


def _transfer(
    runner: ProjectionRunner, proposer: bytes, transfer_id: str
) -> tuple[bytes, bytes, int, str]:
    """(from, to, seconds, state) of a transfer this hub holds, or exit 2."""
    rows = runner.query(
        "skills",
        "SELECT from_hub, to_hub, seconds, state FROM {transfers} "
        "WHERE proposer = ? AND transfer_id = ?",
        (proposer, transfer_id),
    )
    if not rows:
        runner.close()
        fail(
            f"unknown transfer {_shown(proposer, transfer_id)}: its proposal is not in this "
            "hub's log; check the id, or let the node sync (`hubnode run`) and retry",
            2,
        )
    from_hub, to_hub, seconds, state = rows[0]
    return from_hub, to_hub, int(seconds), str(state)


@time_app.command("confirm")
def time_confirm(
    data: DataOpt,
    transfer: Annotated[str, typer.Argument(help="The transfer, as PROPOSER_HUB/ID.")],
) -> None:
    """Confirm a transfer the other hub proposed to this one: from then on it counts."""
    proposer, tid = _transfer_ref(transfer)
    folder = folder_of(data)
    if proposer == folder.hub:
        fail(f"{transfer} is this hub's own proposal; only the other hub confirms it", 2)
    runner = caught_up(folder)
    from_hub, to_hub, seconds, state = _transfer(runner, proposer, tid)
    if folder.hub not in (from_hub, to_hub):
        runner.close()
        fail(f"{transfer} is between {hub_display(from_hub)} and {hub_display(to_hub)}", 2)
    confirmed = runner.query(
        "skills",
        "SELECT seq FROM {confirmations} WHERE hub = ? AND proposer = ? AND transfer_id = ?",
        (folder.hub, proposer, tid),
    )
    if confirmed or state != "proposed":
        runner.close()
        fail(f"{transfer} is already confirmed ({state}); nothing to do", 2)
    if from_hub == folder.hub:
        _check_overdraft(runner, folder, seconds)
    runner.close()
    body = TransferConfirmed(proposer=hub_display(proposer), transfer_id=tid)
    seq = _append(folder, "time.transfer_confirmed", body)
    out.print(f"confirmed {transfer}: {seconds} s (seq {seq})", markup=False)


@time_app.command("reverse")
def time_reverse(
    data: DataOpt,
    transfer: Annotated[str, typer.Argument(help="The transfer, as PROPOSER_HUB/ID.")],
    reason: Annotated[str, typer.Option(help="Why it is reversed (required).")],
) -> None:
    """Reverse a confirmed transfer this hub is a party to; its amount stops counting."""
    proposer, tid = _transfer_ref(transfer)
    if not reason.strip():
        fail("--reason: say why the transfer is reversed", 2)
    folder = folder_of(data)
    runner = caught_up(folder)
    from_hub, to_hub, seconds, state = _transfer(runner, proposer, tid)
    runner.close()
    if folder.hub not in (from_hub, to_hub):
        fail(f"{transfer}: only its two parties may reverse it", 2)
    if state == "proposed":
        fail(f"{transfer} is not confirmed yet, so there is nothing to reverse", 2)
    if state == "reversed":
        fail(f"{transfer} is already reversed", 2)
    body = _body(
        TransferReversed,
        {"proposer": hub_display(proposer), "transfer_id": tid, "reason": reason.strip()},
    )
    seq = _append(folder, "time.transfer_reversed", body)
    out.print(f"reversed {transfer}: {seconds} s (seq {seq})", markup=False)


@time_app.command("balance")
def time_balance(data: DataOpt, as_json: JsonOpt = False) -> None:
    """Balances of every hub (negative ones flagged) and this hub's transfers."""
    folder = folder_of(data)
    runner = caught_up(folder)
    limit = folder.config.time_overdraft_seconds
    balance, headroom = _headroom(runner, folder.hub, limit)
    balances = runner.query(
        "skills", "SELECT hub, seconds, negative FROM {balances} ORDER BY seconds DESC, hub"
    )
    transfers = runner.query(
        "skills",
        "SELECT proposer, transfer_id, from_hub, to_hub, seconds, memo, state, reversal_reason "
        "FROM {transfers} WHERE from_hub = ? OR to_hub = ? ORDER BY proposer, transfer_id",
        (folder.hub, folder.hub),
    )
    runner.close()
    report: dict[str, Any] = {
        "hub": folder.config.hub_id,
        "seconds": balance,
        "overdraft_limit": limit,
        "available": headroom,
        "balances": [
            {"hub": hub_display(h), "seconds": s, "negative": bool(n)} for h, s, n in balances
        ],
        "transfers": [
            {
                "transfer": _shown(p, t),
                "from": hub_display(f),
                "to": hub_display(to),
                "seconds": s,
                "memo": m,
                "state": st,
                "awaiting": (hub_display(to if p == f else f) if st == "proposed" else None),
                "reversal_reason": why,
            }
            for p, t, f, to, s, m, st, why in transfers
        ],
    }
    if as_json:
        print_json(report)
        return
    out.print(
        f"{folder.config.hub_id}: {balance} s ({_hours(balance)}); may still be debited "
        f"{headroom} s (overdraft limit {limit} s)",
        markup=False,
    )
    table = Table("hub", "seconds", "hours", "negative")
    for b in report["balances"]:
        table.add_row(
            b["hub"], str(b["seconds"]), _hours(b["seconds"]), "yes" if b["negative"] else ""
        )
    out.print(table)
    if report["transfers"]:
        ledger = Table("transfer", "from", "to", "seconds", "state", "memo")
        for t in report["transfers"]:
            state = t["state"] + (f" (awaiting {t['awaiting'][:14]}…)" if t["awaiting"] else "")
            ledger.add_row(t["transfer"], t["from"], t["to"], str(t["seconds"]), state, t["memo"])
        out.print(ledger)
