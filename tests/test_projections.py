"""The projection framework: order, checkpoints, errors, rebuilds, determinism, commands.

Logs are real SQLite files filled with ``EventLog.ingest`` from several hubs' ``ChainWriter``s;
the runner is driven directly (or through ``ProjectionHarness``, the in-memory twin).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from hubnode import EventLog, HubFolder
from hubnode.cli import app
from hubnode.events.ids import hub_display
from hubnode.events.network import HubAdmitted, HubProfileUpdated
from hubnode.events.verify import Event
from hubnode.projections import (
    NetworkProjection,
    Projection,
    ProjectionError,
    ProjectionRunner,
    ProjectionTx,
)
from hubnode.testing import ChainWriter, ProjectionHarness, hashes_by_batch_size

from .conftest import NET, chain, registered, update

ALL_NETWORK_KINDS = frozenset({"hub.registered", "hub.profile_updated", "hub.admitted"})


class Tally(Projection):
    """Records every event it is given; a second apply of one (hub, seq) violates the key."""

    name: ClassVar[str] = "tally"
    kinds: ClassVar[frozenset[str]] = ALL_NETWORK_KINDS
    tables: ClassVar[dict[str, str]] = {
        # pos is stored here only to check the runner's order: real projections never do.
        "seen": "hub BLOB NOT NULL, seq INTEGER NOT NULL, pos INTEGER NOT NULL, "
        "PRIMARY KEY (hub, seq)"
    }

    def apply(self, event: Event, tx: ProjectionTx) -> None:
        tx.execute("INSERT INTO {seen} VALUES (?, ?, ?)", (event.hub, event.seq, event.pos))


class Fragile(Projection):
    """Like Tally, but raises on the event of ``bad_hub`` at ``bad_seq``."""

    name: ClassVar[str] = "fragile"
    kinds: ClassVar[frozenset[str]] = ALL_NETWORK_KINDS
    tables: ClassVar[dict[str, str]] = {"seen": "hub BLOB, seq INTEGER, PRIMARY KEY (hub, seq)"}
    bad_hub: ClassVar[bytes] = b""
    bad_seq: ClassVar[int] = 0
    attempts: ClassVar[int] = 0

    def apply(self, event: Event, tx: ProjectionTx) -> None:
        tx.execute("INSERT INTO {seen} VALUES (?, ?)", (event.hub, event.seq))
        if (event.hub, event.seq) == (self.bad_hub, self.bad_seq):
            type(self).attempts += 1
            raise RuntimeError("area must not be empty")


class Batches(Projection):
    """Does its work per batch: a row per batch (first pos, size), then a row per event.
    A second apply of one event, or of one batch, violates a key."""

    name: ClassVar[str] = "batches"
    kinds: ClassVar[frozenset[str]] = ALL_NETWORK_KINDS
    tables: ClassVar[dict[str, str]] = {
        # pos again only to check the runner: these tables depend on batch boundaries,
        # which real projections must not (see hashes_by_batch_size).
        "batches": "first_pos INTEGER PRIMARY KEY, size INTEGER NOT NULL",
        "seen": "hub BLOB NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (hub, seq)",
    }
    bad_seq: ClassVar[int] = 0

    def apply(self, event: Event, tx: ProjectionTx) -> None:
        raise AssertionError("the runner calls apply_batch")

    def apply_batch(self, events: Sequence[Event], tx: ProjectionTx) -> None:
        tx.execute("INSERT INTO {batches} VALUES (?, ?)", (events[0].pos, len(events)))
        tx.executemany("INSERT INTO {seen} VALUES (?, ?)", [(e.hub, e.seq) for e in events])
        if any(e.seq == self.bad_seq for e in events):
            raise RuntimeError("no area")


class AdmissionsOnly(Projection):
    name: ClassVar[str] = "admissions_only"
    kinds: ClassVar[frozenset[str]] = frozenset({"hub.admitted"})
    tables: ClassVar[dict[str, str]] = {"admitted": "hub TEXT PRIMARY KEY"}

    def apply(self, event: Event, tx: ProjectionTx) -> None:
        assert isinstance(event.body, HubAdmitted)
        tx.execute("INSERT OR IGNORE INTO {admitted} VALUES (?)", (event.body.hub,))


class NetworkV2(NetworkProjection):
    """A version bump with changed tables: an ``areas`` table counting hubs per area."""

    version: ClassVar[int] = 2
    tables: ClassVar[dict[str, str]] = {
        **NetworkProjection.tables,
        "areas": "hub BLOB PRIMARY KEY, area TEXT NOT NULL",
    }

    def apply(self, event: Event, tx: ProjectionTx) -> None:
        super().apply(event, tx)
        row = tx.one("SELECT area FROM {hubs} WHERE hub = ?", (event.hub,))
        if row is not None:
            tx.execute("INSERT OR REPLACE INTO {areas} VALUES (?, ?)", (event.hub, row[0]))


def admit(hub: ChainWriter) -> HubAdmitted:
    return HubAdmitted(hub=hub_display(hub.hub), note="vouched")


async def ingest(log_path: Path, records: Sequence[bytes]) -> None:
    async with await EventLog.open(log_path, net=NET) as log:
        outcomes = await log.ingest(records)
    assert all(o.status == "accepted" for o in outcomes), outcomes


def runner_on(
    tmp_path: Path, *projections: type[Projection], batch: int = 2000
) -> ProjectionRunner:
    return ProjectionRunner(
        tmp_path / "log.sqlite3", tmp_path / "views.sqlite3", projections, batch=batch
    )


def interleave(*hubs: list[bytes]) -> list[bytes]:
    """Round-robin over hubs, each hub's records kept in seq order."""
    out: list[bytes] = []
    for i in range(max(map(len, hubs))):
        out += [h[i] for h in hubs if i < len(h)]
    return out


