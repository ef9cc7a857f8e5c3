"""The local log (DESIGN §4): appends with group commit, ingest outcomes, forks, reading."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import threading
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from hubnode import (
    ConfigError,
    EventLog,
    ForkDetected,
    Head,
    IngestOutcome,
    InvalidEvent,
    Reason,
    SigningKey,
    Status,
    verify_record,
)
from hubnode.events.envelope import event_id, seal
from hubnode.events.network import HubAdmitted, HubRegistered
from hubnode.store import log as log_module
from hubnode.store import verifying
from hubnode.store.pending import PendingLimits
from hubnode.testing import ChainWriter

from .conftest import NET, chain, registered, update


def statuses(outcomes: list[IngestOutcome]) -> list[Status]:
    return [o.status for o in outcomes]


def count_commits(log: EventLog) -> list[int]:
    """Wrap the log's commit so the test can count write transactions."""
    commits: list[int] = []
    original = log._commit

    async def counting() -> None:
        commits.append(1)
        await original()

    log._commit = counting  # type: ignore[method-assign]
    return commits


async def snapshot(log: EventLog) -> tuple[int, dict[bytes, Head], dict[bytes, list[int]]]:
    return await log.count(), await log.heads(), log.pending.waiting()


# -- append -------------------------------------------------------------------------------------


async def test_append_numbers_seqs_from_1_without_gaps_and_links_prev(log: EventLog):
    done = [await log.append("hub.registered", registered())]
    done += [await log.append("hub.profile_updated", update(i)) for i in range(2, 6)]
    assert [a.seq for a in done] == [1, 2, 3, 4, 5]
    events = await log.events(hub=log.hub)
    assert events[0].prev is None
    for before, after in itertools.pairwise(events):
        assert after.prev == before.id == hashlib.sha256(before.raw).digest()
    assert [a.id for a in done] == [e.id for e in events]
    assert await log.head(log.hub) == Head(5, done[-1].id)  # type: ignore[arg-type]


async def test_appended_events_are_signed_by_the_hub_and_verify(log: EventLog):
    done = await log.append("hub.registered", registered("Alpha"))
    verified = verify_record(done.raw, net=NET)
    assert verified.envelope.hub == log.hub
    assert verified.id == done.id
    assert (await log.events())[0].body == registered("Alpha")


async def test_append_many_stores_in_the_order_given(log: EventLog):
    items = [("hub.registered", registered())] + [
        ("hub.profile_updated", update(i)) for i in range(2, 8)
    ]
    done = await log.append_many(items)
    assert [a.seq for a in done] == list(range(1, 8))
    assert [a.pos for a in done] == list(range(1, 8))
    assert [e.body for e in await log.events()] == [body for _, body in items]
    assert await log.append_many([]) == []


async def test_concurrent_appends_are_group_committed(log: EventLog):
    commits = count_commits(log)
    n = 50
    done = await asyncio.gather(*(log.append("hub.profile_updated", update(i)) for i in range(n)))
    assert sorted(a.seq for a in done) == list(range(1, n + 1))
    assert sorted(a.pos for a in done) == list(range(1, n + 1))
    assert len(commits) < n
    # Every caller got back its own event.
    events = {e.seq: e for e in await log.events()}
    for i, appended in enumerate(done):
        assert events[appended.seq].body == update(i)
        assert events[appended.seq].id == appended.id
    # And the chain links whatever order the batch was written in.
    ordered = [events[s] for s in range(1, n + 1)]
    assert all(b.prev == a.id for a, b in itertools.pairwise(ordered))


