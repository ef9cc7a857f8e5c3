"""The directory view: every hub's published services, their current fields and capacity.

A service is keyed by (publishing hub, service id) and only its publisher's events change
it. One hub's events arrive in seq order, so applying them as they come gives the same
state on every hub whatever order different hubs' events were interleaved in. A peer's
update, withdrawal or capacity report for a service it did not publish, or for a service
that does not exist (yet) in its own log, is ignored with a recorded reason.

``details.data`` holds the service's current fields as canonical JSON (a
:class:`ServicePublished`). ``services`` and the ``categories``, ``areas`` and ``hours``
tables copy the parts search filters and sorts on, so that a search runs in SQL over narrow
rows and decodes only the services it shows.
"""

from __future__ import annotations

from typing import ClassVar, Final

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

_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(ServicePublished)


def decode_service(data: str | bytes) -> ServicePublished:
    """The service stored in ``details.data``."""
    return _decoder.decode(data)


def search_text(service: ServicePublished) -> str:
    """What ``directory search --text`` matches against: name, description, organisation."""
    return "\n".join((service.name, service.description, service.organisation)).casefold()


class DirectoryProjection(Projection):
    name: ClassVar[str] = "directory"
    # 2: ``hours`` for --open-now in SQL; ``data`` moved from ``services`` to ``details``;
    # services indexed in name order.
    version: ClassVar[int] = 2
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
        "details": "publisher BLOB NOT NULL, service TEXT NOT NULL, data TEXT NOT NULL, "
        "PRIMARY KEY (publisher, service)",
        # The primary keys serve search (by category, by district, by day and time); the
        # UNIQUE keys index the same rows by service, for replacing a service's rows on
        # each update.
        "categories": "publisher BLOB NOT NULL, service TEXT NOT NULL, category TEXT NOT NULL, "
        "PRIMARY KEY (category, publisher, service), UNIQUE (publisher, service, category)",
        "areas": "publisher BLOB NOT NULL, service TEXT NOT NULL, district TEXT NOT NULL, "
        "PRIMARY KEY (district, publisher, service), UNIQUE (publisher, service, district)",
        # One row per weekday of each weekly-hours entry. Entries repeating a day and
        # times (with different notes) collapse into one row.
        "hours": "publisher BLOB NOT NULL, service TEXT NOT NULL, day TEXT NOT NULL, "
        "opens TEXT NOT NULL, closes TEXT NOT NULL, "
        "PRIMARY KEY (day, opens, closes, publisher, service), "
        "UNIQUE (publisher, service, day, opens, closes)",
        "capacity": "publisher BLOB NOT NULL, service TEXT NOT NULL, status TEXT NOT NULL, "
        "as_of TEXT NOT NULL, note TEXT NOT NULL, seq INTEGER NOT NULL, "
        "PRIMARY KEY (publisher, service)",
    }

    def apply(self, event: Event, tx: ProjectionTx) -> None:
        body = event.body
        if isinstance(body, ServicePublished):
            row = tx.one(
                "SELECT published_seq FROM {services} WHERE publisher = ? AND service = ?",
                (event.hub, body.id),
            )
            published_seq = event.seq if row is None else row[0]
            self._store(event, tx, body, published_seq)
            tx.execute(
                "UPDATE {services} SET withdrawn = 0, withdrawn_reason = '' "
                "WHERE publisher = ? AND service = ?",
                (event.hub, body.id),
            )
        elif isinstance(body, ServiceUpdated):
            current = self._own_live_service(event, tx, body.id, body.publisher, "update")
            if current is None:
                return
            service, published_seq = current
            updated = msgspec.structs.replace(service, **body.changes())
            self._store(event, tx, updated, published_seq)
        elif isinstance(body, ServiceWithdrawn):
            if self._own_live_service(event, tx, body.service, body.publisher, "withdraw") is None:
                return
            tx.execute(
                "UPDATE {services} SET withdrawn = 1, withdrawn_reason = ?, updated_seq = ? "
                "WHERE publisher = ? AND service = ?",
                (body.reason, event.seq, event.hub, body.service),
            )
        elif isinstance(body, CapacityReported):
            found = self._own_live_service(
                event, tx, body.service, body.publisher, "report capacity of"
            )
            if found is None:
                return
            tx.execute(
                "INSERT OR REPLACE INTO {capacity} VALUES (?, ?, ?, ?, ?, ?)",
                (
                    event.hub,
                    body.service,
                    body.status,
                    body.as_of.isoformat(),
                    body.note,
                    event.seq,
                ),
            )

    def _own_live_service(
        self, event: Event, tx: ProjectionTx, service: str, publisher: str | None, action: str
    ) -> tuple[ServicePublished, int] | None:
        """The author's live service ``service``, or None after recording why not."""
        author = hub_display(event.hub)
        if publisher is not None and publisher != author:
            tx.ignore(
                event,
                f"only the publisher {publisher} may {action} service {service!r}; "
                f"{author} is not it",
            )
            return None
        row = tx.one(
            "SELECT d.data, s.withdrawn, s.published_seq FROM {services} s "
            "JOIN {details} d ON d.publisher = s.publisher AND d.service = s.service "
            "WHERE s.publisher = ? AND s.service = ?",
            (event.hub, service),
        )
        if row is None:
            tx.ignore(event, f"{author} has published no service {service!r} to {action}")
            return None
        if row[1]:
            tx.ignore(event, f"service {service!r} of {author} is withdrawn; cannot {action} it")
            return None
        return decode_service(row[0]), int(row[2])

    def _store(
        self, event: Event, tx: ProjectionTx, service: ServicePublished, published_seq: int
    ) -> None:
        key = (event.hub, service.id)
        tx.execute(
            "INSERT INTO {services} VALUES (?, ?, ?, ?, ?, ?, 0, '', ?, ?) "
            "ON CONFLICT (publisher, service) DO UPDATE SET name = excluded.name, "
            "organisation = excluded.organisation, text = excluded.text, "
            "free = excluded.free, updated_seq = excluded.updated_seq",
            (
                *key,
                service.name,
                service.organisation,
                search_text(service),
                int(any(c.kind == "free" for c in service.costs)),
                published_seq,
                event.seq,
            ),
        )
        tx.execute(
            "INSERT OR REPLACE INTO {details} VALUES (?, ?, ?)",
            (*key, _encoder.encode(service).decode()),
        )
        tx.execute("DELETE FROM {categories} WHERE publisher = ? AND service = ?", key)
        tx.executemany(
            "INSERT INTO {categories} VALUES (?, ?, ?)",
            [(*key, c) for c in service.categories],
        )
        tx.execute("DELETE FROM {areas} WHERE publisher = ? AND service = ?", key)
        tx.executemany("INSERT INTO {areas} VALUES (?, ?, ?)", [(*key, a) for a in service.areas])
        tx.execute("DELETE FROM {hours} WHERE publisher = ? AND service = ?", key)
        tx.executemany(
            "INSERT OR IGNORE INTO {hours} VALUES (?, ?, ?, ?, ?)",
            [(*key, day, h.opens, h.closes) for h in service.schedules for day in h.days],
        )


PROJECTIONS: Final[tuple[type[Projection], ...]] = (DirectoryProjection,)