def status_of(runner: ProjectionRunner, name: str) -> list[tuple[int, int, str]]:
    """(build, version, status) of ``name``'s live builds."""
    return [(s.build, s.version, s.status) for s in runner.status() if s.name == name]


def physical_tables(runner: ProjectionRunner, name: str) -> set[str]:
    rows = runner._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r[0] for r in rows if r[0].startswith(f"p__{name}__")}


# -- order, checkpoints, catching up --------------------------------------------------------


async def test_events_are_applied_in_log_pos_order(tmp_path: Path) -> None:
    _, a = chain(6)
    _, b = chain(4)
    await ingest(tmp_path / "log.sqlite3", interleave(a, b))
    runner = runner_on(tmp_path, Tally, batch=3)
    assert runner.catch_up() == 10
    seen = runner.query("tally", "SELECT pos FROM {seen} ORDER BY rowid")
    assert [p for (p,) in seen] == list(range(1, 11))


async def test_checkpoint_is_committed_with_the_projections_writes(tmp_path: Path) -> None:
    _, records = chain(7)
    await ingest(tmp_path / "log.sqlite3", records)
    runner = runner_on(tmp_path, Tally, batch=3)
    # The checkpoint UPDATE of the second batch fails, as a crash right there would.
    runner._db.execute(
        "CREATE TRIGGER lose_checkpoint BEFORE UPDATE OF checkpoint ON projection_builds "
        "WHEN NEW.checkpoint > 3 BEGIN SELECT RAISE(ABORT, 'disk went away'); END"
    )
    with pytest.raises(sqlite3.Error, match="disk went away"):
        runner.catch_up()
    # Nothing of the failed batch is visible: its writes went with its checkpoint.
    assert runner.query("tally", "SELECT seq FROM {seen} ORDER BY seq") == [(1,), (2,), (3,)]
    assert [s.checkpoint for s in runner.status()] == [3]
    runner._db.execute("DROP TRIGGER lose_checkpoint")
    runner.close()

    again = runner_on(tmp_path, Tally, batch=3)  # a restart: continues from the checkpoint
    assert again.catch_up() == 4
    assert again.query("tally", "SELECT seq FROM {seen} ORDER BY seq") == [
        (s,) for s in range(1, 8)
    ]
    assert status_of(again, "tally") == [(1, 1, "serving")]  # no key violation: none twice