async def test_group_commit_takes_at_most_max_batch_events_per_transaction(
    log: EventLog, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(log_module, "MAX_BATCH", 4)
    commits = count_commits(log)
    done = await asyncio.gather(*(log.append("hub.profile_updated", update(i)) for i in range(10)))
    assert sorted(a.seq for a in done) == list(range(1, 11))
    assert len(commits) >= 3


async def test_append_refuses_a_body_peers_would_reject_and_stores_nothing(log: EventLog):
    # The Struct constructor does not check constraints; decoding does.
    with pytest.raises(InvalidEvent) as info:
        await log.append(
            "hub.registered", HubRegistered(name="", roles=("gateway",), area="a", contact="c")
        )
    assert info.value.reason is Reason.BAD_BODY
    with pytest.raises(InvalidEvent) as info:
        await log.append_many(
            [("hub.registered", registered()), ("hub.admitted", HubAdmitted(hub="hub:nope"))]
        )
    assert info.value.reason is Reason.BAD_BODY
    assert await log.count() == 0
    assert (await log.append("hub.registered", registered())).seq == 1


async def test_append_refuses_unknown_kinds_and_mismatched_bodies(log: EventLog):
    with pytest.raises(InvalidEvent) as info:
        await log.append("no.such_kind", registered())
    assert info.value.reason is Reason.UNKNOWN_KIND
    with pytest.raises(TypeError):
        await log.append("hub.admitted", registered())
    assert await log.count() == 0


async def test_log_opened_without_key_cannot_append(tmp_path: Path):
    async with await EventLog.open(tmp_path / "log.sqlite3", net=NET) as log:
        with pytest.raises(ConfigError):
            await log.append("hub.registered", registered())
        assert log.hub is None
        # ... but it can ingest and read.
        _, records = chain(2)
        assert statuses(await log.ingest(records)) == [Status.ACCEPTED] * 2


async def test_database_refuses_another_network(tmp_path: Path):
    path = tmp_path / "log.sqlite3"
    key = SigningKey.generate()
    async with await EventLog.open(path, net=NET, key=key):
        pass
    with pytest.raises(ConfigError, match="other-net"):
        await EventLog.open(path, net="other-net", key=key)
    with pytest.raises(ConfigError):
        await EventLog.open(path, net="other-net")


async def test_database_refuses_another_hubs_key(tmp_path: Path):
    path = tmp_path / "log.sqlite3"
    async with await EventLog.open(path, net=NET, key=SigningKey.generate()):
        pass
    with pytest.raises(ConfigError):
        await EventLog.open(path, net=NET, key=SigningKey.generate())
    async with await EventLog.open(path, net=NET) as keyless:  # reading needs no key
        assert await keyless.count() == 0


async def test_opening_a_missing_log_without_create_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError):
        await EventLog.open(tmp_path / "missing.sqlite3", net=NET, create=False)
    assert not (tmp_path / "missing.sqlite3").exists()


async def test_appends_after_reopen_continue_the_chain(tmp_path: Path):
    path = tmp_path / "log.sqlite3"
    key = SigningKey.generate()
    async with await EventLog.open(path, net=NET, key=key) as log:
        await log.append("hub.registered", registered())
        last = await log.append("hub.profile_updated", update(2))
    async with await EventLog.open(path, net=NET, key=key) as log:
        nxt = await log.append("hub.profile_updated", update(3))
        assert nxt.seq == 3
        assert nxt.pos == 3
        assert (await log.events(after_pos=2))[0].prev == last.id


async def test_two_logs_on_one_file_append_without_reusing_a_seq(tmp_path: Path):
    # Another process (a CLI command) may append beside the node: seqs stay unique.
    path = tmp_path / "log.sqlite3"
    key = SigningKey.generate()
    async with (
        await EventLog.open(path, net=NET, key=key) as a,
        await EventLog.open(path, net=NET, key=key) as b,
    ):
        done = await asyncio.gather(
            *((a if i % 2 else b).append("hub.profile_updated", update(i)) for i in range(20))
        )
        assert sorted(d.seq for d in done) == list(range(1, 21))
        events = await a.events()
        assert all(y.prev == x.id for x, y in itertools.pairwise(events))


# -- ingest: outcomes ---------------------------------------------------------------------------


async def test_append_then_ingest_another_hubs_chain(log: EventLog):
    assert (await log.append("hub.registered", registered())).seq == 1
    writer, records = chain(3)
    outcomes = await log.ingest(records)
    assert statuses(outcomes) == [Status.ACCEPTED] * 3
    assert [(o.hub, o.seq, o.id) for o in outcomes] == [
        (writer.hub, i + 1, event_id(r)) for i, r in enumerate(records)
    ]
    assert await log.heads() == {
        log.hub: (await log.head(log.hub)),
        writer.hub: Head(3, writer.head),
    }


