"""Issue 12, restoring a backup: the views and the keyring notice a log that is not the one
they read, and read it again from the start.

Both remember how far they have read the log by ``pos``. An older copy of ``log.sqlite3``
put back under them (docs/operating.md, "Restoring a backup"), a log lost and fetched
again from peers, or another hub's copy, gives the events new positions: at or below the
checkpoints, where a consumer trusting its checkpoint would never look. For the keyring
that is a privacy failure: an erasure re-fetched there would leave the person's key kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import pytest
from typer.testing import CliRunner

from hubnode import crypto
from hubnode.cli import app
from hubnode.config import HubFolder
from hubnode.events.pathway import ConsentRecorded, SubjectErased
from hubnode.node import projection_runner
from hubnode.privacy.keyring import KEYRING_FILE, Keyring, catch_up_keys, seal_keys
from hubnode.privacy.seal import key_boxes, new_subject
from hubnode.projections import ProjectionRunner, parallel
from hubnode.store.log import Status
from hubnode.testing import ChainWriter
from tests.conftest import NET, registered, update
from tests.test_hardening_records import damage_id, flip_signature_byte
from tests.test_privacy import catch_up, copy, hub

CLI: Final = CliRunner(env={"HUBNODE_DATA": None, "COLUMNS": "250", "NO_COLOR": "1"})

# -- taking and restoring a backup as docs/operating.md says -------------------------------


def backup_log(folder: HubFolder, to: Path) -> Path:
    """SQLite's online backup of ``folder``'s log into ``to``."""
    with (
        contextlib.closing(sqlite3.connect(folder.log_path)) as src,
        contextlib.closing(sqlite3.connect(to)) as dst,
    ):
        src.backup(dst)
    return to


def put_back(copy_: Path, folder: HubFolder) -> None:
    """The backup copy in the log's place, the old file's WAL companions deleted first."""
    lose_log(folder)
    with (
        contextlib.closing(sqlite3.connect(copy_)) as src,
        contextlib.closing(sqlite3.connect(folder.log_path)) as dst,
    ):
        src.backup(dst)


def lose_log(folder: HubFolder) -> None:
    """The log gone, with its WAL companions (the node stopped)."""
    for suffix in ("", "-wal", "-shm"):
        folder.log_path.with_name(folder.log_path.name + suffix).unlink(missing_ok=True)


def store(folder: HubFolder, records: Sequence[bytes]) -> None:
    """Ingest ``records`` into ``folder``'s log, as gossip would; each must be accepted."""

    async def ingest() -> None:
        async with await folder.open_log(with_key=False) as log:
            outcomes = await log.ingest(list(records))
        assert {o.status for o in outcomes} == {Status.ACCEPTED}, outcomes

    asyncio.run(ingest())


def hashes(runner: ProjectionRunner) -> dict[str, str]:
    return {name: runner.hash(name) for name in sorted(runner.projections)}


def builds(runner: ProjectionRunner) -> dict[str, tuple[int, int]]:
    """Each projection's (build, checkpoint) as ``projections status`` shows them."""
    return {s.name: (s.build, s.checkpoint) for s in runner.status()}


def warnings(caplog: pytest.LogCaptureFixture, says: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and says in r.getMessage()
    ]


class Peers:
    """Three peer hubs' chains, written in memory, and what each has signed so far."""

    def __init__(self) -> None:
        self.writers = {name: ChainWriter(NET) for name in "abc"}
        self.next_n = dict.fromkeys("abc", 1)

    def sign(self, name: str, n: int) -> list[bytes]:
        """``name``'s next ``n`` records (the first is its registration)."""
        writer, out = self.writers[name], []
        for _ in range(n):
            i = self.next_n[name]
            self.next_n[name] += 1
            body = registered(f"Hub {name}") if i == 1 else update(i)
            out.append(writer.next("hub.registered" if i == 1 else "hub.profile_updated", body))
        return out


# -- the views ------------------------------------------------------------------------------


