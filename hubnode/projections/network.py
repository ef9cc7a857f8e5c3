"""The network view: hubs, their roles and areas, and who admitted whom (DESIGN §7).

Every fact has one owner: a hub's profile comes only from its own events (which arrive
in seq order), and an admission is keyed by (admitter, admitted). So every hub holding
the same events computes the same tables, whatever order hubs' events arrived in.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, ClassVar

from hubnode.events.network import HubAdmitted, HubProfileUpdated, HubRegistered
from hubnode.events.verify import Event
from hubnode.projections.base import Projection, ProjectionTx

if TYPE_CHECKING:
    from hubnode.projections.runner import ProjectionRunner


class NetworkProjection(Projection):
    name: ClassVar[str] = "network"
    version: ClassVar[int] = 1
    kinds: ClassVar[frozenset[str]] = frozenset(
        {"hub.registered", "hub.profile_updated", "hub.admitted"}
    )
    tables: ClassVar[dict[str, str]] = {
        "hubs": "hub BLOB PRIMARY KEY, name TEXT NOT NULL, roles TEXT NOT NULL, "
        "area TEXT NOT NULL, contact TEXT NOT NULL, registered_seq INTEGER NOT NULL, "
        "updated_seq INTEGER NOT NULL",
        "admissions": "admitter BLOB NOT NULL, admitted TEXT NOT NULL, seq INTEGER NOT NULL, "
        "note TEXT NOT NULL, PRIMARY KEY (admitter, admitted)",
    }

    def apply(self, event: Event, tx: ProjectionTx) -> None:
        body = event.body
        if isinstance(body, HubRegistered):
            tx.execute(
                "INSERT INTO {hubs} VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hub) DO UPDATE SET "
                "name = excluded.name, roles = excluded.roles, area = excluded.area, "
                "contact = excluded.contact, updated_seq = excluded.updated_seq",
                (
                    event.hub,
                    body.name,
                    json.dumps(list(body.roles)),
                    body.area,
                    body.contact,
                    event.seq,
                    event.seq,
                ),
            )
        elif isinstance(body, HubProfileUpdated):
            row = tx.one(
                "SELECT name, roles, area, contact FROM {hubs} WHERE hub = ?", (event.hub,)
            )
            if row is None:
                tx.ignore(event, "profile update before the hub registered")
                return
            name, roles, area, contact = row
            tx.execute(
                "UPDATE {hubs} SET name = ?, roles = ?, area = ?, contact = ?, updated_seq = ? "
                "WHERE hub = ?",
                (
                    body.name if body.name is not None else name,
                    json.dumps(list(body.roles)) if body.roles is not None else roles,
                    body.area if body.area is not None else area,
                    body.contact if body.contact is not None else contact,
                    event.seq,
                    event.hub,
                ),
            )
        elif isinstance(body, HubAdmitted):
            tx.execute(
                "INSERT OR REPLACE INTO {admissions} VALUES (?, ?, ?, ?)",
                (event.hub, body.hub, event.seq, body.note),
            )


def hub_names(runner: ProjectionRunner) -> dict[bytes, str]:
    """Every registered hub's name by id, from the network view."""
    return dict(runner.query(NetworkProjection.name, "SELECT hub, name FROM {hubs}"))
