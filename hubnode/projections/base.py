"""What a projection is: one small class (DESIGN §7, STYLE §6).

A projection declares its ``name``, ``version``, the event ``kinds`` it reads and its
``tables`` (logical name → column definitions), and implements ``apply(event, tx)``.
The runner owns everything else: the order events come in (local ``pos`` order), the
transaction, the checkpoint stored in that same transaction, rebuilds and errors.
Projections never commit.

A projection that can do a batch's work more cheaply together (derive each touched group
once, not once per event) overrides ``apply_batch(events, tx)`` instead: the runner calls
it once per batch, in the batch's transaction, before the checkpoint is written.

**Determinism.** Hubs receive other hubs' events in different orders, yet every hub
holding the same events must compute the same state (the audit property). So:

- never store ``event.pos`` or the time of arrival; identify facts by ``(hub, seq)`` or
  by the ids the events carry;
- give each fact one owning hub (only a service's publisher may update it) or an
  order-independent rule (the lowest ``(hub, seq)`` wins a race);
- events of one hub always arrive in seq order, so "the latest by that hub" is safe.

A peer's event that breaks a rule (a validly signed fact the projection must not act on)
is passed to :meth:`ProjectionTx.ignore` with a reason, the same on every hub.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, Final

from hubnode.events.verify import Event

# No "__" and no trailing "_": "__" separates the parts of a physical table name, so
# one projection's tables can never be mistaken for another's (see physical()).
_NAME: Final = re.compile(r"^(?!.*__)[a-z][a-z0-9_]{0,40}(?<!_)$")

_MAX_FORMATTED: Final = 1024

IGNORED_TABLE: Final = "_ignored"
IGNORED_COLUMNS: Final = (
    "hub BLOB NOT NULL, seq INTEGER NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (hub, seq) "
    "WITHOUT ROWID"
)

_WITHOUT_ROWID: Final = "WITHOUT ROWID"


def create(columns: str) -> str:
    """The part of ``CREATE TABLE name …`` after the name, for a ``tables`` definition."""
    if columns.rstrip().upper().endswith(_WITHOUT_ROWID):
        return f"({columns.rstrip()[: -len(_WITHOUT_ROWID)].rstrip().rstrip(',')}) WITHOUT ROWID"
    return f"({columns})"


class Projection:
    """Base class of every projection. Subclasses set the class attributes and ``apply``."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    kinds: ClassVar[frozenset[str]]
    tables: ClassVar[Mapping[str, str]]
    """Logical table name → column definitions (``"hub BLOB PRIMARY KEY, name TEXT"``),
    optionally ending in ``WITHOUT ROWID`` (a table keyed by its primary key alone: one
    B-tree to write per row instead of two, for tables never read by ``rowid``)."""
    cost_per_event: ClassVar[float] = 1.0
    """Roughly how long applying one event of its kinds takes, relative to the others
    (1.0 ≈ 20 µs). Used only to share a parallel rebuild out fairly between processes."""

    def apply(self, event: Event, tx: ProjectionTx) -> None:
        raise NotImplementedError

    def apply_batch(self, events: Sequence[Event], tx: ProjectionTx) -> None:
        """Apply one batch of events (its kinds, in local ``pos`` order).

        The runner calls this once per batch, inside the transaction that then stores the
        checkpoint, so a crash loses the batch's writes and its checkpoint together. The
        default applies each event with ``apply``. An override may defer work to the end of
        the batch (collect what the events touch, then derive each thing once), keeping the
        state it collects in local variables, not on ``self``: a batch that fails is rolled
        back and tried again one event at a time, as batches of one. Where batch boundaries
        fall differs from hub to hub, so the tables must not depend on them.
        """
        for event in events:
            self.apply(event, tx)

    @classmethod
    def check(cls) -> None:
        """Raise ValueError if the class is not a well-formed projection."""
        for attr in ("name", "kinds", "tables"):
            if not hasattr(cls, attr):
                raise ValueError(f"projection {cls.__name__} does not set {attr!r}")
        if not _NAME.match(cls.name):
            raise ValueError(
                f"projection name {cls.name!r}: use lower-case letters, digits and single _ "
                "(not at the end)"
            )
        if cls.version < 1:
            raise ValueError(f"projection {cls.name}: version must be at least 1")
        for table in cls.tables:
            if not _NAME.match(table):
                raise ValueError(f"projection {cls.name}: bad table name {table!r}")


def physical(name: str, build: int, table: str) -> str:
    """The SQLite table holding ``table`` of projection ``name`` in build ``build``.

    Each rebuild (a version bump or ``hubnode projections rebuild``) writes fresh tables
    under a new build number, so the serving build stays readable until the swap.
    """
    return f"p__{name}__b{build}__{table}"


class ProjectionTx:
    """What ``apply`` may do: SQL on its own tables, inside the runner's transaction.

    Write ``{table}`` in SQL for a logical table; it is replaced by the physical name,
    e.g. ``tx.execute("INSERT INTO {hubs} (hub, name) VALUES (?, ?)", (h, n))``.
    """

    def __init__(self, db: sqlite3.Connection, names: Mapping[str, str]) -> None:
        self._db = db
        self._names = names
        # Statements are a few dozen constant strings run millions of times in a rebuild:
        # substitute the table names once per statement, not once per call.
        self._formatted: dict[str, str] = {}

    def sql(self, statement: str) -> str:
        formatted = self._formatted.get(statement)
        if formatted is None:
            if len(self._formatted) >= _MAX_FORMATTED:  # SQL built from data: don't grow
                self._formatted.clear()
            formatted = self._formatted[statement] = statement.format_map(self._names)
        return formatted

    def execute(
        self, statement: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> sqlite3.Cursor:
        return self._db.execute(self.sql(statement), params)

    def executemany(self, statement: str, rows: Iterable[Sequence[Any]]) -> sqlite3.Cursor:
        return self._db.executemany(self.sql(statement), rows)

    def one(
        self, statement: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.execute(statement, params).fetchone()
        return row

    def all(
        self, statement: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        return list(self.execute(statement, params).fetchall())

    def ignore(self, event: Event, reason: str) -> None:
        """Record that ``event`` breaks a rule of this projection and changes nothing."""
        self.execute(
            "INSERT OR REPLACE INTO {_ignored} (hub, seq, reason) VALUES (?, ?, ?)",
            (event.hub, event.seq, reason),
        )
