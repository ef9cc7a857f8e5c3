"""Overlapping ``EventLog.ingest`` calls (DESIGN §4): one call's records are verified while
an earlier call's are stored, and the outcomes stay those of the calls made one by one."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from hubnode import EventLog, IngestOutcome, Status
from hubnode.events.envelope import event_id
from hubnode.protocol import messages as m
from hubnode.protocol.transport import LIVE_IN_FLIGHT, Gossip
from hubnode.store import verifying
from hubnode.trust import TrustSet

from .conftest import NET, chain, update
from .test_log import OTHER, _third, snapshot

Batches = list[list[bytes]]


def mixed_batches() -> Batches:
    """Five hubs' chains with forks, bad signatures, truncated records, an unknown kind and
    records repeated across calls, shuffled and cut into calls of 60-ish records (above
    the size verified on the thread pool)."""
    records: list[bytes] = []
    for _ in range(5):
        writer, chain_ = chain(40)
        twin = writer.fork()
        twin.seq, twin.head = 10, event_id(chain_[9])
        chain_.append(twin.next("hub.profile_updated", update(99)))  # a fork at seq 11
        chain_.append(_third(writer, OTHER))  # bad signature
        chain_.append(chain_[0][:-1])  # truncated
        chain_.append(writer.next("no.such_kind", b"\x80"))  # unknown kind at seq 41
        records += chain_
    random.Random(5).shuffle(records)
    records += records[::7]  # carried twice, often by two calls in flight at once
    step = verifying.PARALLEL_FROM
    return [records[i : i + step] for i in range(0, len(records), step)]


def gate_first_store(log: EventLog) -> tuple[asyncio.Event, asyncio.Event]:
    """Hold the first store stage of ``log`` until ``gate`` is set; ``reached`` is set
    once it is being held."""
    gate, reached = asyncio.Event(), asyncio.Event()
    original = log._store
    calls = 0

    async def gated(*args):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:
            reached.set()
            await gate.wait()
        await original(*args)

    log._store = gated  # type: ignore[method-assign]
    return gate, reached


def count_verified(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every record the verify stage checks, as it checks it (on any thread)."""
    seen: list[bytes] = []
    check_chunk = verifying.check_chunk

    def spy(raws, *args):  # type: ignore[no-untyped-def]
        seen.extend(raws)  # list.extend is atomic under the GIL
        return check_chunk(raws, *args)

    monkeypatch.setattr(verifying, "check_chunk", spy)
    return seen


async def state(log: EventLog) -> object:
    forks = [(f.hub, f.seq, f.raw_a, f.raw_b) for f in await log.forks()]
    return await snapshot(log), forks, await log.forked_hubs(), await log.events(limit=10_000)


async def one_by_one(path: Path, batches: Batches) -> tuple[list[list[IngestOutcome]], object]:
    async with await EventLog.open(path, net=NET) as log:
        outcomes = [await log.ingest(batch) for batch in batches]
        return outcomes, await state(log)


async def test_overlapping_calls_give_the_outcomes_of_the_same_calls_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    batches = mixed_batches()
    expected, expected_state = await one_by_one(tmp_path / "serial.sqlite3", batches)
    assert {o.status for call in expected for o in call} >= {
        Status.ACCEPTED,
        Status.PENDING,
        Status.DUPLICATE,
        Status.REJECTED,
        Status.FORK,
    }

    verified = count_verified(monkeypatch)
    async with await EventLog.open(tmp_path / "overlapped.sqlite3", net=NET) as log:
        gate, _ = gate_first_store(log)
        second = set(batches[1])
        loop = asyncio.get_running_loop()

        def spy_second(raws, *args):  # type: ignore[no-untyped-def]
            if second.intersection(raws):  # the second call is verifying: let the first store
                loop.call_soon_threadsafe(gate.set)
            return check(raws, *args)

        check = verifying.check_chunk
        monkeypatch.setattr(verifying, "check_chunk", spy_second)
        async with asyncio.timeout(20):
            got = await asyncio.gather(*(log.ingest(batch) for batch in batches))
        assert got == expected
        assert await state(log) == expected_state
    # Each distinct record had its signature checked once; one by one, a repeat still
    # waiting in the pending buffer was checked again.
    assert sorted(verified) == sorted(set(verified))


async def test_a_record_two_calls_in_flight_carry_is_verified_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    writer, records = chain(150)
    live, fetched = records[:100], records[50:]  # a fetch racing the live messages
    verified = count_verified(monkeypatch)
    async with await EventLog.open(tmp_path / "log.sqlite3", net=NET) as log:
        first, second = await asyncio.gather(log.ingest(live), log.ingest(fetched))
        assert [o.status for o in first] == [Status.ACCEPTED] * 100
        assert [o.status for o in second] == [Status.DUPLICATE] * 50 + [Status.ACCEPTED] * 50
        assert [(o.hub, o.seq) for o in second[:50]] == [(writer.hub, s) for s in range(51, 101)]
        assert (await log.head(writer.hub)) == (150, writer.head)
    assert sorted(verified) == sorted(records)


async def test_a_later_call_stores_after_an_earlier_one_that_verifies_slowly(tmp_path: Path):
    _, records = chain(200)
    async with await EventLog.open(tmp_path / "log.sqlite3", net=NET) as log:
        # The first call has much more to verify; the second, started just after, must
        # still wait for it, or its records would land ahead of a gap (pending).
        first, second = await asyncio.gather(log.ingest(records[:190]), log.ingest(records[190:]))
        assert {o.status for o in first + second} == {Status.ACCEPTED}
        assert [e.seq for e in await log.events(limit=500)] == list(range(1, 201))


