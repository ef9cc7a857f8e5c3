"""A hub restored from an old backup must not append until it has caught up (DESIGN §4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubnode import BehindPeers, EventLog, SigningKey, Status
from hubnode.testing import ChainWriter

from .conftest import NET, registered, update


async def test_append_refuses_while_a_peer_announced_a_later_own_head(tmp_path: Path) -> None:
    key = SigningKey.generate()
    # What the hub signed before its disk was restored from a backup holding only seq 1-2.
    history = ChainWriter(NET, key)
    records = [history.next("hub.registered", registered())]
    records += [history.next("hub.profile_updated", update(i)) for i in range(2, 6)]
    async with await EventLog.open(tmp_path / "log.sqlite3", net=NET, key=key) as log:
        await log.ingest(records[:2])
        await log.note_peer_head(5)
        with pytest.raises(BehindPeers) as caught:
            await log.append("hub.profile_updated", update(99))
        assert (caught.value.held, caught.value.announced) == (2, 5)
        assert "restored from an old backup" in str(caught.value)
        assert await log.count() == 2
        # Catching up its own events from peers lifts the refusal; the chain goes on.
        outcomes = await log.ingest(records[2:])
        assert [o.status for o in outcomes] == [Status.ACCEPTED] * 3
        done = await log.append("hub.profile_updated", update(6))
        assert done.seq == 6


async def test_a_lower_announcement_never_lowers_the_bar(tmp_path: Path) -> None:
    key = SigningKey.generate()
    async with await EventLog.open(tmp_path / "log.sqlite3", net=NET, key=key) as log:
        await log.note_peer_head(4)
        await log.note_peer_head(2)
        with pytest.raises(BehindPeers) as caught:
            await log.append("hub.registered", registered())
        assert caught.value.announced == 4


async def test_another_process_sees_the_refusal(tmp_path: Path) -> None:
    # The node notes what peers announced; a `hubnode log append` in another process
    # opens its own connection and must refuse too.
    key = SigningKey.generate()
    path = tmp_path / "log.sqlite3"
    async with await EventLog.open(path, net=NET, key=key) as node_log:
        await node_log.note_peer_head(3)
        async with await EventLog.open(path, net=NET, key=key) as cli_log:
            with pytest.raises(BehindPeers):
                await cli_log.append("hub.registered", registered())
