"""Reading the directory: ``hubnode directory search``, and :func:`register` for its commands.

A search filters, counts and pages in SQL over the ``directory`` view's tables, and
decodes only the services it shows: a service's full fields are one JSON column, and
decoding it is most of what a listing costs. Search shows each service's ratings from the
feedback view beside it. Publishing is in ``hubnode/commands/directory_publish.py``, the
HSDS 3.0 mapping and its commands in ``hubnode/commands/hsds.py``, the printable page in
``hubnode/commands/directory_print.py``; :func:`register` adds them all to the CLI.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Annotated, Any, Final, NamedTuple

import msgspec
import typer
from rich.table import Table

from hubnode.commands.common import DataOpt, JsonOpt, caught_up, fail, folder_of, out, print_json
from hubnode.commands.directory_publish import capacity_app, service_app
from hubnode.config import HubFolder
from hubnode.events.directory import CATEGORIES, DAYS, ServicePublished
from hubnode.events.ids import hub_display, short_hub
from hubnode.projections.directory import decode_service
from hubnode.projections.feedback import ServiceRating, service_summaries
from hubnode.projections.runner import ProjectionRunner

directory_app = typer.Typer(
    help="The network's directory of services: search, HSDS export/import, print.",
    no_args_is_help=True,
)

_DENSE: Final = 8
"""A page is looked for among the first ``limit * _DENSE`` services in name order first."""
DEFAULT_LIMIT: Final = 50
"""Services ``directory search`` shows unless told otherwise: a screenful, not thousands."""


class Listing(msgspec.Struct, frozen=True, kw_only=True):
    """A live service as the directory shows it."""

    publisher: bytes
    service: ServicePublished
    capacity: dict[str, str] | None
    rating: ServiceRating | None = None
    """Ratings from the feedback view; None when not asked for or nobody has rated it."""


class Found(NamedTuple):
    listings: list[Listing]
    total: int
    """How many services match: more than ``len(listings)`` when the limit cut them short."""


class Search(msgspec.Struct, frozen=True, kw_only=True):
    """A search of the live services: every filter given must hold."""

    text: str | None = None
    """Words that must all occur (case-folded) in the name, description or organisation."""
    categories: tuple[str, ...] = ()
    area: str | None = None
    """A postcode district the service must cover."""
    free: bool = False
    open_at: dt.datetime | None = None
    """A local time the service's weekly hours must include: its weekday and HH:MM as
    written, whatever time zone it carries, like the hours themselves."""

    def where(self, *, walk: bool = False) -> tuple[str, list[Any]]:
        """The SQL condition on services ``s`` and its parameters, for one of two plans.

        ``walk``: services are read in name order (the index starting ``withdrawn, name``)
        and each is tested against the other tables (EXISTS). Otherwise every service is
        read in storage order and each other table's matching keys are read once (IN);
        the ``+`` keeps SQLite off the name index, whose order costs a random read per
        service.
        """
        where = ["s.withdrawn = 0" if walk else "+s.withdrawn = 0"]
        params: list[Any] = []
        if self.text:
            for word in self.text.casefold().split():
                where.append("instr(s.text, ?) > 0")
                params.append(word)
        for category in self.categories:
            where.append(_keyed("categories", "category = ?", walk))
            params.append(category)
        if self.area:
            where.append(_keyed("areas", "district = ?", walk))
            params.append(self.area)
        if self.free:
            where.append("s.free = 1")
        if self.open_at is not None:
            # Hours are "HH:MM" strings, so comparing text compares times; closes is
            # exclusive. Day and clock are worked out once here, not once per service.
            where.append(_keyed("hours", "day = ? AND opens <= ? AND ? < closes", walk))
            clock = f"{self.open_at.hour:02d}:{self.open_at.minute:02d}"
            params += [DAYS[self.open_at.weekday()], clock, clock]
        return " AND ".join(where), params

    def listings(
        self, runner: ProjectionRunner, *, ratings: bool = False, limit: int | None = None
    ) -> list[Listing]:
        """The first ``limit`` matches (all when None), by name then publisher and id.

        With ``ratings``, each carries its rating summary from the feedback view.
        """
        where, params = self.where()
        keys = (
            f"SELECT s.publisher, s.service, s.name FROM {{services}} s WHERE {where} "
            "ORDER BY s.name, s.publisher, s.service LIMIT ?"
        )
        rows = runner.query(
            "directory", _with_details(keys), [*params, -1 if limit is None else limit]
        )
        return _listed(runner, rows, ratings)

    def page(self, runner: ProjectionRunner, limit: int, *, ratings: bool = False) -> Found:
        """The first ``limit`` matches and how many match in all, read in as few passes
        over the services as the matches allow."""
        # Dense matches: the first limit * _DENSE services in name order hold a whole
        # page, and it is the page (every other service sorts after them). Only the
        # count then reads every service.
        where, params = self.where(walk=True)
        keys = (
            "SELECT s.publisher, s.service, s.name FROM (SELECT * FROM {services} "
            "WHERE withdrawn = 0 ORDER BY name, publisher, service LIMIT ?) s "
            f"WHERE {where} ORDER BY s.name, s.publisher, s.service LIMIT ?"
        )
        rows = runner.query("directory", _with_details(keys), [limit * _DENSE, *params, limit])
        if len(rows) == limit:
            return Found(_listed(runner, rows, ratings), self.count(runner))
        # Sparse matches: one pass finds them all, counts them and sorts the first page.
        where, params = self.where()
        counted = runner.query(
            "directory",
            f"WITH matches AS (SELECT s.publisher, s.service, s.name FROM {{services}} s "
            f"WHERE {where}) "
            + _with_details(
                "SELECT * FROM matches ORDER BY name, publisher, service LIMIT ?",
                also="(SELECT count(*) FROM matches)",
            ),
            [*params, limit],
        )
        total = counted[0][-1] if counted else 0
        return Found(_listed(runner, [row[:-1] for row in counted], ratings), total)

    def count(self, runner: ProjectionRunner) -> int:
        """How many live services match."""
        where, params = self.where()
        ((total,),) = runner.query(
            "directory", f"SELECT count(*) FROM {{services}} s WHERE {where}", params
        )
        return int(total)


def _keyed(table: str, condition: str, walk: bool) -> str:
    """The services with a row in ``table`` meeting ``condition`` (see Search.where)."""
    if walk:
        return (
            f"EXISTS (SELECT 1 FROM {{{table}}} x WHERE x.publisher = s.publisher "
            f"AND x.service = s.service AND {condition})"
        )
    return (
        f"(s.publisher, s.service) IN "
        f"(SELECT publisher, service FROM {{{table}}} WHERE {condition})"
    )


def _with_details(keys: str, *, also: str = "") -> str:
    """The services ``keys`` selects (publisher, service, name), in name order, with their
    JSON and capacity (and the column ``also``): read for the services shown alone."""
    return (
        f"SELECT p.publisher, d.data, k.status, k.as_of, k.note{', ' + also if also else ''} "
        f"FROM ({keys}) p "
        "JOIN {details} d ON d.publisher = p.publisher AND d.service = p.service "
        "LEFT JOIN {capacity} k ON k.publisher = p.publisher AND k.service = p.service "
        "ORDER BY p.name, p.publisher, p.service"
    )


def _listed(runner: ProjectionRunner, rows: list[tuple[Any, ...]], ratings: bool) -> list[Listing]:
    """Listings of rows from :func:`_with_details`, with ratings from the feedback view."""
    rated = service_summaries(runner) if ratings and rows else {}
    found = []
    for publisher, data, status, as_of, note in rows:
        service = decode_service(data)
        capacity = None if status is None else {"status": status, "as_of": as_of, "note": note}
        found.append(
            Listing(
                publisher=publisher,
                service=service,
                capacity=capacity,
                rating=rated.get((publisher, service.id)),
            )
        )
    return found


def search_listings(
    runner: ProjectionRunner,
    *,
    text: str | None = None,
    categories: Iterable[str] = (),
    area: str | None = None,
    free: bool = False,
    open_at: dt.datetime | None = None,
    ratings: bool = False,
    limit: int | None = None,
) -> list[Listing]:
    """Live services matching every filter given, by name then publisher and id."""
    search = Search(text=text, categories=tuple(categories), area=area, free=free, open_at=open_at)
    return search.listings(runner, ratings=ratings, limit=limit)


def _listings(folder: HubFolder, search: Search | None = None) -> list[Listing]:
    """Every match of ``search`` (default: every live service) in ``folder``'s views,
    brought up to date with its log first."""
    runner = caught_up(folder)
    try:
        return (search or Search()).listings(runner)
    finally:
        runner.close()


def find(folder: HubFolder, search: Search, *, limit: int | None) -> Found:
    """What ``directory search`` shows: the first ``limit`` matches (all when None) with
    their ratings, and how many match, in ``folder``'s views brought up to date first."""
    runner = caught_up(folder)
    try:
        if limit is None:
            found = search.listings(runner, ratings=True)
            return Found(found, len(found))
        return search.page(runner, limit, ratings=True)
    finally:
        runner.close()


