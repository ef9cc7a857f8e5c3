"""``hubnode skills …`` and ``hubnode time …``: the skills exchange and time credits.

The rules live in :mod:`hubnode.casework.skills` (shared with the staff console): every
command checks its input against this hub's own view first (ids already used, a transfer
that is unknown, already confirmed or not this hub's to confirm, an overdraft beyond
``time_overdraft_seconds``) and exits 2 with one line, appending nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from hubnode.casework.inputs import InvalidInput
from hubnode.casework.skills import Skills
from hubnode.commands.common import DataOpt, JsonOpt, caught_up, fail, folder_of, out, print_json
from hubnode.commands.common import run_async as _run_async

T = TypeVar("T")

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


def _act(data: Any, action: Callable[[Skills], Awaitable[T]]) -> T:
    """Run ``action`` over the hub's log and caught-up views; a refusal exits 2."""
    folder = folder_of(data)

    async def go() -> T:
        runner = caught_up(folder)
        try:
            async with await folder.open_log() as log:
                return await action(Skills(folder, log, runner))
        except InvalidInput as e:
            fail(str(e), 2)
        finally:
            runner.close()

    return _run_async(go())


def _read(data: Any, read: Callable[[Skills], T]) -> T:
    """``read`` over the hub's caught-up views (no log needed)."""

    async def go(skills: Skills) -> T:
        return read(skills)

    return _act(data, go)


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
    offered, seq = _act(
        data,
        lambda skills: skills.offer(
            tags=tag, title=title, area=area, description=description, hours=hours, item_id=item_id
        ),
    )
    out.print(f"offered {offered} (seq {seq})", markup=False)


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
    requested, seq = _act(
        data,
        lambda skills: skills.request(
            tags=tag,
            title=title,
            area=area,
            description=description,
            needed_by=needed_by,
            item_id=item_id,
        ),
    )
    out.print(f"requested {requested} (seq {seq})", markup=False)


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
    seq = _act(data, lambda skills: skills.withdraw(offer=offer, request=request))
    item, item_id = ("offer", offer) if offer is not None else ("request", request)
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
    rows = _read(data, lambda skills: skills.matches(mine=mine))
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
    proposed = _act(
        data,
        lambda skills: skills.propose(
            to=to,
            from_=from_,
            seconds=seconds,
            hours=hours,
            memo=memo,
            offer=offer,
            request=request,
            transfer_id=transfer_id,
        ),
    )
    out.print(
        f"proposed {proposed.transfer}: {proposed.seconds} s (seq {proposed.seq}); "
        f"awaiting {proposed.other}",
        markup=False,
    )


@time_app.command("confirm")
def time_confirm(
    data: DataOpt,
    transfer: Annotated[str, typer.Argument(help="The transfer, as PROPOSER_HUB/ID.")],
) -> None:
    """Confirm a transfer the other hub proposed to this one: from then on it counts."""
    done = _act(data, lambda skills: skills.confirm(transfer))
    out.print(f"confirmed {transfer}: {done.seconds} s (seq {done.seq})", markup=False)


@time_app.command("reverse")
def time_reverse(
    data: DataOpt,
    transfer: Annotated[str, typer.Argument(help="The transfer, as PROPOSER_HUB/ID.")],
    reason: Annotated[str, typer.Option(help="Why it is reversed (required).")],
) -> None:
    """Reverse a confirmed transfer this hub is a party to; its amount stops counting."""
    done = _act(data, lambda skills: skills.reverse(transfer, reason))
    out.print(f"reversed {transfer}: {done.seconds} s (seq {done.seq})", markup=False)


@time_app.command("balance")
def time_balance(data: DataOpt, as_json: JsonOpt = False) -> None:
    """Balances of every hub (negative ones flagged) and this hub's transfers."""
    report = _read(data, Skills.balance)
    balance, headroom, limit = (
        report["seconds"],
        report["available"],
        report["overdraft_limit"],
    )
    if as_json:
        print_json(report)
        return
    out.print(
        f"{report['hub']}: {balance} s ({_hours(balance)}); may still be debited "
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
