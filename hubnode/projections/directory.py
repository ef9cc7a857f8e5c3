"""The directory view: every hub's published services, their current fields and capacity.

A service is keyed by (publishing hub, service id) and only its publisher's events change
it. One hub's events arrive in seq order, so applying them as they come gives the same
state on every hub whatever order different hubs' events were interleaved in. A peer's
update, withdrawal or capacity report for a service it did not publish, or for a service
that does not exist (yet) in its own log, is ignored with a recorded reason.

``details.data`` holds the service's current fields as msgpack (a
:class:`ServicePublished`; :func:`decode_service` reads it). ``services`` and the
``categories``, ``areas`` and ``hours`` tables copy the parts search filters and sorts on,
so that a search runs in SQL over narrow rows and decodes only the services it shows. An
update rewrites only the rows whose values it changes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any, ClassVar, Final

import msgspec

from hubnode.events.directory import (
    CapacityReported,
    ServicePublished,
    ServiceUpdated,
    ServiceWithdrawn,
)
from hubnode.events.ids import hub_display
from hubnode.events.verify import Event
from hubnode.projections.base import Projection, ProjectionTx

_encoder: Final = msgspec.msgpack.Encoder()
_decoder: Final = msgspec.msgpack.Decoder(ServicePublished)


def decode_service(data: bytes) -> ServicePublished:
    """The service stored in ``details.data``."""
    return _decoder.decode(data)


def search_text(service: ServicePublished) -> str:
    """What ``directory search --text`` matches against: name, description, organisation."""
    return "\n".join((service.name, service.description, service.organisation)).casefold()


class DirectoryProjection(Projection):
    name: ClassVar[str] = "directory"
    # 2: ``hours`` for --open-now in SQL; ``data`` moved from ``services`` to ``details``;
    # services indexed in name order. 3: ``details.data`` is msgpack, half the decoding
    # time of JSON (an update decodes the service it changes).
    version: ClassVar[int] = 3
    cost_per_event: ClassVar[float] = 1.8  # bench/projections.py, 2026-11-26
    kinds: ClassVar[frozenset[str]] = frozenset(
        {"service.published", "service.updated", "service.withdrawn", "capacity.reported"}
    )
    tables: ClassVar[dict[str, str]] = {
        "services": "publisher BLOB NOT NULL, service TEXT NOT NULL, name TEXT NOT NULL, "
        "organisation TEXT NOT NULL, text TEXT NOT NULL, free INTEGER NOT NULL, "
        "withdrawn INTEGER NOT NULL, withdrawn_reason TEXT NOT NULL, "
        "published_seq INTEGER NOT NULL, updated_seq INTEGER NOT NULL, "
        "PRIMARY KEY (publisher, service), "
        # Unique because (publisher, service) is: search walks it to list a page of
        # dense matches in name order without sorting them all.
        "UNIQUE (withdrawn, name, publisher, service)",
        # Apart from ``services``, whose rows a search scans: the JSON is four fifths of
        # a service's bytes and is read only for the services shown.
        "details": "publisher BLOB NOT NULL, service TEXT NOT NULL, data BLOB NOT NULL, "
        "PRIMARY KEY (publisher, service)",
        # The primary keys serve search (by category, by district, by day and time); the
        # UNIQUE keys index the same rows by service, for replacing a service's rows on
        # each update.
        "categories": "publisher BLOB NOT NULL, service TEXT NOT NULL, category TEXT NOT NULL, "
        "PRIMARY KEY (category, publisher, service), UNIQUE (publisher, service, category) "
        "WITHOUT ROWID",
        "areas": "publisher BLOB NOT NULL, service TEXT NOT NULL, district TEXT NOT NULL, "
        "PRIMARY KEY (district, publisher, service), UNIQUE (publisher, service, district) "
        "WITHOUT ROWID",
        # One row per weekday of each weekly-hours entry. Entries repeating a day and
        # times (with different notes) collapse into one row.
        "hours": "publisher BLOB NOT NULL, service TEXT NOT NULL, day TEXT NOT NULL, "
        "opens TEXT NOT NULL, closes TEXT NOT NULL, "
        "PRIMARY KEY (day, opens, closes, publisher, service), "
        "UNIQUE (publisher, service, day, opens, closes) WITHOUT ROWID",
        "capacity": "publisher BLOB NOT NULL, service TEXT NOT NULL, status TEXT NOT NULL, "
        "as_of TEXT NOT NULL, note TEXT NOT NULL, seq INTEGER NOT NULL, "
        "PRIMARY KEY (publisher, service) WITHOUT ROWID",
    }

    def apply(self, event: Event, tx: ProjectionTx) -> None:
        body = event.body
        if isinstance(body, ServicePublished):
            row = tx.one(
                "SELECT data FROM {details} WHERE publisher = ? AND service = ?",
                (event.hub, body.id),
            )
            if row is None:
                self._insert(event, tx, body)
            else:  # republished whole: also undoes a withdrawal
                self._replace(event, tx, decode_service(row[0]), body, withdrawn=0)
        elif isinstance(body, ServiceUpdated):
            if self._not_publisher(event, tx, body.id, body.publisher, "update"):
                return
            row = tx.one(
                "SELECT d.data FROM {services} s "
                "JOIN {details} d ON d.publisher = s.publisher AND d.service = s.service "
                "WHERE s.publisher = ? AND s.service = ? AND s.withdrawn = 0",
                (event.hub, body.id),
            )
            if row is None:
                self._not_live(event, tx, body.id, "update")
                return
            current = decode_service(row[0])
            self._replace(event, tx, current, msgspec.structs.replace(current, **body.changes()))
        elif isinstance(body, ServiceWithdrawn):
            if self._not_publisher(event, tx, body.service, body.publisher, "withdraw"):
                return
            if not tx.execute(
                "UPDATE {services} SET withdrawn = 1, withdrawn_reason = ?, updated_seq = ? "
                "WHERE publisher = ? AND service = ? AND withdrawn = 0",
                (body.reason, event.seq, event.hub, body.service),
            ).rowcount:
                self._not_live(event, tx, body.service, "withdraw")
        elif isinstance(body, CapacityReported):
            action = "report capacity of"
            if self._not_publisher(event, tx, body.service, body.publisher, action):
                return
            if not tx.execute(
                "INSERT OR REPLACE INTO {capacity} SELECT publisher, service, ?, ?, ?, ? "
                "FROM {services} WHERE publisher = ? AND service = ? AND withdrawn = 0",
                (
                    body.status,
                    body.as_of.isoformat(),
                    body.note,
                    event.seq,
                    event.hub,
                    body.service,
                ),
            ).rowcount:
                self._not_live(event, tx, body.service, action)

    @staticmethod
    def _not_publisher(
        event: Event, tx: ProjectionTx, service: str, publisher: str | None, action: str
    ) -> bool:
        """True, after recording why, if the event names a publisher other than its author."""
        author = hub_display(event.hub)
        if publisher is None or publisher == author:
            return False
        tx.ignore(
            event,
            f"only the publisher {publisher} may {action} service {service!r}; {author} is not it",
        )
        return True

    @staticmethod
    def _not_live(event: Event, tx: ProjectionTx, service: str, action: str) -> None:
        """Record why the author's service ``service`` is not there to act on."""
        author = hub_display(event.hub)
        row = tx.one(
            "SELECT withdrawn FROM {services} WHERE publisher = ? AND service = ?",
            (event.hub, service),
        )
        if row is None:
            tx.ignore(event, f"{author} has published no service {service!r} to {action}")
        else:
            tx.ignore(event, f"service {service!r} of {author} is withdrawn; cannot {action} it")

    def _insert(self, event: Event, tx: ProjectionTx, service: ServicePublished) -> None:
        """A service published for the first time."""
        key = (event.hub, service.id)
        tx.execute(
            "INSERT INTO {services} VALUES (?, ?, ?, ?, ?, ?, 0, '', ?, ?)",
            (*key, *_searched(service), event.seq, event.seq),
        )
        tx.execute("INSERT INTO {details} VALUES (?, ?, ?)", (*key, _encoder.encode(service)))
        self._insert_rows(tx, key, service, _ROWS)

    def _replace(
        self,
        event: Event,
        tx: ProjectionTx,
        old: ServicePublished,
        new: ServicePublished,
        *,
        withdrawn: int | None = None,
    ) -> None:
        """Store ``new`` in place of ``old``, writing only the rows that change."""
        key = (event.hub, new.id)
        searched = _searched(new)
        sets = ["updated_seq = ?"]
        params: list[Any] = [event.seq]
        for column, before, after in zip(_SEARCHED, _searched(old), searched, strict=True):
            if before != after:
                sets.append(f"{column} = ?")
                params.append(after)
        if withdrawn is not None:
            sets.append("withdrawn = ?, withdrawn_reason = ''")
            params.append(withdrawn)
        tx.execute(
            f"UPDATE {{services}} SET {', '.join(sets)} WHERE publisher = ? AND service = ?",
            (*params, *key),
        )
        tx.execute(
            "UPDATE {details} SET data = ? WHERE publisher = ? AND service = ?",
            (_encoder.encode(new), *key),
        )
        changed = [t for t in _ROWS if _ROWS[t](old) != _ROWS[t](new)]
        for table in changed:
            tx.execute(f"DELETE FROM {{{table}}} WHERE publisher = ? AND service = ?", key)
        self._insert_rows(tx, key, new, changed)

    @staticmethod
    def _insert_rows(
        tx: ProjectionTx,
        key: tuple[bytes, str],
        service: ServicePublished,
        tables: Iterable[str],
    ) -> None:
        for table in tables:
            rows = _ROWS[table](service)
            if rows:
                tx.executemany(_INSERT_ROWS[table], [(*key, *row) for row in rows])