async def test_a_new_runner_continues_from_the_checkpoint(tmp_path: Path) -> None:
    writer, records = chain(5)
    await ingest(tmp_path / "log.sqlite3", records)
    first = runner_on(tmp_path, Tally, NetworkProjection)
    first.catch_up()
    digest = first.hash("network")
    first.close()
    more = [writer.next("hub.profile_updated", update(n)) for n in range(6, 9)]
    await ingest(tmp_path / "log.sqlite3", more)

    second = runner_on(tmp_path, Tally, NetworkProjection)
    assert second.hash("network") == digest  # the stored views, before catching up
    assert [s.behind for s in second.status()] == [3, 3]
    assert second.catch_up() == 6  # 3 new events for each of the two projections
    assert second.query("tally", "SELECT count(*) FROM {seen}") == [(8,)]
    assert second.query("network", "SELECT area, updated_seq FROM {hubs}") == [("area 8", 8)]
    assert all(s.status == "serving" and s.behind == 0 for s in second.status())


async def test_the_runner_follows_new_events(tmp_path: Path) -> None:
    writer, records = chain(2)
    await ingest(tmp_path / "log.sqlite3", records)
    runner = runner_on(tmp_path, NetworkProjection)
    runner.catch_up()
    assert runner.query("network", "SELECT area FROM {hubs}") == [("area 2",)]
    other = ChainWriter(NET)
    await ingest(
        tmp_path / "log.sqlite3",
        [
            writer.next("hub.profile_updated", HubProfileUpdated(area="Stockton")),
            other.next("hub.registered", registered("B")),
            writer.next("hub.admitted", admit(other)),
        ],
    )
    assert runner.catch_up() == 3
    assert sorted(runner.query("network", "SELECT name, area FROM {hubs}")) == [
        ("B", "Darlington"),
        ("Hub", "Stockton"),
    ]
    assert runner.query("network", "SELECT admitted FROM {admissions}") == [
        (hub_display(other.hub),)
    ]
    assert runner.catch_up() == 0


async def test_catch_up_reads_past_whole_batches_of_kinds_a_projection_skips(
    tmp_path: Path,
) -> None:
    writer, records = chain(7)  # seven events this projection does not read
    other = ChainWriter(NET)
    records.append(writer.next("hub.admitted", admit(other)))
    await ingest(tmp_path / "log.sqlite3", records)
    runner = runner_on(tmp_path, AdmissionsOnly, batch=2)
    runner.catch_up()
    assert runner.query("admissions_only", "SELECT hub FROM {admitted}") == [
        (hub_display(other.hub),)
    ]
    assert status_of(runner, "admissions_only") == [(1, 1, "serving")]
    assert runner.status()[0].checkpoint == 8


# -- the batch hook ---------------------------------------------------------------------------


async def test_apply_batch_is_called_once_per_batch_with_the_batchs_events(
    tmp_path: Path,
) -> None:
    _, records = chain(7)
    await ingest(tmp_path / "log.sqlite3", records)
    runner = runner_on(tmp_path, Batches, Tally, batch=3)
    assert runner.catch_up() == 14
    assert runner.query("batches", "SELECT * FROM {batches} ORDER BY first_pos") == [
        (1, 3),
        (4, 3),
        (7, 1),
    ]
    assert runner.query("batches", "SELECT count(*) FROM {seen}") == [(7,)]
    assert runner.query("tally", "SELECT count(*) FROM {seen}") == [(7,)]  # apply still works