async def test_same_record_again_is_a_duplicate(log: EventLog):
    _, records = chain(2)
    await log.ingest(records)
    assert statuses(await log.ingest(records[:1])) == [Status.DUPLICATE]
    assert statuses(await log.ingest([records[1], records[1]])) == [Status.DUPLICATE] * 2
    assert await log.count() == 2


async def test_duplicate_within_one_batch(log: EventLog):
    _, records = chain(1)
    assert statuses(await log.ingest(records * 2)) == [Status.ACCEPTED, Status.DUPLICATE]


async def test_record_after_a_gap_is_pending_then_released_when_the_gap_fills(log: EventLog):
    writer, records = chain(5)
    assert statuses(await log.ingest(records[2:])) == [Status.PENDING] * 3
    assert await log.count() == 0
    assert log.pending.waiting() == {writer.hub: [3, 4, 5]}
    assert statuses(await log.ingest(records[2:3])) == [Status.DUPLICATE]  # while pending
    first = await log.ingest(records[:1])
    assert (first[0].status, first[0].released) == (Status.ACCEPTED, 0)
    second = await log.ingest(records[1:2])
    assert (second[0].status, second[0].released) == (Status.ACCEPTED, 3)
    assert await log.head(writer.hub) == Head(5, writer.head)
    assert len(log.pending) == 0
    assert [e.seq for e in await log.events()] == [1, 2, 3, 4, 5]


async def test_reversed_batch_is_stored_whole(log: EventLog):
    writer, records = chain(4)
    outcomes = await log.ingest(reversed(records))
    assert statuses(outcomes) == [Status.PENDING] * 3 + [Status.ACCEPTED]
    assert outcomes[-1].released == 3
    assert await log.head(writer.hub) == Head(4, writer.head)


async def test_records_beyond_the_pending_bound_are_dropped(tmp_path: Path):
    writer, records = chain(6)
    async with await EventLog.open(
        tmp_path / "log.sqlite3", net=NET, pending=PendingLimits(max_records=2)
    ) as log:
        assert statuses(await log.ingest(records[2:5])) == [
            Status.PENDING,
            Status.PENDING,
            Status.DROPPED,
        ]
        assert len(log.pending) == 2
        outcomes = await log.ingest(records[:2])
        assert outcomes[1].released == 2
        assert await log.head(writer.hub) == Head(4, event_id(records[3]))
        # The dropped record is simply fetched again later.
        assert statuses(await log.ingest(records[4:])) == [Status.ACCEPTED] * 2


async def test_pending_bounds_per_hub_and_in_bytes(tmp_path: Path):
    _, a = chain(5)
    _, b = chain(5)
    limits = PendingLimits(max_per_hub=1, max_bytes=3 * len(a[2]))
    async with await EventLog.open(tmp_path / "log.sqlite3", net=NET, pending=limits) as log:
        assert statuses(await log.ingest([a[2], a[3], b[2]])) == [
            Status.PENDING,
            Status.DROPPED,
            Status.PENDING,
        ]
    limits = PendingLimits(max_bytes=len(a[2]) + len(a[3]) - 1)
    async with await EventLog.open(tmp_path / "log2.sqlite3", net=NET, pending=limits) as log:
        assert statuses(await log.ingest([a[2], a[3]])) == [Status.PENDING, Status.DROPPED]


# Every reason a record can be rejected for, and how to provoke it on a log that holds
# seqs 1-2 of ``writer``'s hub, ingesting with trust in that hub only.

OTHER = SigningKey.from_seed(b"\x12" * 32)
_IDENTITY = b"\x01" + bytes(31)
"""The identity point: a hub id no one can have (anyone can forge signatures for it)."""
LIMIT = 4096  # max_record_size of the log these cases run against


def _third(writer: ChainWriter, signer: SigningKey | None = None, **changes: object) -> bytes:
    """Seq 3 of ``writer`` with ``changes``, signed by ``signer`` (the hub's key by default)."""
    env = writer.envelope("hub.profile_updated", update(3))
    return seal(msgspec.structs.replace(env, **changes), signer or writer.key)


def _body(fields: object) -> bytes:
    return msgspec.msgpack.encode(fields)