def test_views_rebuild_over_a_restored_log_and_equal_views_built_fresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12, restore: views over an older log copy with events re-fetched into the
    range they had read are rebuilt, and equal views built fresh from the final log."""
    folder = HubFolder.init(tmp_path / "hub", name="Hub", network=NET)
    peers = Peers()
    store(folder, peers.sign("a", 3) + peers.sign("b", 3))
    with contextlib.closing(projection_runner(folder)) as runner:
        runner.catch_up()
    monday = backup_log(folder, tmp_path / "monday.sqlite3")
    seen_after_monday = peers.sign("a", 3) + peers.sign("b", 3)
    store(folder, seen_after_monday)
    with contextlib.closing(projection_runner(folder)) as runner:
        runner.catch_up()
        before = builds(runner)

    # The disk dies; meanwhile hub c joins. Monday's log goes back, and the node fetches
    # what it lacks: c's records first, then the ones the views had already read.
    put_back(monday, folder)
    store(folder, peers.sign("c", 4) + seen_after_monday)
    # Any command that brings the views up to date first (here `projections hash`) notices.
    with caplog.at_level(logging.WARNING):
        shown = CLI.invoke(app, ["projections", "hash", "--data", str(folder.path), "--json"])
    assert shown.exit_code == 0, shown.output
    with contextlib.closing(projection_runner(folder)) as runner:
        after = builds(runner)
        projections = list(runner.projections.values())
    with contextlib.closing(
        ProjectionRunner(folder.log_path, tmp_path / "fresh.sqlite3", projections)
    ) as fresh:
        fresh.catch_up()
        assert json.loads(shown.stdout) == hashes(fresh)
    assert all(after[name][0] > before[name][0] for name in before), (before, after)
    (said,) = warnings(caplog, "views")
    assert "not the one" in said and "rebuilding" in said, said


def test_views_over_a_log_lost_and_fetched_again_are_rebuilt(tmp_path: Path) -> None:
    """Issue 12, restore: a log lost entirely and re-fetched (pos from 1 again, in another
    order) under the old views gives the views a fresh build of the final log."""
    folder = HubFolder.init(tmp_path / "hub", name="Hub", network=NET)
    peers = Peers()
    a, b = peers.sign("a", 4), peers.sign("b", 4)
    store(folder, a + b)
    with contextlib.closing(projection_runner(folder)) as runner:
        runner.catch_up()
    lose_log(folder)
    c = peers.sign("c", 2)
    store(folder, b + c + a)
    with contextlib.closing(projection_runner(folder)) as runner:
        runner.catch_up()
        restored = hashes(runner)
    with contextlib.closing(
        ProjectionRunner(
            folder.log_path, tmp_path / "fresh.sqlite3", list(runner.projections.values())
        )
    ) as fresh:
        fresh.catch_up()
        assert restored == hashes(fresh)


def test_builds_copied_in_from_worker_processes_keep_their_anchors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12, restore: builds made in worker processes (a parallel rebuild) come with
    the id at their checkpoints, so a restore after one is noticed as after any build."""
    monkeypatch.setattr(parallel, "PARALLEL_MIN", 0)
    monkeypatch.setattr(parallel, "cores", lambda: 2)
    folder = HubFolder.init(tmp_path / "hub", name="Hub", network=NET)
    peers = Peers()
    store(folder, peers.sign("a", 3))
    monday = backup_log(folder, tmp_path / "monday.sqlite3")
    store(folder, peers.sign("a", 3))
    caplog.set_level(logging.INFO, logger="hubnode.projections.parallel")
    with contextlib.closing(projection_runner(folder)) as runner:
        runner.catch_up()
        before = builds(runner)
    assert [r for r in caplog.records if "in a worker process" in r.getMessage()]
    put_back(monday, folder)
    store(folder, peers.sign("b", 4))
    with contextlib.closing(projection_runner(folder)) as runner:
        runner.catch_up()
        after = builds(runner)
        restored = hashes(runner)
    assert all(after[name][0] > before[name][0] for name in before), (before, after)
    with contextlib.closing(
        ProjectionRunner(
            folder.log_path, tmp_path / "fresh.sqlite3", list(runner.projections.values())
        )
    ) as fresh:
        fresh.catch_up(parallel=False)
        assert restored == hashes(fresh)


