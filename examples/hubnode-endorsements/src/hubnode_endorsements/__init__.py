"""Endorsements: how many other hubs have admitted (vouched for) each hub.

The facts and their owners:

- an endorsement is ``(admitter, admitted)``, owned by the admitter: only its own
  ``hub.admitted`` events create it, and they arrive in seq order, so "the first time A
  admitted C" is the same event on every hub;
- the count per admitted hub only ever grows by one per new pair, which commutes: the
  order in which different admitters' events arrive does not change the total.

A hub admitting itself breaks the rule "endorsed by *others*": the event is validly
signed and stays in the log, but the projection records it with ``tx.ignore`` (the same
reason on every hub) and changes nothing.

What it never does: read ``event.pos`` or the time of arrival, or decide anything from
whether the *admitted* hub's own events have arrived yet (that depends on gossip order).
"""

from __future__ import annotations

from typing import ClassVar

from hubnode.events.ids import hub_display
from hubnode.events.network import HubAdmitted
from hubnode.events.verify import Event
from hubnode.projections import Projection, ProjectionRunner, ProjectionTx

__all__ = ["EndorsementsProjection", "ranking"]


class EndorsementsProjection(Projection):
    name: ClassVar[str] = "endorsements"
    version: ClassVar[int] = 1
    kinds: ClassVar[frozenset[str]] = frozenset({"hub.admitted"})
    tables: ClassVar[dict[str, str]] = {
        # One row per (admitter, admitted); seq is the admitter's first admission of it.
        "endorsements": "admitter BLOB NOT NULL, admitted TEXT NOT NULL, "
        "seq INTEGER NOT NULL, PRIMARY KEY (admitter, admitted)",
        "counts": "admitted TEXT PRIMARY KEY, endorsers INTEGER NOT NULL",
    }

    def apply(self, event: Event, tx: ProjectionTx) -> None:
        body = event.body
        if not isinstance(body, HubAdmitted):  # only the kinds above ever arrive
            return
        if body.hub == hub_display(event.hub):
            tx.ignore(event, "a hub cannot endorse itself")
            return
        added = tx.execute(
            "INSERT OR IGNORE INTO {endorsements} (admitter, admitted, seq) VALUES (?, ?, ?)",
            (event.hub, body.hub, event.seq),
        ).rowcount
        if added:
            tx.execute(
                "INSERT INTO {counts} (admitted, endorsers) VALUES (?, 1) "
                "ON CONFLICT (admitted) DO UPDATE SET endorsers = endorsers + 1",
                (body.hub,),
            )


def ranking(runner: ProjectionRunner) -> list[tuple[str, int]]:
    """Hubs by endorsements, most first (ties by hub id): ``[("hub:…", 3), …]``."""
    rows = runner.query(
        "endorsements", "SELECT admitted, endorsers FROM {counts} ORDER BY endorsers DESC, admitted"
    )
    return [(str(hub), int(n)) for hub, n in rows]