def _past_a_fork(writer: ChainWriter) -> list[bytes]:
    twin = writer.fork()
    return [
        twin.next("hub.profile_updated", update(30)),
        writer.next("hub.profile_updated", update(3)),  # FORK
        writer.next("hub.profile_updated", update(4)),  # past the fork: rejected
    ]


REJECTIONS: dict[Reason, Callable[[ChainWriter], list[bytes]]] = {
    Reason.TOO_LARGE: lambda w: [_third(w, body=_body({"area": "x" * LIMIT}))],
    Reason.MALFORMED_RECORD: lambda w: [_third(w)[:-1]],
    Reason.MALFORMED_ENVELOPE: lambda w: [_third(w, seq=0)],
    Reason.NON_CANONICAL: lambda w: [b"\x92\xc5\x00\x01\x00\xc4\x40" + bytes(64)],
    Reason.UNSUPPORTED_VERSION: lambda w: [_third(w, v=2)],
    Reason.WRONG_NETWORK: lambda w: [_third(w, net="other-net")],
    Reason.UNKNOWN_HUB: lambda w: [chain(1, OTHER)[1][0]],
    Reason.KEY_NOT_IN_FORCE: lambda w: [_third(w, OTHER, key=OTHER.public)],
    Reason.WEAK_KEY: lambda w: [_third(w, hub=_IDENTITY, key=_IDENTITY)],
    Reason.BAD_SIGNATURE: lambda w: [_third(w, OTHER)],
    Reason.BAD_SEQ: lambda w: [_third(w, prev=None)],
    Reason.PREV_MISMATCH: lambda w: [_third(w, prev=b"\x00" * 32)],
    Reason.HUB_FORKED: _past_a_fork,
    Reason.UNKNOWN_KIND: lambda w: [_third(w, kind="no.such_kind")],
    Reason.BAD_BODY: lambda w: [_third(w, body=_body({"area": ""}))],
    Reason.BODY_VERSION: lambda w: [_third(w, body=_body({"_v": 9, "area": "a"}))],
    Reason.BODY_TOO_LARGE: lambda w: [_third(w, body=_body({"area": "a", "new": "x" * 2000}))],
}


def test_every_reason_has_a_rejection_case():
    assert set(REJECTIONS) == set(Reason)


@pytest.mark.parametrize("reason", list(REJECTIONS), ids=[r.value for r in REJECTIONS])
async def test_ingest_rejects_with_the_reason_and_stores_nothing(tmp_path: Path, reason: Reason):
    writer, records = chain(2)
    async with await EventLog.open(tmp_path / "log.sqlite3", net=NET, max_record_size=LIMIT) as log:
        await log.ingest(records)
        *setup, bad = REJECTIONS[reason](writer)
        await log.ingest(setup)
        before = await snapshot(log)
        (outcome,) = await log.ingest([bad], trusted=lambda hub: hub == writer.hub)
        assert (outcome.status, outcome.reason) == (Status.REJECTED, reason)
        assert outcome.detail
        assert await snapshot(log) == before
        if reason is not Reason.HUB_FORKED:
            # The hub's chain is intact: its real seq 3 is still accepted afterwards.
            real = writer.next("hub.profile_updated", update(3))
            assert statuses(await log.ingest([real])) == [Status.ACCEPTED]


async def test_rejected_outcome_names_the_claimed_hub_and_seq(log: EventLog):
    writer, _ = chain(2)
    (outcome,) = await log.ingest([_third(writer, OTHER)])
    assert (outcome.status, outcome.hub, outcome.seq) == (Status.REJECTED, writer.hub, 3)
    (outcome,) = await log.ingest([b"junk"])
    assert (outcome.status, outcome.hub, outcome.seq) == (Status.REJECTED, None, None)


async def test_untrusted_hubs_are_not_stored(log: EventLog):
    a, ra = chain(2)
    _, rb = chain(2)
    outcomes = await log.ingest(ra + rb, trusted=lambda hub: hub == a.hub)
    assert statuses(outcomes) == [Status.ACCEPTED] * 2 + [Status.REJECTED] * 2
    assert {o.reason for o in outcomes[2:]} == {Reason.UNKNOWN_HUB}
    assert list(await log.heads()) == [a.hub]


