"""Helpers for tests, benchmarks and plugin authors: signed records without a log.

:class:`ChainWriter` signs a hub's events in memory, exactly as :class:`EventLog.append`
would, so tests can build histories of many hubs (and forks) and feed them to
``EventLog.ingest`` or an auditor. :class:`ProjectionHarness` is the in-memory twin of a
hub's projections: feed it records, read its tables and hashes.
:func:`hashes_by_batch_size` checks that a projection's tables do not depend on where the
runner's batches begin and end (what ``Projection.apply_batch`` overrides must respect).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Self

from hubnode.crypto import SigningKey
from hubnode.events.envelope import FORMAT_VERSION, Envelope, event_id, seal
from hubnode.events.kinds import KINDS, Body, KindRegistry
from hubnode.projections.base import Projection
from hubnode.projections.runner import BATCH, BuildStatus, ProjectionRunner
from hubnode.store.log import EventLog, IngestOutcome, Status


class ChainWriter:
    """Signs one hub's chain in memory: seq 1, 2, … each linking to the previous id."""

    def __init__(
        self,
        net: str,
        key: SigningKey | None = None,
        *,
        registry: KindRegistry = KINDS,
        ts: int = 1_700_000_000_000,
    ) -> None:
        self.net = net
        self.key = key or SigningKey.generate()
        self.hub = self.key.public
        self.registry = registry
        self.seq = 0
        self.head: bytes | None = None
        self.ts = ts

    def envelope(self, kind: str, body: Body | bytes, *, seq: int | None = None) -> Envelope:
        """The next envelope (or one at ``seq``, linking to the current head) — unsigned."""
        data = body if isinstance(body, bytes) else self.registry.encode_body(kind, body)
        return Envelope(
            FORMAT_VERSION,
            self.net,
            self.hub,
            self.hub,
            self.seq + 1 if seq is None else seq,
            self.head,
            self.ts,
            kind,
            data,
        )

    def sign(self, envelope: Envelope) -> bytes:
        return seal(envelope, self.key)

    def next(self, kind: str, body: Body | bytes) -> bytes:
        """Sign the next event and advance the chain; returns the wire record."""
        raw = self.sign(self.envelope(kind, body))
        self.seq += 1
        self.head = event_id(raw)
        self.ts += 1
        return raw

    def fork(self) -> ChainWriter:
        """A second writer with the same key and head: what a cloned key would sign."""
        twin = ChainWriter(self.net, self.key, registry=self.registry, ts=self.ts + 7)
        twin.seq, twin.head = self.seq, self.head
        return twin


class ProjectionHarness:
    """The in-memory twin of a hub's projections: a log and a views database in a temp
    folder, no node, no network.

    Feed it wire records (from :class:`ChainWriter`); it ingests them into a real
    :class:`~hubnode.store.log.EventLog` (verifying every signature, as a hub would) and
    catches the :class:`~hubnode.projections.runner.ProjectionRunner` up, so tests read the
    projection's tables, status and hash exactly as a hub would compute them::

        with ProjectionHarness(MyProjection) as h:
            a = h.writer()
            h.feed([a.next("hub.registered", body)])
            assert h.query("mine", "SELECT count(*) FROM {things}") == [(1,)]

    ``feed`` is synchronous (it runs its own event loop); inside ``async`` tests use
    ``await h.ingest(records)``. Records that fail verification raise ``ValueError``.
    ``batch`` sets the runner's batch size (log records per ``apply_batch`` call and
    transaction), so tests can put batch boundaries anywhere.
    """

    def __init__(
        self,
        *projections: type[Projection],
        net: str = "test-net",
        folder: Path | None = None,
        registry: KindRegistry = KINDS,
        batch: int | None = None,
    ) -> None:
        self.projections = projections
        self.net = net
        self.registry = registry
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if folder is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hubnode-harness-")
            folder = Path(self._tmp.name)
        self.folder = folder
        self.log_path = self.folder / "log.sqlite3"
        self.views_path = self.folder / "views.sqlite3"
        self._batch = batch
        self._runner: ProjectionRunner | None = None

    def writer(self, key: SigningKey | None = None) -> ChainWriter:
        """A new hub (or ``key``'s) signing events for this harness's network."""
        return ChainWriter(self.net, key, registry=self.registry)

    async def ingest(self, records: Iterable[bytes]) -> list[IngestOutcome]:
        """Ingest ``records`` in the order given, then catch every projection up."""
        async with await EventLog.open(self.log_path, net=self.net, registry=self.registry) as log:
            outcomes = await log.ingest(records)
        bad = [o for o in outcomes if o.status is Status.REJECTED]
        if bad:
            raise ValueError(
                f"{len(bad)} records failed verification; first: {bad[0].reason} {bad[0].detail}"
            )
        self.runner.catch_up()
        return outcomes

    def feed(self, records: Iterable[bytes]) -> list[IngestOutcome]:
        """``ingest`` for synchronous code (not from inside a running event loop)."""
        return asyncio.run(self.ingest(records))

    @property
    def runner(self) -> ProjectionRunner:
        """The runner over the harness's log (created with the log on first use)."""
        if self._runner is None:
            if not self.log_path.exists():
                asyncio.run(self._create_log())
            self._runner = ProjectionRunner(
                self.log_path,
                self.views_path,
                self.projections,
                registry=self.registry,
                batch=BATCH if self._batch is None else self._batch,
            )
        return self._runner

    async def _create_log(self) -> None:
        async with await EventLog.open(self.log_path, net=self.net, registry=self.registry):
            pass

    def query(self, name: str, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A read query on ``name``'s serving tables (``{table}`` placeholders)."""
        return self.runner.query(name, statement, params)

    def rows(self, name: str, table: str) -> list[tuple[Any, ...]]:
        """Every row of one of ``name``'s tables (``"_ignored"`` for ignored events), sorted."""
        return sorted(self.runner.query(name, f"SELECT * FROM {{{table}}}"))

    def ignored(self, name: str) -> dict[tuple[bytes, int], str]:
        """The events ``name`` ignored: (hub, seq) → reason."""
        return {(h, s): r for h, s, r in self.rows(name, "_ignored")}

    def hash(self, name: str) -> str:
        return self.runner.hash(name)

    def status(self, name: str) -> BuildStatus:
        """The status of ``name``'s newest build."""
        return [s for s in self.runner.status() if s.name == name][-1]

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def hashes_by_batch_size(
    projections: Sequence[type[Projection]],
    records: Sequence[bytes],
    *,
    sizes: Iterable[int] = (1, 2, 3, BATCH),
    net: str = "test-net",
    registry: KindRegistry = KINDS,
) -> dict[int, dict[str, str]]:
    """Batch size → {projection name: hash} after feeding ``records`` to a fresh harness
    whose runner uses that batch size.

    Where batches begin and end differs from hub to hub (a rebuild reads the log in big
    batches, a live hub a few records at a time), so every size must give the same hashes.
    Check it for a projection that overrides ``apply_batch``::

        by_size = hashes_by_batch_size([Mine], records)
        assert all(h == by_size[1] for h in by_size.values())
    """
    hashes: dict[int, dict[str, str]] = {}
    for size in sizes:
        with ProjectionHarness(*projections, net=net, registry=registry, batch=size) as h:
            h.feed(records)
            hashes[size] = {p.name: h.hash(p.name) for p in projections}
    return hashes