_SEARCHED: Final = ("name", "organisation", "text", "free")
"""The columns of ``services`` a service's fields determine."""


def _searched(service: ServicePublished) -> tuple[str, str, str, int]:
    return (
        service.name,
        service.organisation,
        search_text(service),
        int(any(c.kind == "free" for c in service.costs)),
    )


def _hours(service: ServicePublished) -> frozenset[tuple[str, str, str]]:
    return frozenset((day, h.opens, h.closes) for h in service.schedules for day in h.days)


_ROWS: Final[dict[str, Callable[[ServicePublished], Collection[tuple[str, ...]]]]] = {
    "categories": lambda s: frozenset((c,) for c in s.categories),
    "areas": lambda s: frozenset((a,) for a in s.areas),
    "hours": _hours,
}
"""A service's rows (without its key) in each table indexing it for search, as sets: an
update rewrites a table's rows only when the set changes."""

_INSERT_ROWS: Final = {
    "categories": "INSERT INTO {categories} VALUES (?, ?, ?)",
    "areas": "INSERT INTO {areas} VALUES (?, ?, ?)",
    "hours": "INSERT INTO {hours} VALUES (?, ?, ?, ?, ?)",
}

PROJECTIONS: Final[tuple[type[Projection], ...]] = (DirectoryProjection,)