# -- forks ------------------------------------------------------------------------------------


async def test_second_event_at_a_stored_seq_is_a_fork(log: EventLog):
    writer, records = chain(1)
    twin = writer.fork()
    records += [writer.next("hub.profile_updated", update(i)) for i in (2, 3)]
    other = twin.next("hub.profile_updated", update(20))
    await log.ingest(records)
    (outcome,) = await log.ingest([other])
    assert (outcome.status, outcome.hub, outcome.seq) == (Status.FORK, writer.hub, 2)
    assert outcome.id == event_id(other)
    assert await log.forked_hubs() == {writer.hub: 2}
    (proof,) = await log.forks()
    assert (proof.hub, proof.seq) == (writer.hub, 2)
    assert {proof.raw_a, proof.raw_b} == {records[1], other}
    assert set(proof.ids) == {event_id(records[1]), event_id(other)}
    # The stored chain stays as it was; nothing past the fork is accepted.
    assert await log.head(writer.hub) == Head(3, event_id(records[2]))
    later = writer.next("hub.profile_updated", update(4))
    (outcome,) = await log.ingest([later])
    assert (outcome.status, outcome.reason) == (Status.REJECTED, Reason.HUB_FORKED)
    assert await log.count() == 3
    # The same fork proof again adds nothing.
    assert statuses(await log.ingest([other])) == [Status.FORK]
    assert len(await log.forks()) == 1


async def test_two_different_pending_events_at_one_seq_are_a_fork(log: EventLog):
    writer, records = chain(1)
    twin = writer.fork()
    records += [writer.next("hub.profile_updated", update(i)) for i in (2, 3)]
    twin.next("hub.profile_updated", update(20))
    other3 = twin.next("hub.profile_updated", update(30))
    assert statuses(await log.ingest([records[2]])) == [Status.PENDING]
    (outcome,) = await log.ingest([other3])
    assert (outcome.status, outcome.hub, outcome.seq) == (Status.FORK, writer.hub, 3)
    assert await log.forked_hubs() == {writer.hub: 3}
    (proof,) = await log.forks()
    assert {proof.raw_a, proof.raw_b} == {records[2], other3}
    assert event_id(proof.raw_a) < event_id(proof.raw_b)  # one row per pair, ordered by id
    assert log.pending.waiting() == {}  # a forked hub's pending records are dropped
    # Events before the fork are still accepted; events past it are not.
    assert statuses(await log.ingest(records[:2])) == [Status.ACCEPTED] * 2
    later = writer.next("hub.profile_updated", update(4))
    assert (await log.ingest([later]))[0].reason is Reason.HUB_FORKED


async def test_fork_within_one_batch(log: EventLog):
    writer, records = chain(2)
    twin = writer.fork()
    a = writer.next("hub.profile_updated", update(3))
    b = twin.next("hub.profile_updated", update(30))
    outcomes = await log.ingest([*records, a, b])
    assert statuses(outcomes) == [Status.ACCEPTED] * 3 + [Status.FORK]
    assert await log.forked_hubs() == {writer.hub: 3}


async def test_fork_of_this_hub_stops_its_appends(tmp_path: Path):
    key = SigningKey.generate()
    async with await EventLog.open(tmp_path / "log.sqlite3", net=NET, key=key) as log:
        await log.append("hub.registered", registered("Real"))
        clone = ChainWriter(NET, key)  # a cloned key signs a different seq 1
        (outcome,) = await log.ingest([clone.next("hub.registered", registered("Clone"))])
        assert outcome.status is Status.FORK
        assert await log.forked_hubs() == {key.public: 1}
        with pytest.raises(ForkDetected) as info:
            await log.append("hub.profile_updated", update(2))
        assert (info.value.hub, info.value.seq) == (key.public, 1)
        # Every caller of a group commit hears it.
        results = await asyncio.gather(
            *(log.append("hub.profile_updated", update(i)) for i in range(3)),
            return_exceptions=True,
        )
        assert all(isinstance(r, ForkDetected) for r in results)
        assert await log.count() == 1