async def test_apply_batch_gets_only_its_kinds_and_no_call_for_a_batch_without_them(
    tmp_path: Path,
) -> None:
    writer, records = chain(4)
    other = ChainWriter(NET)
    records.append(writer.next("hub.admitted", admit(other)))
    await ingest(tmp_path / "log.sqlite3", records)

    class AdmissionBatches(Batches):
        name = "admission_batches"
        kinds = frozenset({"hub.admitted"})

    runner = runner_on(tmp_path, AdmissionBatches, batch=2)
    assert runner.catch_up() == 5
    assert runner.query("admission_batches", "SELECT * FROM {batches}") == [(5, 1)]
    assert runner.status()[0].checkpoint == 5


async def test_apply_batch_writes_commit_with_the_checkpoint_and_a_crash_never_double_applies(
    tmp_path: Path,
) -> None:
    _, records = chain(7)
    await ingest(tmp_path / "log.sqlite3", records)
    runner = runner_on(tmp_path, Batches, batch=3)
    # The checkpoint UPDATE of the second batch fails, as a crash right before commit would.
    runner._db.execute(
        "CREATE TRIGGER lose_checkpoint BEFORE UPDATE OF checkpoint ON projection_builds "
        "WHEN NEW.checkpoint > 3 BEGIN SELECT RAISE(ABORT, 'disk went away'); END"
    )
    with pytest.raises(sqlite3.Error, match="disk went away"):
        runner.catch_up()
    # The second batch's writes went with its checkpoint: one transaction.
    assert runner.query("batches", "SELECT * FROM {batches}") == [(1, 3)]
    assert runner.query("batches", "SELECT count(*) FROM {seen}") == [(3,)]
    runner._db.execute("DROP TRIGGER lose_checkpoint")
    runner.close()

    again = runner_on(tmp_path, Batches, batch=3)
    assert again.catch_up() == 4
    assert again.query("batches", "SELECT * FROM {batches} ORDER BY first_pos") == [
        (1, 3),
        (4, 3),
        (7, 1),
    ]
    assert status_of(again, "batches") == [(1, 1, "serving")]  # no key violation: none twice


async def test_a_failing_batch_is_applied_again_as_batches_of_one_up_to_the_bad_event(
    tmp_path: Path,
) -> None:
    _, records = chain(7)
    await ingest(tmp_path / "log.sqlite3", records)

    class Broken(Batches):
        bad_seq = 5

    runner = runner_on(tmp_path, Broken, batch=3)
    runner.catch_up()
    assert status_of(runner, "batches") == [(1, 1, "stopped")]
    assert runner.status()[0].checkpoint == 4
    assert runner.status()[0].error == "RuntimeError: no area"
    # The failed attempt at batch 4-6 left nothing behind; event 4 alone was kept.
    assert runner.query("batches", "SELECT * FROM {batches} ORDER BY first_pos") == [
        (1, 3),
        (4, 1),
    ]
    assert runner.query("batches", "SELECT count(*) FROM {seen}") == [(4,)]


def test_hashes_by_batch_size_tells_batch_dependent_views_apart() -> None:
    records = [r for hub in HISTORY for r in hub]
    network = hashes_by_batch_size([NetworkProjection], records, net=NET, sizes=(1, 4, 2000))
    assert network == {size: {"network": REFERENCE} for size in (1, 4, 2000)}
    batches = hashes_by_batch_size([Batches], records, net=NET, sizes=(1, 4))
    assert batches[1] != batches[4]


# -- errors ---------------------------------------------------------------------------------


