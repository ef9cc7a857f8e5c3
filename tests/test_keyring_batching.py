"""Seal-key lookups kept between a writer's actions, and data keys kept in one transaction
(hubnode.privacy.keyring: SealKeyBook, Keyring.remember_many and remember_grouped)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from hubnode import crypto
from hubnode.config import HubFolder
from hubnode.errors import PrivacyError
from hubnode.events.network import HubProfileUpdated
from hubnode.events.pathway import SubjectErased
from hubnode.privacy import keyring
from hubnode.privacy.keyring import Keyring, SealKeyBook, catch_up_keys, seal_keys
from hubnode.privacy.seal import new_subject
from hubnode.store.log import EventLog
from tests.test_privacy import copy, hub


async def new_key(folder: HubFolder) -> bytes:
    """``folder``'s hub publishes a new seal key (as after a rotation); returns it."""
    key = crypto.SealKey.generate().public
    async with await folder.open_log() as log:
        await log.append("hub.profile_updated", HubProfileUpdated(seal_key=key))
    return key


def spy_on_events(log: EventLog, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record the arguments of every ``log.events`` call."""
    calls: list[dict[str, Any]] = []
    events = log.events

    async def recording(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return await events(**kwargs)

    monkeypatch.setattr(log, "events", recording)
    return calls


async def test_a_book_sees_a_new_key_whichever_connection_stored_it(tmp_path: Path) -> None:
    a, b, c = [await hub(tmp_path, n) for n in "abc"]
    for x in (b, c):
        await copy(x, a)
    book = SealKeyBook()
    async with await a.open_log(with_key=False) as log:
        first = await seal_keys(log, [b.hub, c.hub], book)
        b_key = await new_key(b)
        await copy(b, a)  # stored by another connection, as another process would
        assert await seal_keys(log, [b.hub, c.hub], book) == {b.hub: b_key, c.hub: first[c.hub]}
        c_key = await new_key(c)
        async with await c.open_log(with_key=False) as source:
            records = [raw async for raw in source.export_records(c.hub)]
        # Stored through the book's own connection, as the node's gossip would: SQLite's
        # data_version does not change for a connection's own commits.
        await log.ingest(records)
        assert await seal_keys(log, [c.hub, b.hub], book) == {c.hub: c_key, b.hub: b_key}
        assert await seal_keys(log, [b.hub, c.hub]) == {b.hub: b_key, c.hub: c_key}


async def test_lookups_on_one_log_read_only_what_was_stored_since_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await hub(tmp_path, "a"), await hub(tmp_path, "b")
    await copy(b, a)
    async with await a.open_log() as log:
        calls = spy_on_events(log, monkeypatch)
        key = await seal_keys(log, [b.hub])  # the log's own book, kept between calls
        assert [c["hub"] for c in calls] == [b.hub]  # a hub's first lookup: its own events
        calls.clear()
        assert await seal_keys(log, [b.hub]) == key
        assert calls == []  # nothing stored since: no read at all
        await log.append("hub.profile_updated", HubProfileUpdated(name="a, renamed"))
        upto = await log.last_pos()
        assert await seal_keys(log, [b.hub]) == key
        (call,) = calls
        assert call["hub"] is None and call["after_pos"] == upto - 1  # only the new event
        calls.clear()
        await seal_keys(log, [b.hub], SealKeyBook())  # a fresh book reads it all again
        assert [c["hub"] for c in calls] == [b.hub]


async def test_concurrent_lookups_of_a_new_hub_all_find_its_key(tmp_path: Path) -> None:
    a, b = await hub(tmp_path, "a"), await hub(tmp_path, "b")
    await copy(b, a)
    book = SealKeyBook()
    async with await a.open_log() as log:
        await seal_keys(log, [a.hub], book)  # known to the book: b is new to it
        found = await asyncio.gather(*(seal_keys(log, [b.hub], book) for _ in range(4)))
    assert len({f[b.hub] for f in found}) == 1


async def test_a_hub_without_a_published_key_is_named_with_a_book(tmp_path: Path) -> None:
    a = await hub(tmp_path, "a")
    stranger = HubFolder.init(tmp_path / "s", name="s", network="test-net")
    book = SealKeyBook()
    async with await a.open_log() as log:
        for _ in range(2):  # the second time from the book's own record
            with pytest.raises(PrivacyError, match=stranger.config.hub_id):
                await seal_keys(log, [a.hub, stranger.hub], book)


async def erased_subject(folder: HubFolder, ring: Keyring) -> str:
    """A subject of ``folder``'s hub that it has erased."""
    subject = new_subject()
    async with await folder.open_log() as log:
        await log.append("subject.erased", SubjectErased(subject=subject, reason="asked"))
        await catch_up_keys(log, ring)
    return subject


async def test_remember_many_keeps_every_key_but_an_erased_subjects(tmp_path: Path) -> None:
    a = await hub(tmp_path, "a")
    with Keyring.open(a) as ring:
        gone = await erased_subject(a, ring)
        keys = {new_subject(): crypto.new_data_key() for _ in range(5)}
        wanted = [(a.hub, s, k) for s, k in keys.items()]
        assert ring.remember_many([*wanted[:2], (a.hub, gone, bytes(32)), *wanted[2:]]) == [gone]
        assert {s: ring.data_key(a.hub, s) for s in keys} == keys
        with pytest.raises(PrivacyError, match="erased"):
            ring.data_key(a.hub, gone)


async def test_tasks_remembering_at_once_share_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await hub(tmp_path, "a")
    with Keyring.open(a) as ring:
        gone = await erased_subject(a, ring)
        groups: list[int] = []
        keep = keyring._keep

        def counting(db: Any, keys: Any) -> list[str]:
            keys = list(keys)
            groups.append(len(keys))
            return keep(db, keys)

        monkeypatch.setattr(keyring, "_keep", counting)
        keys = {new_subject(): crypto.new_data_key() for _ in range(8)}
        results = await asyncio.gather(
            *(ring.remember_grouped(a.hub, s, k) for s, k in keys.items()),
            ring.remember_grouped(a.hub, gone, bytes(32)),
            return_exceptions=True,
        )
        assert groups == [9]
        assert results[:8] == [None] * 8
        assert isinstance(results[8], PrivacyError) and "erased" in str(results[8])
        assert {s: ring.data_key(a.hub, s) for s in keys} == keys
        await ring.remember_grouped(a.hub, new_subject(), crypto.new_data_key())
        assert groups == [9, 1]  # alone, it does not wait for company
        # Tasks arriving while a group is on the disk form the next group.
        first = asyncio.ensure_future(ring.remember_grouped(a.hub, new_subject(), bytes(32)))
        await asyncio.sleep(0)  # one turn: it queues its key and starts the group writer
        later = [new_subject() for _ in range(3)]
        await asyncio.gather(first, *(ring.remember_grouped(a.hub, s, bytes(32)) for s in later))
        assert groups == [9, 1, 1, 3]