async def test_ingest_is_idempotent(log: EventLog):
    a, ra = chain(4)
    _, rb = chain(3)
    fork = a.fork()
    fork.seq, fork.head = 1, event_id(ra[0])
    twin2 = fork.next("hub.profile_updated", update(50))
    batch = ra[2:] + rb + ra[:2] + [twin2]
    first = await log.ingest(batch)
    assert Status.FORK in statuses(first)
    state = (await snapshot(log), await log.forks(), await log.forked_hubs(), await log.events())
    again = await log.ingest(batch)
    assert Status.ACCEPTED not in statuses(again)
    assert (
        await snapshot(log),
        await log.forks(),
        await log.forked_hubs(),
        await log.events(),
    ) == state


async def test_many_hubs_interleaved_in_one_shuffled_batch(log: EventLog):
    writers = [chain(12) for _ in range(6)]
    batch = [raw for _, records in writers for raw in records]
    random.Random(7).shuffle(batch)
    outcomes = await log.ingest(batch)
    assert set(statuses(outcomes)) <= {Status.ACCEPTED, Status.PENDING}
    stored = sum(1 + o.released for o in outcomes if o.status is Status.ACCEPTED)
    assert stored == len(batch) == await log.count()
    assert await log.heads() == {w.hub: Head(12, w.head) for w, _ in writers}  # type: ignore[arg-type]
    for w, _ in writers:
        assert [e.seq for e in await log.events(hub=w.hub)] == list(range(1, 13))


async def test_large_batch_gives_the_same_outcomes_as_small_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    threads: set[str] = set()
    check_chunk = verifying.check_chunk

    def spy(*args):  # type: ignore[no-untyped-def]
        threads.add(threading.current_thread().name)
        return check_chunk(*args)

    monkeypatch.setattr(verifying, "check_chunk", spy)
    batch: list[bytes] = []
    for _ in range(5):
        writer, records = chain(30)
        twin = writer.fork()
        twin.seq, twin.head = 10, event_id(records[9])
        records.append(twin.next("hub.profile_updated", update(99)))  # a fork at seq 11
        records.append(_third(writer, OTHER))  # bad signature
        records.append(records[0][:-1])  # truncated
        records.append(writer.next("no.such_kind", b"\x80"))  # unknown kind at seq 31
        batch += records
    random.Random(11).shuffle(batch)
    assert len(batch) > verifying.PARALLEL_FROM

    async with await EventLog.open(tmp_path / "one.sqlite3", net=NET, workers=4) as one:
        big = await one.ingest(batch)
        big_state = (await snapshot(one), await one.forks(), await one.forked_hubs())
    assert any(name.startswith("hubnode-verify") for name in threads)

    threads.clear()
    async with await EventLog.open(tmp_path / "many.sqlite3", net=NET) as many:
        small: list[IngestOutcome] = []
        for i in range(0, len(batch), 10):
            small += await many.ingest(batch[i : i + 10])
        small_state = (await snapshot(many), await many.forks(), await many.forked_hubs())
    assert threads == {threading.current_thread().name}

    assert big == small
    assert {o.status for o in big} >= {Status.ACCEPTED, Status.REJECTED, Status.FORK}
    assert big_state[0] == small_state[0]
    assert [(f.hub, f.seq, f.raw_a, f.raw_b) for f in big_state[1]] == [
        (f.hub, f.seq, f.raw_a, f.raw_b) for f in small_state[1]
    ]
    assert big_state[2] == small_state[2]


async def test_a_pending_record_that_does_not_fit_is_dropped_when_its_gap_fills(log: EventLog):
    writer, records = chain(2)
    third = writer.next("hub.profile_updated", update(3))
    bad = writer.next("no.such_kind", b"\x80")  # validly signed seq 4, unknown kind
    assert statuses(await log.ingest([third, bad])) == [Status.PENDING, Status.PENDING]
    outcomes = await log.ingest(records)
    assert outcomes[-1].released == 1  # seq 3 only
    assert await log.head(writer.hub) == Head(3, event_id(third))
    assert await log.count() == 3


# -- reading ---------------------------------------------------------------------------------