async def test_a_failing_projection_stops_at_the_event_and_the_others_go_on(
    tmp_path: Path,
) -> None:
    a_writer, a = chain(5)
    _, b = chain(5)
    records = interleave(a, b)
    await ingest(tmp_path / "log.sqlite3", records)

    class Broken(Fragile):
        bad_hub = a_writer.hub
        bad_seq = 3  # pos 5: the last event of the third batch of two
        attempts = 0

    runner = runner_on(tmp_path, Broken, Tally, NetworkProjection, batch=2)
    runner.catch_up()
    broken = next(s for s in runner.status() if s.name == "fragile")
    assert broken.status == "stopped"
    assert broken.error_at == f"{hub_display(a_writer.hub)} seq 3 (hub.profile_updated, pos 5)"
    assert broken.error == "RuntimeError: area must not be empty"
    assert broken.checkpoint == 4 and broken.behind == 6
    # The events before it in its batch are kept; the failing one changed nothing.
    assert runner.query("fragile", "SELECT count(*) FROM {seen}") == [(4,)]
    assert status_of(runner, "tally") == [(1, 1, "serving")]
    assert runner.query("tally", "SELECT count(*) FROM {seen}") == [(10,)]
    assert len(runner.query("network", "SELECT hub FROM {hubs}")) == 2
    attempts = Broken.attempts

    # Not retried: not by this runner, not after a restart, not when more events come.
    assert runner.catch_up() == 0
    runner.close()
    await ingest(tmp_path / "log.sqlite3", [a_writer.next("hub.profile_updated", update(6))])
    again = runner_on(tmp_path, Broken, Tally, NetworkProjection, batch=2)
    again.catch_up()
    assert Broken.attempts == attempts
    assert next(s for s in again.status() if s.name == "fragile").behind == 7
    assert again.query("tally", "SELECT count(*) FROM {seen}") == [(11,)]

    async def log_count() -> int:
        async with await EventLog.open(tmp_path / "log.sqlite3", net=NET) as log:
            return await log.count()

    assert await log_count() == 11  # the log is untouched by the projection's failure


# -- rebuilds and version bumps ---------------------------------------------------------------


async def test_rebuild_serves_the_old_build_until_the_new_one_has_caught_up(
    tmp_path: Path,
) -> None:
    _, a = chain(4)
    _, b = chain(3)
    await ingest(tmp_path / "log.sqlite3", interleave(a, b))
    runner = runner_on(tmp_path, NetworkProjection, batch=2)
    runner.catch_up()
    before = runner.hash("network")
    hubs = sorted(runner.query("network", "SELECT * FROM {hubs}"))

    assert runner.rebuild("network") == 2
    assert status_of(runner, "network") == [(1, 1, "serving"), (2, 1, "building")]
    runner.step()  # the new build holds two events so far; readers still see the old one
    assert runner.tables("network")["hubs"] == "p__network__b1__hubs"
    assert sorted(runner.query("network", "SELECT * FROM {hubs}")) == hubs
    assert runner.hash("network") == before

    runner.catch_up()
    assert status_of(runner, "network") == [(2, 1, "serving")]
    assert runner.tables("network")["hubs"] == "p__network__b2__hubs"
    assert sorted(runner.query("network", "SELECT * FROM {hubs}")) == hubs
    assert runner.hash("network") == before
    assert physical_tables(runner, "network") == {
        "p__network__b2__hubs",
        "p__network__b2__admissions",
        "p__network__b2___ignored",
    }


async def test_a_version_bump_builds_new_tables_while_the_old_version_serves(
    tmp_path: Path,
) -> None:
    _, a = chain(4)
    _, b = chain(3)
    await ingest(tmp_path / "log.sqlite3", interleave(a, b))
    old = runner_on(tmp_path, NetworkProjection)
    old.catch_up()
    hubs = sorted(old.query("network", "SELECT * FROM {hubs}"))
    old.close()

    new = runner_on(tmp_path, NetworkV2, batch=2)  # the upgraded code starts
    assert status_of(new, "network") == [(1, 1, "serving"), (2, 2, "building")]
    new.step()
    assert sorted(new.query("network", "SELECT * FROM {hubs}")) == hubs
    with pytest.raises(ProjectionError, match="no table 'areas' in the build now serving"):
        new.query("network", "SELECT * FROM {areas}")
    assert set(new.tables("network")) == {"hubs", "admissions", "_ignored"}
    new.hash("network")  # the old build's hash, from its own tables

    new.catch_up()
    assert status_of(new, "network") == [(2, 2, "serving")]
    assert sorted(new.query("network", "SELECT * FROM {hubs}")) == hubs
    assert sorted(new.query("network", "SELECT area FROM {areas}")) == [("area 3",), ("area 4",)]
    assert not any("_b1_" in t for t in physical_tables(new, "network"))