async def test_trust_granted_while_a_call_waits_its_turn_applies_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    a, ra = chain(3)
    x, rx = chain(3)
    trusted_hubs = {a.hub}

    def trusted(hub: bytes) -> bool:
        return hub in trusted_hubs

    loop = asyncio.get_running_loop()
    x_checked = asyncio.Event()
    check = verifying.check_chunk

    def spy(raws, *args):  # type: ignore[no-untyped-def]
        results = check(raws, *args)
        if rx[0] in raws:
            loop.call_soon_threadsafe(x_checked.set)
        return results

    monkeypatch.setattr(verifying, "check_chunk", spy)
    async with await EventLog.open(tmp_path / "log.sqlite3", net=NET) as log:
        gate, _ = gate_first_store(log)
        earlier = asyncio.create_task(log.ingest(ra, trusted=trusted))
        later = asyncio.create_task(log.ingest(rx, trusted=trusted))
        async with asyncio.timeout(10):
            await x_checked.wait()  # x rejected as untrusted while the earlier call waits
        trusted_hubs.add(x.hub)  # e.g. the earlier call stored a hub.admitted for x
        gate.set()
        async with asyncio.timeout(10):
            assert {o.status for o in await earlier} == {Status.ACCEPTED}
            # Judged by the trust in force when it stores, as if the calls ran one by one.
            assert [o.status for o in await later] == [Status.ACCEPTED] * 3
        assert (await log.head(x.hub)) == (3, x.head)


async def test_a_call_given_up_while_in_flight_keeps_the_others_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    writer, records = chain(9)
    verified = count_verified(monkeypatch)
    async with await EventLog.open(tmp_path / "log.sqlite3", net=NET) as log:
        gate, reached = gate_first_store(log)
        first = asyncio.create_task(log.ingest(records[:3]))
        given_up = asyncio.create_task(log.ingest(records[3:6]))
        await asyncio.sleep(0)  # one loop step: both calls start, taking turns and ids
        last = asyncio.create_task(log.ingest(records[3:]))  # borrows 4-6 from given_up
        await asyncio.sleep(0)  # one loop step: `last` starts
        given_up.cancel()  # before or after it verified 4-6: `last` must cope with both
        async with asyncio.timeout(10):
            await asyncio.wait([given_up])
            await reached.wait()
        assert not last.done()  # behind the first call, whose store is held
        gate.set()
        async with asyncio.timeout(10):
            assert [o.status for o in await first] == [Status.ACCEPTED] * 3
            assert [o.status for o in await last] == [Status.ACCEPTED] * 6
        assert given_up.cancelled()
        assert (await log.head(writer.hub)) == (9, writer.head)
        assert len(log._inflight) == 0
    assert sorted(verified) == sorted(records)  # each once, whichever call verified 4-6


async def test_a_failed_store_lets_later_calls_store_and_leaves_nothing_in_flight(
    tmp_path: Path,
):
    writer, records = chain(6)
    async with await EventLog.open(tmp_path / "log.sqlite3", net=NET) as log:
        original: Callable[..., Awaitable[None]] = log._store
        calls = 0

        async def failing_once(*args):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            if calls == 1:
                raise OSError("disk gone")
            await original(*args)

        log._store = failing_once  # type: ignore[method-assign]
        results = await asyncio.gather(
            log.ingest(records[:3]), log.ingest(records), return_exceptions=True
        )
        assert isinstance(results[0], OSError)
        second = results[1]
        assert isinstance(second, list)  # 1-3 verified by the failed call, stored by this one
        assert [o.status for o in second] == [Status.ACCEPTED] * 6
        assert (await log.head(writer.hub)) == (6, writer.head)
        assert len(log._inflight) == 0


# -- the NATS adapter ---------------------------------------------------------------------


class _Msg:
    """What ``Gossip`` reads of a nats-py message."""

    subject = "hubnode.test-net.ev"

    def __init__(self, data: bytes) -> None:
        self.data = data


async def test_gossip_verifies_the_next_live_message_while_one_is_stored(log: EventLog):
    writer, records = chain(4 * 80)
    gossip = Gossip(log, TrustSet(log.hub, [writer.hub]))  # type: ignore[arg-type]
    on_events = gossip._guard(gossip._on_events)  # as the subscription calls it
    messages = [_Msg(m.encoder.encode(records[i : i + 80])) for i in range(0, len(records), 80)]
    gate, reached = gate_first_store(log)
    in_flight, most = 0, 0
    ingest = log.ingest

    async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            return await ingest(*args, **kwargs)
        finally:
            in_flight -= 1

    log.ingest = counting  # type: ignore[method-assign]
    async with asyncio.timeout(10):
        for message in messages[:LIVE_IN_FLIGHT]:
            await on_events(message)  # returns without waiting for the store
        await reached.wait()
        # The subscription waits for a free slot: the next message stays in its queue.
        third = asyncio.create_task(on_events(messages[LIVE_IN_FLIGHT]))
        await asyncio.wait([third], timeout=0.2)
        assert not third.done()
        gate.set()
        await third
        for message in messages[LIVE_IN_FLIGHT + 1 :]:
            await on_events(message)
        while gossip._tasks:
            await asyncio.wait(list(gossip._tasks))
    assert most == LIVE_IN_FLIGHT
    # Stored in the order the messages arrived: nothing ever waited in the pending buffer.
    assert (gossip.counters.accepted, gossip.counters.pending) == (len(records), 0)
    assert gossip.heads[writer.hub] == (len(records), writer.head)