async def test_records_pages_by_seq_count_and_bytes(log: EventLog):
    writer, records = chain(10)
    await log.ingest(records)
    assert await log.records(writer.hub) == records
    assert await log.records(writer.hub, 4) == records[3:]
    assert await log.records(writer.hub, 4, limit=3) == records[3:6]
    size = len(records[3]) + len(records[4])
    assert await log.records(writer.hub, 4, max_bytes=size) == records[3:5]
    assert await log.records(writer.hub, 4, max_bytes=size - 1) == records[3:4]
    assert await log.records(writer.hub, 4, max_bytes=1) == records[3:4]  # at least one
    assert await log.records(writer.hub, 11) == []
    assert await log.records(b"\x00" * 32) == []


async def test_events_filter_by_position_hub_and_kind(log: EventLog):
    mine = await log.append("hub.registered", registered("Mine"))
    writer, records = chain(3)
    await log.ingest(records)
    await log.append("hub.profile_updated", update(9))
    events = await log.events()
    assert [e.pos for e in events] == [1, 2, 3, 4, 5]
    assert [e.hub for e in events] == [log.hub, *[writer.hub] * 3, log.hub]
    assert [e.pos for e in await log.events(after_pos=2)] == [3, 4, 5]
    assert [e.pos for e in await log.events(after_pos=1, limit=2)] == [2, 3]
    assert [e.seq for e in await log.events(hub=writer.hub)] == [1, 2, 3]
    registrations = await log.events(kind="hub.registered")
    assert [(e.hub, e.body) for e in registrations] == [
        (log.hub, registered("Mine")),
        (writer.hub, registered()),
    ]
    assert [e.pos for e in await log.events(hub=log.hub, kind="hub.profile_updated")] == [5]
    assert (events[0].id, events[0].raw) == (mine.id, mine.raw)
    assert events[-1].body == update(9)


async def test_events_of_one_hub_from_any_position_whichever_way_sqlite_reads_them(
    log: EventLog,
):
    # A long chain and a short one, interleaved: from a late position the pos range is
    # the cheaper read, from an early one the hub's index. Both must give the same events.
    long_writer, long_chain = chain(60)
    short_writer, short_chain = chain(6)
    await log.ingest(long_chain[:30] + short_chain[:3] + long_chain[30:] + short_chain[3:])
    everything = await log.events(limit=100)
    every_kind = {e.kind for e in everything}
    for hub in (long_writer.hub, short_writer.hub):
        for after in (0, 10, 33, 60, 64, 66):
            for kind in (None, "hub.profile_updated", ("hub.registered", "hub.profile_updated")):
                got = await log.events(after_pos=after, hub=hub, kind=kind, limit=100)
                kinds = {kind} if isinstance(kind, str) else set(kind or every_kind)
                assert got == [
                    e for e in everything if e.pos > after and e.hub == hub and e.kind in kinds
                ]
        assert len(await log.events(after_pos=10, hub=hub, limit=3)) == 3


async def test_heads_and_counts_per_hub(log: EventLog):
    assert await log.heads() == {}
    assert await log.head(b"\x01" * 32) is None
    a, ra = chain(3)
    b, rb = chain(5)
    await log.ingest(ra + rb)
    assert await log.heads() == {a.hub: (3, a.head), b.hub: (5, b.head)}
    assert list(await log.heads()) == sorted([a.hub, b.hub])
    assert (await log.count(), await log.count(a.hub), await log.count(b.hub)) == (8, 3, 5)


async def test_export_orders_hubs_by_id_then_seq_with_fork_evidence(log: EventLog):
    chains = [chain(4) for _ in range(3)]
    writer, records = chains[0]
    twin = writer.fork()
    twin.seq, twin.head = 1, event_id(records[0])
    fork = twin.next("hub.profile_updated", update(20))
    batch = [raw for _, rs in chains for raw in rs]
    random.Random(3).shuffle(batch)
    await log.ingest(batch)
    assert statuses(await log.ingest([fork])) == [Status.FORK]

    expected: list[bytes] = []
    for _, rs in sorted(chains, key=lambda c: c[0].hub):
        for raw in rs:
            expected.append(raw)
            if raw == records[1]:
                expected.append(fork)  # the fork's second record right after its seq
    assert [raw async for raw in log.export_records()] == expected
    assert [raw async for raw in log.export_records(writer.hub)] == [
        records[0],
        records[1],
        fork,
        *records[2:],
    ]


