"""Several ``hubnode run`` processes gossiping over a real nats-server (DESIGN §6).

Every node is a subprocess; the test process appends to the hubs' logs directly (as
another local process would, e.g. ``hubnode log append``) and reads what each node's log
holds. Nodes announce their heads every 0.5 s here, so convergence takes about a second.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import msgspec
import pytest

from hubnode.config import EmbeddedNats

from .cluster import Cluster, alive, free_port, hubnode, hubnode_json, wait_until

pytestmark = pytest.mark.timeout(60)


async def test_three_nodes_converge_on_events_appended_before_and_while_they_run(
    cluster: Cluster,
) -> None:
    await cluster.start_server()
    a, b, c = cluster.hubs("a", "b", "c")
    for folder, n in ((a, 5), (b, 3), (c, 1)):
        await cluster.append(folder, n)
    for folder in (a, b, c):
        await cluster.start(folder)

    await cluster.wait_converged([a, b, c], {a: 5, b: 3, c: 1})

    # Appended by other processes while the nodes run: each node notices its log grew.
    await cluster.append(a, 20)
    await cluster.append(b, 7)
    await cluster.append(c, 300)
    code, _, err = await hubnode(
        "log",
        "append",
        "--data",
        str(b.path),
        "--kind",
        "hub.profile_updated",
        "--json",
        '{"area": "appended by the CLI"}',
    )
    assert code == 0, err
    await cluster.wait_converged([a, b, c], {a: 25, b: 11, c: 301})


async def test_a_node_stopped_while_both_sides_append_catches_up_without_loss(
    cluster: Cluster,
) -> None:
    await cluster.start_server()
    a, b, c = cluster.hubs("a", "b", "c")
    for folder in (a, b, c):
        await cluster.append(folder, 2)
        await cluster.start(folder)
    await cluster.wait_converged([a, b, c], {a: 2, b: 2, c: 2})

    assert await cluster.stop(c) == 0, cluster.node(c).tail()
    # Both sides of the partition write: a and b online, c in its own log while offline.
    await cluster.append(a, 40)
    await cluster.append(b, 600)
    await cluster.append(c, 25)
    await cluster.wait_converged([a, b], {a: 42, b: 602, c: 2})
    assert (await cluster.seqs(c)) == {"a": 2, "b": 2, "c": 27}

    await cluster.start(c)
    heads = await cluster.wait_converged([a, b, c], {a: 42, b: 602, c: 27})
    for folder in (a, b, c):
        log = await cluster.reader(folder)
        assert await log.count() == 42 + 602 + 27, "every event of every hub, none twice"
        assert await log.forked_hubs() == {}
    assert len(heads) == 3


async def test_nodes_reconnect_after_a_nats_server_restart_and_lose_nothing(
    cluster: Cluster,
) -> None:
    url = await cluster.start_server()
    a, b, c = cluster.hubs("a", "b", "c")
    nodes = []
    for folder in (a, b, c):
        await cluster.append(folder, 3)
        nodes.append(await cluster.start(folder))
    await cluster.wait_converged([a, b, c], {a: 3, b: 3, c: 3})

    assert cluster.server is not None
    await cluster.server.stop()
    await wait_until(
        lambda: not any(n.current_status()["nats"]["connected"] for n in nodes),
        5,
        "every node to notice the server is gone",
        cluster.logs,
    )
    # Appended during the outage: nothing can be published now.
    await cluster.append(a, 10)
    await cluster.append(b, 1)

    assert await cluster.start_server() == url, "restarted on the same port"
    started = time.monotonic()
    await wait_until(
        lambda: all(n.running() for n in nodes), 10, "every node to reconnect", cluster.logs
    )
    reconnect = time.monotonic() - started
    await cluster.append(c, 4)
    await cluster.wait_converged([a, b, c], {a: 13, b: 4, c: 7})
    assert reconnect < 10


async def test_a_late_joiner_catches_up_from_peers_while_the_author_is_offline(
    cluster: Cluster,
) -> None:
    await cluster.start_server()
    author, relay, joiner = cluster.hubs("author", "relay", "joiner")
    await cluster.append(author, 1200)  # more than one fetch batch (500)
    await cluster.append(relay, 30)
    await cluster.append(joiner, 2)
    for folder in (author, relay):
        await cluster.start(folder)
    await cluster.wait_converged([author, relay], {author: 1200, relay: 30})
    assert await cluster.stop(author) == 0
    stopped = time.time()

    node = await cluster.start(joiner)
    await cluster.wait_converged([relay, joiner], {author: 1200, relay: 30, joiner: 2})

    missing = 1200 + 30
    counters = await wait_until(
        lambda: (c := node.counters()).get("fetched", 0) >= missing and c,
        5,
        "the joiner's status to count what it fetched",
        cluster.logs,
    )
    # Catch-up costs what was missing: each record fetched about once.
    assert counters["fetched"] <= missing * 1.1, counters
    assert counters["accepted"] == missing, counters
    peers = node.current_status()["peers"]
    heard = {hub for hub, seen in peers.items() if seen["last_heard"] is not None}
    assert heard == {relay.config.hub_id}, "the author was offline throughout"
    # Its records, passed on by the relay, show when the author signed them: before it
    # stopped, not that it is up now.
    assert peers[author.config.hub_id]["last_record"] <= stopped


async def test_a_node_without_nats_url_runs_its_own_server_which_another_node_can_use(
    cluster: Cluster,
) -> None:
    host, guest = cluster.hubs("host", "guest")
    await cluster.append(host, 4)
    await cluster.append(guest, 6)
    node = await cluster.start(host, embedded=True)
    url = node.current_status()["nats"]["url"]
    assert url.startswith("nats://127.0.0.1:"), url
    server = node.embedded_server_pid()
    assert server is not None
    assert alive(server)

    await cluster.start(guest, nats_url=url)
    await cluster.wait_converged([host, guest], {host: 4, guest: 6})

    assert await cluster.stop(host) == 0, node.tail()
    assert not alive(server), "the embedded nats-server outlived its node"


async def test_two_nodes_with_embedded_servers_joined_by_a_cluster_route_converge(
    cluster: Cluster,
) -> None:
    first, second = cluster.hubs("first", "second")
    route_port = free_port()
    for folder, embedded in (
        (first, EmbeddedNats(cluster_port=route_port)),
        (second, EmbeddedNats(routes=(f"nats-route://127.0.0.1:{route_port}",))),
    ):
        folder.config = msgspec.structs.replace(folder.config, embedded=embedded)
        folder.save_config()
        await cluster.append(folder, 3)
    for folder in (first, second):
        await cluster.start(folder, embedded=True)
    servers = [cluster.node(f).embedded_server_pid() for f in (first, second)]
    assert None not in servers
    urls = {cluster.node(f).current_status()["nats"]["url"] for f in (first, second)}
    assert len(urls) == 2, "each node runs its own server"

    await cluster.wait_converged([first, second], {first: 3, second: 3})
    await cluster.append(second, 100)
    await cluster.wait_converged([first, second], {first: 3, second: 103})

    for folder in (first, second):
        assert await cluster.stop(folder) == 0
    assert not any(alive(pid) for pid in servers if pid)


async def test_status_and_peers_list_show_the_peer_connected_and_caught_up(
    cluster: Cluster,
) -> None:
    await cluster.start_server()
    a, b = cluster.hubs("a", "b")
    await cluster.append(a, 2)
    await cluster.append(b, 9)
    for folder in (a, b):
        await cluster.start(folder)
    await cluster.wait_converged([a, b], {a: 2, b: 9})
    data = str(a.path)
    peer = b.config.hub_id

    heads = {a.config.hub_id: 2, peer: 9}

    async def caught_up() -> dict[str, Any] | None:
        # B announces its heads every heads_interval: one sent before B had fetched A's
        # events names only B's own; wait for the announcement after that.
        status: dict[str, Any] = await hubnode_json("status", "--data", data)
        seen = status["peers"].get(peer)
        return status if seen and seen["lag"] == 0 and seen["heads"] == heads else None

    status = await wait_until(caught_up, 10, "`hubnode status` to show b caught up, lag 0")
    assert status["running"] is True
    assert status["nats"] == {"url": cluster.url, "connected": True}
    assert status["own_head"]["seq"] == 2
    assert status["hubs_held"] == 2
    assert status["peers"][peer]["heads"] == heads
    assert time.time() - status["peers"][peer]["last_heard"] < 5
    assert status["counters"]["accepted"] == 9

    rows = {r["id"]: r for r in await hubnode_json("peers", "list", "--data", data)}
    assert set(rows) == {a.config.hub_id, peer}
    assert rows[a.config.hub_id]["trusted"] == "this hub"
    row = rows[peer]
    assert (row["name"], row["trusted"], row["head_seq"], row["lag"]) == ("b", "local", 9, 0)
    assert row["forked_at"] is None
    assert time.time() - row["last_heard"] < 5


async def test_a_hub_restored_from_an_old_backup_gets_its_own_events_back_before_appending(
    cluster: Cluster,
) -> None:
    await cluster.start_server()
    a, b = cluster.hubs("a", "b")
    await cluster.append(a, 4)
    await cluster.append(b, 1)
    for folder in (a, b):
        await cluster.start(folder)
    await cluster.wait_converged([a, b], {a: 4, b: 1})
    assert await cluster.stop(a) == 0
    await cluster.close_logs(a)
    backup = a.path.parent / "a-backup.sqlite3"
    shutil.copyfile(a.log_path, backup)

    await cluster.start(a)
    await cluster.append(a, 6)  # signed after the backup was taken
    await cluster.wait_converged([a, b], {a: 10, b: 1})
    assert await cluster.stop(a) == 0
    await cluster.close_logs(a)
    for leftover in ("-wal", "-shm"):
        a.log_path.with_name(a.log_path.name + leftover).unlink(missing_ok=True)
    shutil.copyfile(backup, a.log_path)
    assert (await cluster.seqs(a))["a"] == 4

    node = await cluster.start(a)
    await cluster.wait_holds(a, {a: 10})
    await cluster.append(a, 1)
    await cluster.wait_converged([a, b], {a: 11, b: 1})
    for folder in (a, b):
        assert await (await cluster.reader(folder)).forked_hubs() == {}
    await wait_until(
        lambda: node.counters().get("fetched", 0) >= 6, 5, "a's status to count the fetch"
    )