async def test_rebuilding_a_stopped_projection_keeps_it_readable_until_the_swap(
    tmp_path: Path,
) -> None:
    writer, records = chain(6)
    await ingest(tmp_path / "log.sqlite3", records)

    class Broken(Fragile):
        bad_hub = writer.hub
        bad_seq = 5

    runner = runner_on(tmp_path, Broken, batch=2)
    runner.catch_up()
    assert status_of(runner, "fragile") == [(1, 1, "stopped")]
    Broken.bad_seq = 99  # the fix is deployed
    runner.rebuild("fragile")
    runner.step()
    assert runner.query("fragile", "SELECT count(*) FROM {seen}") == [(4,)]  # the old build
    runner.catch_up()
    assert status_of(runner, "fragile") == [(2, 1, "serving")]
    assert runner.query("fragile", "SELECT count(*) FROM {seen}") == [(6,)]


# -- several runners --------------------------------------------------------------------------


async def test_two_runners_on_the_same_files_never_apply_an_event_twice(tmp_path: Path) -> None:
    hubs = [chain(30)[1] for _ in range(3)]
    await ingest(tmp_path / "log.sqlite3", interleave(*hubs))
    one = runner_on(tmp_path, Tally, batch=4)
    two = runner_on(tmp_path, Tally, batch=4)
    for _ in range(3):  # taking turns
        one.step()
        two.step()

    def run(runner: ProjectionRunner) -> None:
        runner.catch_up()

    threads = [threading.Thread(target=run, args=(r,)) for r in (one, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert status_of(one, "tally") == [(1, 1, "serving")]  # a second apply would have stopped it
    assert one.query("tally", "SELECT count(*), count(DISTINCT pos) FROM {seen}") == [(90, 90)]
    assert one.status()[0].checkpoint == 90


# -- determinism ------------------------------------------------------------------------------


def network_history() -> tuple[list[list[bytes]], list[ChainWriter]]:
    """Three hubs registering, updating their profiles and admitting each other; one hub's
    first event breaks a rule (an update before registering), so ``_ignored`` has a row."""
    a, b, c, d = (ChainWriter(NET) for _ in range(4))
    history = [
        [
            a.next("hub.registered", registered("A")),
            a.next("hub.admitted", admit(b)),
            a.next("hub.profile_updated", HubProfileUpdated(area="Stockton")),
            a.next("hub.admitted", admit(c)),
            a.next("hub.profile_updated", HubProfileUpdated(name="A2", roles=("advocacy",))),
        ],
        [
            b.next("hub.registered", registered("B")),
            b.next("hub.admitted", admit(a)),
            b.next("hub.admitted", admit(a)),
            b.next("hub.profile_updated", HubProfileUpdated(contact="b@example.org")),
        ],
        [
            c.next("hub.profile_updated", HubProfileUpdated(area="too early")),
            c.next("hub.registered", registered("C")),
            c.next("hub.admitted", admit(d)),
            c.next("hub.profile_updated", HubProfileUpdated(area="Redcar")),
        ],
    ]
    return history, [a, b, c]


HISTORY, WRITERS = network_history()


def feed_in_order(order: Sequence[int], batch: int) -> str:
    """Ingest the history in the order the hub indexes in ``order`` name; the network hash."""
    nexts = [0] * len(HISTORY)
    records = []
    for hub in order:
        records.append(HISTORY[hub][nexts[hub]])
        nexts[hub] += 1
    with ProjectionHarness(NetworkProjection, net=NET, batch=batch) as h:
        h.feed(records[:5])
        h.feed(records[5:])
        return h.hash("network")


REFERENCE = feed_in_order([i for i, hub in enumerate(HISTORY) for _ in hub], 2000)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=st.permutations([i for i, hub in enumerate(HISTORY) for _ in hub]),
    batch=st.integers(1, 6),
)
def test_hubs_holding_the_same_events_compute_the_same_hash(order: list[int], batch: int) -> None:
    # A permutation of hub indexes is a causally valid interleaving: each hub's events
    # are taken in seq order, the hubs mixed any way.
    assert feed_in_order(order, batch) == REFERENCE


def test_the_hash_differs_when_a_fact_differs() -> None:
    with ProjectionHarness(NetworkProjection, net=NET) as h:
        h.feed([r for hub in HISTORY for r in hub])
        assert h.hash("network") == REFERENCE
        h.feed([WRITERS[1].next("hub.profile_updated", HubProfileUpdated(area="Hartlepool"))])
        assert h.hash("network") != REFERENCE


def test_ignored_events_count_in_the_hash_and_are_keyed_by_hub_and_seq() -> None:
    c = WRITERS[2]
    with ProjectionHarness(NetworkProjection, net=NET) as h:
        h.feed([r for hub in HISTORY for r in hub])
        assert h.ignored("network") == {(c.hub, 1): "profile update before the hub registered"}
    # Same tables of hubs and admissions, but without the ignored event: another hash.
    stray = ChainWriter(NET)
    with ProjectionHarness(NetworkProjection, net=NET) as h:
        h.feed([r for hub in HISTORY for r in hub])
        hubs = h.rows("network", "hubs")
        h.feed([stray.next("hub.profile_updated", HubProfileUpdated(area="nowhere"))])
        assert h.rows("network", "hubs") == hubs
        assert h.hash("network") != REFERENCE
        assert set(h.ignored("network")) == {(c.hub, 1), (stray.hub, 1)}


class IgnoresTwice(Projection):
    name: ClassVar[str] = "ignores_twice"
    kinds: ClassVar[frozenset[str]] = ALL_NETWORK_KINDS
    tables: ClassVar[dict[str, str]] = {}

    def apply(self, event: Event, tx: ProjectionTx) -> None:
        tx.ignore(event, "first reason")
        tx.ignore(event, "only ever one row per (hub, seq)")


def test_an_event_is_ignored_at_most_once() -> None:
    with ProjectionHarness(IgnoresTwice, net=NET) as h:
        a, b = h.writer(), h.writer()
        h.feed([a.next("hub.registered", registered()), b.next("hub.registered", registered())])
        assert h.ignored("ignores_twice") == {
            (a.hub, 1): "only ever one row per (hub, seq)",
            (b.hub, 1): "only ever one row per (hub, seq)",
        }


# -- commands ---------------------------------------------------------------------------------


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner(env={"HUBNODE_DATA": None, "COLUMNS": "250", "NO_COLOR": "1"})


def invoke(cli: CliRunner, *args: str | Path) -> Result:
    result = cli.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def as_json(cli: CliRunner, *args: str | Path) -> Any:
    return json.loads(invoke(cli, *args).stdout)


@pytest.fixture
def hub(cli: CliRunner, tmp_path: Path) -> Path:
    """A data folder holding its own registration and three peers' history."""
    data = tmp_path / "hub"
    invoke(cli, "init", "--data", data, "--name", "Hub A", "--network", NET)
    invoke(
        cli,
        "log",
        "append",
        "--data",
        data,
        "--kind",
        "hub.registered",
        "--json",
        '{"name":"Hub A","roles":["gateway"],"area":"Darlington","contact":"a@example.org"}',
    )

    async def peers() -> None:
        async with await HubFolder.open(data).open_log(with_key=False) as log:
            await log.ingest(interleave(*HISTORY))

    asyncio.run(peers())
    return data


def test_projections_list_json(cli: CliRunner) -> None:
    rows = as_json(cli, "projections", "list", "--json")
    network = next(r for r in rows if r["name"] == "network")
    assert network == {
        "name": "network",
        "version": 1,
        "kinds": sorted(ALL_NETWORK_KINDS),
        "tables": ["admissions", "hubs"],
        "source": "built-in",
    }


def test_projections_status_rebuild_and_hash(cli: CliRunner, hub: Path) -> None:
    hashes = as_json(cli, "projections", "hash", "--data", hub, "--json")
    assert set(hashes) >= {"network"}
    rows = as_json(cli, "projections", "status", "--data", hub, "--json")
    network = next(r for r in rows if r["name"] == "network")
    assert network["status"] == "serving" and network["behind"] == 0
    assert network["checkpoint"] == 14 and network["error"] is None

    done = invoke(cli, "projections", "rebuild", "--data", hub, "network")
    assert done.stdout.strip() == "network: build 2 serving, 14 events read"
    assert as_json(cli, "projections", "hash", "--data", hub, "--json") == hashes
    rows = as_json(cli, "projections", "status", "--data", hub, "--json")
    assert [(r["build"], r["status"]) for r in rows if r["name"] == "network"] == [(2, "serving")]

    unknown = CliRunner().invoke(app, ["projections", "rebuild", "--data", str(hub), "nope"])
    assert unknown.exit_code == 2
    assert "no projection named 'nope'" in unknown.output


def test_network_json(cli: CliRunner, hub: Path) -> None:
    rows = {r["name"]: r for r in as_json(cli, "network", "--data", hub, "--json")}
    assert set(rows) == {"Hub A", "A2", "B", "C"}
    a2 = rows["A2"]
    assert a2["roles"] == ["advocacy"] and a2["area"] == "Stockton" and a2["head_seq"] == 5
    assert a2["admitted_by"] == [hub_display(WRITERS[1].hub)]
    assert rows["C"]["area"] == "Redcar"


def test_audit_verify_projections_equals_the_live_hubs_hash(
    cli: CliRunner, hub: Path, tmp_path: Path
) -> None:
    live = as_json(cli, "projections", "hash", "--data", hub, "--json")
    exported = tmp_path / "all.hublog"
    invoke(cli, "log", "export", "--data", hub, "--out", exported)
    reports = as_json(cli, "audit", "verify", "--projections", hub, exported, "--json")
    assert [r["projections"] for r in reports] == [live, live]

    text = invoke(cli, "audit", "verify", "--projections", exported).stdout
    assert f"network              {live['network']}" in text
    plain = as_json(cli, "audit", "verify", exported, "--json")
    assert "projections" not in plain[0]


def test_projection_names_cannot_make_one_projections_tables_look_like_anothers() -> None:
    # "__" separates the parts of a physical name: a name holding it (or ending in "_")
    # could otherwise make projection "a_b1" collide with build 1 of projection "a".
    from hubnode.projections.base import Projection, physical

    for bad in ("a__b", "a_", "A", "1a", ""):
        cls = type("Bad", (Projection,), {"name": bad, "kinds": frozenset(), "tables": {}})
        with pytest.raises(ValueError):
            cls.check()
    assert not physical("a_b1", 2, "t").startswith(physical("a", 1, ""))


async def test_a_build_whose_tables_are_gone_is_rebuilt_from_the_log(tmp_path: Path) -> None:
    # A views file written by an older hubnode (other table names) or damaged by hand:
    # the runner must not fail on missing tables; views can always be rebuilt.
    from hubnode.projections import NetworkProjection

    log_path, views = tmp_path / "log.sqlite3", tmp_path / "views.sqlite3"
    writer = ChainWriter(NET)
    async with await EventLog.open(log_path, net=NET) as log:
        await log.ingest([writer.next("hub.registered", registered("A"))])
    runner = ProjectionRunner(log_path, views, [NetworkProjection])
    runner.catch_up()
    before = runner.hash("network")
    for (table,) in runner._db.execute(
        "SELECT name FROM sqlite_master WHERE type='table'"
    ).fetchall():
        if table.startswith("p__network__"):
            runner._db.execute(f"DROP TABLE {table}")
    runner.close()
    again = ProjectionRunner(log_path, views, [NetworkProjection])
    again.catch_up()
    assert again.hash("network") == before
    again.close()