async def test_export_streams_past_one_page(log: EventLog):
    _, records = chain(2100)  # export reads 2000 rows a page
    await log.ingest(records)
    assert [raw async for raw in log.export_records()] == records


async def test_wait_for_returns_once_the_event_is_stored(log: EventLog):
    writer, records = chain(3)
    waiter = asyncio.create_task(log.wait_for(writer.hub, 3))
    await log.ingest(records[:2])
    assert not waiter.done()
    await log.ingest(records[2:])
    async with asyncio.timeout(5):
        await waiter


async def test_a_fork_found_ahead_of_a_gap_stops_the_chain_before_it(log: EventLog):
    # Both twins arrive ahead of a gap: neither may become "the" event at that seq (which
    # arrived first must not decide what a hub holds), so the chain stops just before it.
    writer, records = chain(2)
    twin = writer.fork()
    first = writer.next("hub.profile_updated", update(3))
    second = twin.next("hub.profile_updated", update(30))
    assert statuses(await log.ingest([first, second])) == [Status.PENDING, Status.FORK]
    outcomes = await log.ingest([*records, second])
    assert statuses(outcomes) == [Status.ACCEPTED, Status.ACCEPTED, Status.REJECTED]
    assert outcomes[2].reason is Reason.HUB_FORKED
    assert (await log.head(writer.hub)) == Head(2, event_id(records[1]))
    # The export carries both twins right after the head, so an auditor sees the fork.
    twins = sorted([first, second], key=event_id)
    assert [raw async for raw in log.export_records()] == [*records, *twins]


async def test_fork_proof_is_kept_once_whichever_twin_came_first(log: EventLog):
    writer, records = chain(2)
    twin = writer.fork()
    first = writer.next("hub.profile_updated", update(3))
    second = twin.next("hub.profile_updated", update(30))
    await log.ingest([*records, first])
    assert statuses(await log.ingest([second])) == [Status.FORK]
    assert statuses(await log.ingest([first, second])) == [Status.DUPLICATE, Status.FORK]
    assert len(await log.forks()) == 1


async def test_a_write_waits_for_a_reader_on_its_connection_after_another_process_committed(
    tmp_path: Path,
):
    # An open read on a connection pins an old snapshot; once another connection commits,
    # SQLite answers BEGIN IMMEDIATE with BUSY_SNAPSHOT at once. The write must wait for
    # the read to finish, not fail.
    key = SigningKey.generate()
    path = tmp_path / "log.sqlite3"
    async with (
        await EventLog.open(path, net=NET, key=key) as node_log,
        await EventLog.open(path, net=NET, key=key) as cli_log,
    ):
        await node_log.append_many([("hub.profile_updated", update(i)) for i in range(1, 4)])
        reader = await node_log._db.execute("SELECT raw FROM events")
        assert await reader.fetchone() is not None  # the read is under way
        await cli_log.append("hub.profile_updated", update(4))
        begin = asyncio.create_task(node_log._begin())
        # Without the retry, BEGIN fails at once with "database is locked".
        await asyncio.wait({begin}, timeout=0.3)
        assert not begin.done() or begin.exception() is None
        await reader.close()
        async with asyncio.timeout(10):
            await begin
        await node_log._rollback()
        done = await node_log.append("hub.profile_updated", update(5))
        assert done.seq == 5


async def test_data_version_changes_with_each_commit_by_another_connection(tmp_path: Path):
    key = SigningKey.generate()
    path = tmp_path / "log.sqlite3"
    async with (
        await EventLog.open(path, net=NET, key=key) as node_log,
        await EventLog.open(path, net=NET, key=key) as cli_log,
    ):
        first = await node_log.data_version()
        assert await node_log.data_version() == first  # nothing committed
        await node_log.ingest(chain(1)[1])  # its own commit: not news to it
        assert await node_log.data_version() == first
        await cli_log.append("hub.registered", registered())  # another process, say
        second = await node_log.data_version()
        assert second != first
        assert await node_log.data_version() == second
        await cli_log.append("hub.profile_updated", update(2))
        assert await node_log.data_version() not in (first, second)