def test_ordinary_catching_up_never_restarts_a_build(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12, restore: no false alarm; a runner reopened over the log it read goes on
    from its checkpoint, in the same builds."""
    folder = HubFolder.init(tmp_path / "hub", name="Hub", network=NET)
    peers = Peers()
    store(folder, peers.sign("a", 3))
    with caplog.at_level(logging.WARNING):
        with contextlib.closing(projection_runner(folder)) as runner:
            runner.catch_up()
            first = builds(runner)
        store(folder, peers.sign("a", 2) + peers.sign("b", 2))
        with contextlib.closing(projection_runner(folder)) as runner:
            runner.catch_up()
            second = builds(runner)
            store(folder, peers.sign("b", 1))
            runner.catch_up()  # the same runner, live
            third = builds(runner)
    assert {n: b for n, (b, _) in first.items()} == {n: b for n, (b, _) in third.items()}
    assert all(second[n][1] == first[n][1] + 4 == third[n][1] - 1 for n in first), (first, third)
    assert warnings(caplog, "views") == []


def test_a_views_file_from_before_anchors_keeps_its_builds_then_notices_a_restore(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12, restore: a views.sqlite3 written before checkpoints were anchored opens
    without a rebuild (its checkpoint's event is in the log), and is anchored from then on."""
    folder = HubFolder.init(tmp_path / "hub", name="Hub", network=NET)
    peers = Peers()
    store(folder, peers.sign("a", 3))
    monday = backup_log(folder, tmp_path / "monday.sqlite3")
    store(folder, peers.sign("a", 3))
    with contextlib.closing(projection_runner(folder)) as runner:
        runner.catch_up()
        before = builds(runner)
    views = folder.path / "views.sqlite3"
    with contextlib.closing(sqlite3.connect(views)) as db:
        if "checkpoint_id" in {r[1] for r in db.execute("PRAGMA table_info(projection_builds)")}:
            db.execute("ALTER TABLE projection_builds DROP COLUMN checkpoint_id")
    with caplog.at_level(logging.WARNING), contextlib.closing(projection_runner(folder)) as runner:
        runner.catch_up()
        assert builds(runner) == before
        assert warnings(caplog, "views") == []
    put_back(monday, folder)
    store(folder, peers.sign("b", 4))  # new events, at positions the views had read
    with caplog.at_level(logging.WARNING), contextlib.closing(projection_runner(folder)) as runner:
        runner.catch_up()
        assert all(builds(runner)[n][0] > before[n][0] for n in before)
    assert len(warnings(caplog, "views")) == 1


def test_log_repair_keeps_every_build_and_the_keyrings_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12, restore: no false alarm after ``hubnode log repair``, even when the damaged
    record is the one the checkpoints point at (its bytes, or the id stored beside it)."""
    folder = HubFolder.init(tmp_path / "hub", name="Hub", network=NET)
    peers = Peers()
    peer = peers.writers["a"]
    subject = new_subject()
    own_box = {peer.hub: crypto.SealKey.generate().public}  # the peer keeps its own record
    kept_by_peer = ConsentRecorded(
        subject=subject,
        purposes=("referral",),
        recipients=(),
        keys=key_boxes(NET, peer.hub, subject, crypto.new_data_key(), own_box),
    )
    # The last record is one the keyring reads, so its checkpoint is there too.
    store(folder, [*peers.sign("a", 3), peer.next("consent.recorded", kept_by_peer)])
    with contextlib.closing(projection_runner(folder)) as runner:
        runner.catch_up()
        before = builds(runner)
    with Keyring.open(folder) as ring:
        asyncio.run(keys_of(folder, ring))
        checkpoint = ring.checkpoint()
    assert checkpoint == 4
    source = tmp_path / "backup"
    source.mkdir()
    (source / "hubnode.toml").write_bytes((folder.path / "hubnode.toml").read_bytes())
    backup_log(folder, source / "log.sqlite3")

    def goes_on_from_its_checkpoints() -> None:
        with contextlib.closing(projection_runner(folder)) as runner:
            runner.catch_up()
            assert builds(runner) == before
        with Keyring.open(folder) as ring:
            asyncio.run(keys_of(folder, ring))
            assert ring.checkpoint() == checkpoint

    with caplog.at_level(logging.WARNING):
        for damage in (flip_signature_byte, damage_id):
            damage(folder.log_path, peer.hub, 4)  # the last record: where every checkpoint is
            goes_on_from_its_checkpoints()  # damaged, it is still the log they read
            repair = ["log", "repair", "--data", str(folder.path), "--from", str(source)]
            result = CLI.invoke(app, repair)
            assert result.exit_code == 0 and "replaced" in result.stdout, result.output
            goes_on_from_its_checkpoints()
    assert warnings(caplog, "not the one") == []


async def keys_of(folder: HubFolder, ring: Keyring) -> None:
    async with await folder.open_log(with_key=False) as log:
        await catch_up_keys(log, ring)


# -- the keyring ----------------------------------------------------------------------------


async def consent(
    owner: HubFolder, to: Sequence[HubFolder], subject: str | None = None
) -> tuple[str, bytes]:
    """``owner`` records a consent naming ``to`` for ``subject`` (a new one if None), its
    data key sealed to each hub's seal key as ``owner``'s log knows it."""
    subject = subject or new_subject()
    with Keyring.open(owner) as ring:
        if ring.has_key(owner.hub, subject):
            data_key = ring.data_key(owner.hub, subject)
        else:
            data_key = crypto.new_data_key()
            ring.remember(owner.hub, subject, data_key)
        async with await owner.open_log() as log:
            keys = await seal_keys(log, [h.hub for h in to])
            keys[owner.hub] = ring.seal_key.public
            body = ConsentRecorded(
                subject=subject,
                purposes=("referral",),
                recipients=tuple(h.config.hub_id for h in to),
                keys=key_boxes(NET, owner.hub, subject, data_key, keys),
            )
            await log.append("consent.recorded", body)
    return subject, data_key


async def erase(owner: HubFolder, subject: str) -> None:
    async with await owner.open_log() as log:
        await log.append("subject.erased", SubjectErased(subject=subject, reason="asked"))


async def busy(c: HubFolder, a: HubFolder, n: int) -> None:
    """``c`` records ``n`` consents naming ``a`` only: events the keyring of a third hub
    reads (and so moves its checkpoint past) without keeping anything."""
    for _ in range(n):
        await consent(c, [a])


async def confirmations(folder: HubFolder, subject: str) -> int:
    async with await folder.open_log(with_key=False) as log:
        found = await log.events(hub=folder.hub, kind="subject.erasure_confirmed")
    return sum(1 for e in found if getattr(e.body, "subject", None) == subject)


async def three_hubs(tmp_path: Path) -> tuple[HubFolder, HubFolder, HubFolder]:
    """Hubs a (whose people they are), b (named in consents) and c (busy: many events),
    each holding the others' records."""
    a, b, c = [await hub(tmp_path, n) for n in "abc"]
    for x in (a, b, c):
        for y in (a, b, c):
            if x is not y:
                await copy(x, y)
    return a, b, c


async def restore_and_refetch(b: HubFolder, monday: Path, *sources: HubFolder) -> None:
    """``b``'s Monday log back in place; its peers' records fetched again, in that order."""
    put_back(monday, b)
    for source in sources:
        await copy(source, b)


async def test_an_erasure_refetched_below_the_keyrings_checkpoint_destroys_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12, restore: the dangerous case. An erasure that comes back (re-fetched) at a
    position the keyring had already passed is applied: the key destroyed, confirmed once."""
    a, b, c = await three_hubs(tmp_path)
    subject, _ = await consent(a, [b])
    await copy(a, b)
    ring, done = await catch_up(b)
    with ring:
        assert done.opened == 1
    monday = backup_log(b, tmp_path / "monday.sqlite3")
    await busy(c, a, 5)  # b reads on past Monday: c's events
    await copy(c, b)
    ring, _ = await catch_up(b)
    ring.close()

    await erase(a, subject)  # while b is down
    await restore_and_refetch(b, monday, a, c)  # the erasure lands where b had read c's
    with caplog.at_level(logging.WARNING):
        ring, done = await catch_up(b)
    with ring:
        assert not ring.has_key(a.hub, subject)
        assert ring.destroyed_at(a.hub, subject) is not None
        assert done.confirmed == 1 and done.rotated
    assert await confirmations(b, subject) == 1
    (said,) = warnings(caplog, "keyring")
    assert "not the one" in said, said
    ring, done = await catch_up(b)  # and again: nothing more
    with ring:
        assert done.confirmed == 0
    assert await confirmations(b, subject) == 1


async def test_a_consent_refetched_below_the_keyrings_checkpoint_is_opened(
    tmp_path: Path,
) -> None:
    """Issue 12, restore: a key box that comes back at a position the keyring had already
    passed is opened."""
    a, b, c = await three_hubs(tmp_path)
    ring, _ = await catch_up(b)
    ring.close()
    monday = backup_log(b, tmp_path / "monday.sqlite3")
    await busy(c, a, 5)
    await copy(c, b)
    ring, _ = await catch_up(b)
    ring.close()

    subject, data_key = await consent(a, [b])  # while b is down
    await restore_and_refetch(b, monday, a, c)
    ring, done = await catch_up(b)
    with ring:
        assert done.opened == 1
        assert ring.data_key(a.hub, subject) == data_key


async def test_reading_the_log_again_applies_what_it_missed_and_nothing_twice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12, restore: re-reading from pos 0 is idempotent. An old consent sealed to a
    seal key since destroyed gives no "unreadable" and drops no key held under a later
    consent; an erasure already confirmed is not confirmed again; the one missed is."""
    a, b, c = await three_hubs(tmp_path)
    kept, kept_key = await consent(a, [b])  # sealed to b's first seal key
    gone, _ = await consent(a, [b])
    await copy(a, b)
    ring, _ = await catch_up(b)
    ring.close()
    monday = backup_log(b, tmp_path / "monday.sqlite3")

    await erase(a, gone)
    await copy(a, b)
    ring, done = await catch_up(b)  # destroys gone's key, rotates b's seal key, confirms
    ring.close()
    assert done.rotated and done.confirmed == 1
    await copy(b, a)
    await consent(a, [b], kept)  # a seals kept's key again, to b's new seal key
    late, _ = await consent(a, [b])
    await copy(a, b)
    ring, done = await catch_up(b)
    ring.close()
    assert done.opened == 2
    await busy(c, a, 8)
    await copy(c, b)
    ring, _ = await catch_up(b)
    ring.close()

    await erase(a, late)  # while b is down
    await restore_and_refetch(b, monday, a, c)
    with caplog.at_level(logging.WARNING):
        ring, done = await catch_up(b)
    with ring:
        assert done.unreadable == 0 and done.opened == 0 and done.dropped == 0
        assert ring.data_key(a.hub, kept) == kept_key
        assert not ring.has_key(a.hub, late) and done.confirmed == 1
        assert [e["subject"] for e in ring.erasures()] == [gone, late]
    assert await confirmations(b, gone) == 1
    assert await confirmations(b, late) == 1
    assert len(warnings(caplog, "keyring")) == 1


async def test_a_held_key_survives_a_replay_that_has_not_yet_fetched_its_consent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12, restore: while re-reading a restored log that lacks the latest consent,
    an older consent that no longer named this hub does not drop the key held under it."""
    a, b, c = await three_hubs(tmp_path)
    subject, data_key = await consent(a, [b])
    await copy(a, b)
    monday = backup_log(b, tmp_path / "monday.sqlite3")
    await consent(a, [c], subject)  # no longer names b
    await consent(a, [b, c], subject)  # names b again
    await copy(a, b)
    ring, _ = await catch_up(b)
    with ring:
        assert ring.data_key(a.hub, subject) == data_key
    await busy(c, a, 3)
    await copy(c, b)
    ring, _ = await catch_up(b)
    ring.close()

    # Monday's log, the withdrawal-like consent re-fetched but not yet the last one.
    put_back(monday, b)
    async with await a.open_log(with_key=False) as source:
        records = [raw async for raw in source.export_records(a.hub)]
    async with await b.open_log(with_key=False) as target:
        await target.ingest(records[:-1])
    await copy(c, b)
    with caplog.at_level(logging.WARNING):
        ring, done = await catch_up(b)
    with ring:
        assert ring.data_key(a.hub, subject) == data_key
        assert done.dropped == 0
    assert len(warnings(caplog, "keyring")) == 1


async def test_a_keyring_put_back_from_a_copy_destroys_again_and_confirms_once(
    tmp_path: Path,
) -> None:
    """Issue 12, restore: a keyring copy taken before an erasure, put back, destroys the
    key again as it reads the log, and does not confirm the erasure a second time."""
    a, b, _ = await three_hubs(tmp_path)
    subject, data_key = await consent(a, [b])
    await copy(a, b)
    ring, _ = await catch_up(b)
    ring.close()
    keyring = b.path / KEYRING_FILE
    copy_of_keyring = tmp_path / "keyring-monday.sqlite3"
    with (
        contextlib.closing(sqlite3.connect(keyring)) as src,
        contextlib.closing(sqlite3.connect(copy_of_keyring)) as dst,
    ):
        src.backup(dst)
    await erase(a, subject)
    await copy(a, b)
    ring, done = await catch_up(b)
    ring.close()
    assert done.confirmed == 1

    keyring.write_bytes(copy_of_keyring.read_bytes())  # the node stopped: a plain copy
    ring, done = await catch_up(b)
    with ring:
        assert not ring.has_key(a.hub, subject) and done.erased == [(a.hub, subject)]
        assert done.confirmed == 0 and done.rotated
    assert data_key not in keyring.read_bytes()
    assert await confirmations(b, subject) == 1


def test_the_keyring_file_is_named_in_the_backup_guide() -> None:
    """Issue 12, restore: docs/operating.md tells operators to back up the keyring."""
    guide = (Path(__file__).resolve().parents[1] / "docs" / "operating.md").read_text()
    backups = guide.split("## Backups", 1)[1].split("## Restoring a backup", 1)[0]
    assert f"`{KEYRING_FILE}`" in backups