def parse_district(text: str) -> str:
    district = text.strip().upper()
    if not re.fullmatch(r"[A-Z]{1,2}[0-9][0-9A-Z]?", district):
        fail(f"--area {text!r}: give a postcode district such as DL1 or DL3", 2)
    return district


def costs_text(service: ServicePublished) -> str:
    parts = []
    for c in service.costs:
        if c.kind == "free":
            parts.append("free" + (f" ({c.option})" if c.option else ""))
        else:
            money = f"{c.amount:.2f} {c.currency}"
            parts.append(money + (f" {c.description}" if c.description else ""))
    return "; ".join(parts) or "ask"


def rating_text(rating: ServiceRating | None) -> str:
    """``4.50 (2 ratings)``, or ``-`` when nobody has rated the service."""
    if rating is None:
        return "-"
    return f"{rating.average:.2f} ({rating.ratings} rating{'' if rating.ratings == 1 else 's'})"


@directory_app.command("search")
def directory_search(
    data: DataOpt,
    text: Annotated[
        str | None, typer.Option(help="Words to find in name, description, organisation.")
    ] = None,
    category: Annotated[
        list[str] | None, typer.Option(help="Only this category (repeat: all of them).")
    ] = None,
    area: Annotated[
        str | None, typer.Option(help="Only services covering this postcode district.")
    ] = None,
    free: Annotated[bool, typer.Option("--free", help="Only services with a free option.")] = False,
    open_now: Annotated[
        bool, typer.Option("--open-now", help="Only services open now (local clock).")
    ] = False,
    at: Annotated[
        str | None,
        typer.Option(help="With --open-now: this local time instead, YYYY-MM-DDTHH:MM."),
    ] = None,
    limit: Annotated[
        int, typer.Option(help="Show at most this many services (0: all of them).", min=0)
    ] = DEFAULT_LIMIT,
    as_json: JsonOpt = False,
) -> None:
    """Find live services across the network, listed by name, the first --limit of them.

    With --json: {"total": matches, "returned": shown, "services": [...]}.
    """
    for c in category or ():
        if c not in CATEGORIES:
            fail(f"--category {c!r}: use one of {', '.join(CATEGORIES)}", 2)
    when = dt.datetime.now()
    if at is not None:
        try:
            when = dt.datetime.fromisoformat(at)
        except ValueError:
            fail(f"--at {at!r}: write a local time as YYYY-MM-DDTHH:MM", 2)
    search = Search(
        text=text,
        categories=tuple(category or ()),
        area=parse_district(area) if area else None,
        free=free,
        open_at=when if open_now else None,
    )
    found, total = find(folder_of(data), search, limit=limit or None)
    if as_json:
        services = [
            {
                "publisher": hub_display(f.publisher),
                **msgspec.to_builtins(f.service),
                "capacity": f.capacity,
                "ratings": f.rating.ratings if f.rating else 0,
                "average_rating": f.rating.average if f.rating else None,
            }
            for f in found
        ]
        print_json({"total": total, "returned": len(found), "services": services})
        return
    if not found:
        out.print("no services match")
        return
    table = Table(
        "service", "name", "organisation", "categories", "areas", "cost", "capacity", "rating"
    )
    for f in found:
        s = f.service
        table.add_row(
            f"{short_hub(f.publisher)}/{s.id}",
            s.name,
            s.organisation,
            ", ".join(s.categories),
            ", ".join(s.areas) or "-",
            costs_text(s),
            f"{f.capacity['status']} ({f.capacity['as_of']})" if f.capacity else "-",
            rating_text(f.rating),
        )
    out.print(table)
    if total > len(found):
        out.print(
            f"{total - len(found)} more — use --limit {total} (or --limit 0) to show them all, "
            "or narrow the search",
            markup=False,
        )


def register(app: typer.Typer) -> None:
    # Imported here: these modules build on this one (Listing, _listings).
    from hubnode.commands.directory_print import directory_print
    from hubnode.commands.hsds import directory_export, directory_import

    directory_app.command("export")(directory_export)
    directory_app.command("import")(directory_import)
    directory_app.command("print")(directory_print)
    app.add_typer(service_app, name="service", no_args_is_help=True)
    app.add_typer(capacity_app, name="capacity", no_args_is_help=True)
    app.add_typer(directory_app, name="directory")
