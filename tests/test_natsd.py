"""The embedded nats-server: config rendering, start/stop, and cleanup after a killed node."""

from __future__ import annotations

import socket
from pathlib import Path

import nats

from hubnode.config import EmbeddedNats
from hubnode.protocol.natsd import EmbeddedServer, render_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_config_joins_a_cluster_and_attaches_as_a_leaf_only_when_asked() -> None:
    plain = render_config(EmbeddedNats(), server_name="a", cluster_name="c")
    assert "port: -1" in plain and "cluster" not in plain and "leafnodes" not in plain
    routed = render_config(
        EmbeddedNats(cluster_port=6222, routes=("nats-route://127.0.0.1:6223",)),
        server_name="a",
        cluster_name="hubnode-net",
    )
    assert 'listen: "127.0.0.1:6222"' in routed
    assert 'routes: ["nats-route://127.0.0.1:6223"]' in routed
    leaf = render_config(
        EmbeddedNats(leafnode_remotes=("nats-leaf://127.0.0.1:7422",)),
        server_name="a",
        cluster_name="c",
    )
    assert '{ url: "nats-leaf://127.0.0.1:7422" }' in leaf


async def test_a_server_left_by_a_killed_node_is_stopped_on_the_next_start(tmp_path: Path) -> None:
    settings = EmbeddedNats(port=free_port())
    first = EmbeddedServer(tmp_path, settings, server_name="hub", cluster_name="c")
    url = await first.start()
    orphan = first.pid
    assert orphan is not None
    # The node dies with SIGKILL: nobody calls first.stop(); its server keeps the port.
    second = EmbeddedServer(tmp_path, settings, server_name="hub", cluster_name="c")
    try:
        assert await second.start() == url
        assert not Path(f"/proc/{orphan}").exists() or _is_zombie(orphan)
        nc = await nats.connect(servers=[url])
        await nc.close()
    finally:
        await second.stop()
        await first.stop()  # reaps the orphan (our child in this test)


def _is_zombie(pid: int) -> bool:
    try:
        return " Z " in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
