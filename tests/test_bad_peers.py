"""Hostile and misbehaving participants against real ``hubnode run`` nodes (DESIGN §4 to §6).

A *rogue* here is a plain NATS client (nats-py) on the network's subjects: it is no node
and holds no trusted key unless the test gives it one (an equivocating hub). Honest
nodes must flag forks, drop what they do not trust, shrug off garbage, and keep
converging on honest events.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from itertools import pairwise

import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from hubnode import HubFolder, SigningKey
from hubnode.events.envelope import FORMAT_VERSION, MAX_RECORD_SIZE, Envelope, event_id, seal
from hubnode.events.network import HubAdmitted
from hubnode.protocol import messages as m
from hubnode.testing import ChainWriter

from .cluster import Cluster, hubnode, hubnode_json, rss_kib, trust_each_other, wait_until
from .conftest import NET, registered, update

pytestmark = pytest.mark.timeout(90)


@asynccontextmanager
async def rogue(url: str) -> AsyncIterator[Client]:
    """A NATS client that is no hub, publishing whatever it likes."""
    nc = await nats.connect(servers=[url], name="rogue", allow_reconnect=False)
    try:
        yield nc
    finally:
        await nc.close()


def subject(name: str) -> str:
    return m.subject(NET, name)


async def publish_records(nc: Client, records: list[bytes]) -> None:
    await nc.publish(subject("ev"), m.encoder.encode(records))
    await nc.flush()


async def publish_heads(nc: Client, sender: bytes, heads: dict[bytes, tuple[int, bytes]]) -> None:
    await nc.publish(subject("heads"), m.encoder.encode(m.HeadsMessage(sender, heads)))
    await nc.flush()


def hub_chain(folder: HubFolder, n: int) -> tuple[ChainWriter, list[bytes]]:
    """The first ``n`` records of ``folder``'s hub, signed with its real key in memory."""
    writer = ChainWriter(NET, folder.key())
    records = [writer.next("hub.registered", registered(folder.config.name))]
    records += [writer.next("hub.profile_updated", update(i)) for i in range(2, n + 1)]
    return writer, records


async def honest_trio(cluster: Cluster, *extra_trusted: HubFolder) -> list[HubFolder]:
    """Three running nodes trusting each other and ``extra_trusted``, converged."""
    await cluster.start_server()
    honest = cluster.hubs("a", "b", "c")
    for folder in honest:
        for other in extra_trusted:
            folder.add_trusted(other.hub, other.config.name)
        await cluster.append(folder, 3)
        await cluster.start(folder)
    await cluster.wait_converged(honest, {f: 3 for f in honest})
    return honest


async def wait_forked(cluster: Cluster, folders: list[HubFolder], hub: bytes, seq: int) -> None:
    async def flagged() -> bool:
        for folder in folders:
            if (await (await cluster.reader(folder)).forked_hubs()).get(hub) != seq:
                return False
        return True

    await wait_until(flagged, 10, f"every node to flag the fork at seq {seq}", cluster.logs)


# -- equivocation -----------------------------------------------------------------------


async def test_a_hub_publishing_two_events_at_one_seq_is_flagged_forked_by_every_node(
    cluster: Cluster,
) -> None:
    evil = cluster.hub("evil")
    honest = await honest_trio(cluster, evil)
    writer, records = hub_chain(evil, 3)
    async with rogue(cluster.url) as nc:
        await publish_records(nc, records)
        await cluster.wait_converged(honest, {evil: 3})

        twin = writer.fork()
        one = writer.next("hub.profile_updated", update(100))
        other = twin.next("hub.profile_updated", update(200))
        await publish_records(nc, [one])
        await publish_records(nc, [other])
        await wait_forked(cluster, honest, evil.hub, 4)

    ids = sorted([event_id(one).hex(), event_id(other).hex()])
    for folder in honest:
        forks = await hubnode_json("log", "forks", "--data", str(folder.path))
        assert [(f["hub"], f["seq"], sorted(f["ids"])) for f in forks] == [
            (evil.config.hub_id, 4, ids)
        ]


async def test_a_node_that_was_offline_when_a_fork_was_found_learns_of_it(
    cluster: Cluster,
) -> None:
    # Proofs go out once when found; a node that joins later would sync one twin and never
    # hear of the other, so nodes send the proofs they hold again when a peer appears.
    evil, late = cluster.hub("evil"), cluster.hub("late")
    honest = await honest_trio(cluster, evil, late)
    for folder in [*honest, evil]:
        late.add_trusted(folder.hub, folder.config.name)
    writer, records = hub_chain(evil, 3)
    async with rogue(cluster.url) as nc:
        await publish_records(nc, records)
        await cluster.wait_converged(honest, {evil: 3})
        twin = writer.fork()
        await publish_records(nc, [writer.next("hub.profile_updated", update(100))])
        await publish_records(nc, [twin.next("hub.profile_updated", update(200))])
        await wait_forked(cluster, honest, evil.hub, 4)
    await cluster.start(late)
    await wait_forked(cluster, [late], evil.hub, 4)


async def test_a_node_that_only_receives_the_fork_proof_flags_the_fork_too(
    cluster: Cluster,
) -> None:
    # The equivocating hub shows its second event to one node only, as the answer to
    # that node's fetch; every other node can learn of it only from the proof that node
    # publishes on hubnode.NET.forks.
    evil = cluster.hub("evil")
    honest = await honest_trio(cluster, evil)
    writer, records = hub_chain(evil, 3)
    twin = writer.fork()
    shown = writer.next("hub.profile_updated", update(100))
    hidden = twin.next("hub.profile_updated", update(200))
    answered: list[Msg] = []
    requests: list[Msg] = []

    async def answer_once(msg: Msg) -> None:
        requests.append(msg)
        if not answered:
            answered.append(msg)
            await msg.respond(m.encoder.encode([hidden]))

    async with rogue(cluster.url) as nc:
        await publish_records(nc, [*records, shown])
        await cluster.wait_converged(honest, {evil: 4})
        await nc.subscribe(m.sync_subject(NET, evil.hub), cb=answer_once)
        # "I hold seq 4 = hidden": every node sees a different id at its seq 4 and asks.
        await publish_heads(nc, evil.hub, {evil.hub: (4, event_id(hidden))})
        await wait_forked(cluster, honest, evil.hub, 4)

    # One node got the hidden twin from the hub itself; the others' requests went
    # unanswered, so they flagged the fork from the proof on hubnode.NET.forks alone.
    assert len(answered) == 1
    assert len(requests) >= 1
    for folder in honest:
        (proof,) = await (await cluster.reader(folder)).forks()
        assert {proof.raw_a, proof.raw_b} == {shown, hidden}


# -- a flood of junk ----------------------------------------------------------------------


def flip_last_byte(raw: bytes) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 1])


def impostor(hub: bytes, seq: int, key: SigningKey, size: int = 0) -> bytes:
    """A record claiming to be ``hub``'s, signed with somebody else's key."""
    body = msgspec.msgpack.encode({"area": "x" * max(1, size)})
    env = Envelope(FORMAT_VERSION, NET, hub, hub, seq, None, 1, "hub.profile_updated", body)
    return seal(env, key)


def junk_messages(
    honest: list[HubFolder], records: list[bytes], count: int, seed: int = 7
) -> list[tuple[str, bytes]]:
    """``count`` hostile (subject, payload) pairs over ev, heads, forks and sync."""
    rnd = random.Random(seed)
    key = SigningKey.generate()
    hubs = [f.hub for f in honest]
    big = impostor(hubs[0], 4, key, size=MAX_RECORD_SIZE + 1024)  # over the record limit
    deep = b"\x91" * 100_000 + b"\xc0"  # [[[[…]]]] 100,000 deep
    many_heads = m.encoder.encode(
        m.HeadsMessage(
            hubs[0],
            {rnd.randbytes(32): (rnd.randint(1, 2**40), rnd.randbytes(32)) for _ in range(8000)},
        )
    )
    makers = [
        # ev: random bytes, arrays of junk, bad signatures, impostors, replays, oversize
        lambda: (subject("ev"), rnd.randbytes(rnd.randint(0, 300))),
        lambda: (
            subject("ev"),
            m.encoder.encode([rnd.randbytes(rnd.randint(0, 200)) for _ in range(20)]),
        ),
        lambda: (
            subject("ev"),
            m.encoder.encode([flip_last_byte(r) for r in rnd.sample(records, 5)]),
        ),
        lambda: (
            subject("ev"),
            m.encoder.encode([impostor(rnd.choice(hubs), rnd.randint(1, 50), key)]),
        ),
        lambda: (subject("ev"), m.encoder.encode(rnd.sample(records, 3))),
        lambda: (subject("ev"), deep),
        # heads: junk, an unknown sender, a forged trusted sender claiming far-off seqs
        # (of the receiver's own hub too, which must not stop its appends)
        lambda: (subject("heads"), rnd.randbytes(rnd.randint(0, 300))),
        lambda: (
            subject("heads"),
            m.encoder.encode(m.HeadsMessage(key.public, {hubs[0]: (10**9, rnd.randbytes(32))})),
        ),
        lambda: (
            subject("heads"),
            m.encoder.encode(
                m.HeadsMessage(rnd.choice(hubs), {rnd.choice(hubs): (10**6, rnd.randbytes(32))})
            ),
        ),
        # forks: junk, identical twins, forged twins, two honest records that are no fork
        lambda: (subject("forks"), rnd.randbytes(rnd.randint(0, 300))),
        lambda: (subject("forks"), m.encoder.encode(m.ForkMessage(records[0], records[0]))),
        lambda: (
            subject("forks"),
            m.encoder.encode(
                m.ForkMessage(impostor(hubs[1], 2, key), impostor(hubs[1], 2, key, size=9))
            ),
        ),
        lambda: (subject("forks"), m.encoder.encode(m.ForkMessage(*rnd.sample(records, 2)))),
        # sync: junk requests and expensive ones (every holder may answer)
        lambda: (m.sync_subject(NET, rnd.choice(hubs)), rnd.randbytes(rnd.randint(0, 100))),
        lambda: (
            m.sync_subject(NET, h := rnd.choice(hubs)),
            m.encoder.encode(m.SyncRequest(h, 1, 10_000, 2**40)),
        ),
    ]
    out = [rnd.choice(makers)() for _ in range(count - 60)]
    # Rare but heavy: records over the size limit, heads naming thousands of hubs.
    out += [(subject("ev"), m.encoder.encode([big]))] * 40 + [(subject("heads"), many_heads)] * 20
    rnd.shuffle(out)
    return out


async def test_a_flood_of_junk_leaves_nodes_alive_bounded_and_converging(
    cluster: Cluster,
) -> None:
    honest = await honest_trio(cluster)
    a, b, c = honest
    nodes = [cluster.node(f) for f in honest]
    records = [r for f in honest for r in await (await cluster.reader(f)).records(f.hub)]
    flood = junk_messages(honest, records, 10_000)

    async with rogue(cluster.url) as nc:

        async def send() -> None:
            for i, (name, payload) in enumerate(flood):
                await nc.publish(name, payload, reply="rogue.void")
                if i % 500 == 0:
                    await nc.flush()
            await nc.flush()

        async def append_meanwhile() -> None:
            for _ in range(10):
                await cluster.append(a, 5)
                await cluster.append(b, 5)
                await asyncio.sleep(0.1)  # spread the honest appends over the flood

        rss = [{n.name: rss_kib(n.pid) for n in nodes}]
        for round_ in (1, 2):
            await asyncio.gather(send(), append_meanwhile())
            expected = 3 + 50 * round_
            await cluster.wait_converged(honest, {a: expected, b: expected, c: 3}, within=30)
            rss.append({n.name: rss_kib(n.pid) for n in nodes})

    for node in nodes:
        assert node.running(), node.tail()
    for node in nodes:
        seen = node.counters()
        assert seen["garbage"] + sum(seen["rejected"].values()) > 1000, (node.name, seen)
    growth = [{name: (now[name] - was[name]) // 1024 for name in now} for was, now in pairwise(rss)]
    # Buffers fill up in the first flood (bounded queues); a second one adds little.
    assert all(mib < 150 for mib in growth[0].values()), f"RSS growth in MiB: {growth}"
    assert all(mib < 50 for mib in growth[1].values()), f"RSS growth in MiB: {growth}"
    for folder in honest:
        log = await cluster.reader(folder)
        assert await log.count() == 103 + 103 + 3, "nothing but honest events stored"
        assert await log.forked_hubs() == {}


# -- trust ------------------------------------------------------------------------------


async def test_an_untrusted_hubs_events_are_never_stored(cluster: Cluster) -> None:
    honest = await honest_trio(cluster)
    stranger = cluster.hub("stranger")
    writer, records = hub_chain(stranger, 5)
    twin = writer.fork()
    fork = (
        writer.next("hub.profile_updated", update(6)),
        twin.next("hub.profile_updated", update(7)),
    )
    head = (5, event_id(records[-1]))
    asked: list[Msg] = []
    async with rogue(cluster.url) as nc:

        async def note(msg: Msg) -> None:
            asked.append(msg)

        await nc.subscribe(m.sync_subject(NET, stranger.hub), cb=note)
        await publish_records(nc, records)
        for raw in records:
            await publish_records(nc, [raw])
        # Announced by itself, and (forged) by a trusted node as if it held them.
        await publish_heads(nc, stranger.hub, {stranger.hub: head})
        own = (await cluster.heads(honest[0]))[honest[0].hub]
        await publish_heads(nc, honest[0].hub, {stranger.hub: head, honest[0].hub: own})
        await nc.publish(subject("forks"), m.encoder.encode(m.ForkMessage(*fork)))
        await nc.flush()

        # An honest event published after all that, and every node counting the drops.
        await cluster.append(honest[1], 1)
        await cluster.wait_converged(honest, {honest[1]: 4})
        nodes = [cluster.node(f) for f in honest]
        await wait_until(
            lambda: all(n.counters().get("dropped_unknown", 0) >= 10 + 2 for n in nodes),
            5,
            "every node to count the stranger's records (10 on ev, 2 on forks) as dropped",
            cluster.logs,
        )

    for folder in honest:
        log = await cluster.reader(folder)
        assert stranger.hub not in await log.heads()
        assert await log.count(stranger.hub) == 0
        assert await log.forks() == []
    assert asked == [], "nobody asked for the stranger's events"


async def test_with_admit_threshold_two_a_hub_is_accepted_only_after_two_vouches(
    cluster: Cluster,
) -> None:
    await cluster.start_server()
    a, b = cluster.hubs("a", "b")
    observer = cluster.hub("observer", admit_threshold=2)
    newcomer = cluster.hub("newcomer")
    trust_each_other([a, b, observer])
    for folder in (a, b, observer):
        newcomer.add_trusted(folder.hub, folder.config.name)
    for folder in (a, b, observer, newcomer):
        await cluster.append(folder, 2)
        await cluster.start(folder)
    obs_node = cluster.node(observer)
    admission = HubAdmitted(hub=newcomer.config.hub_id, name="newcomer")

    # One vouch: a and b (threshold 1) take the newcomer; the observer does not.
    await (await cluster.writer(a)).append("hub.admitted", admission)
    await cluster.wait_converged([a, b], {a: 3, b: 2, newcomer: 2})
    await cluster.wait_holds(observer, {a: 3, b: 2, observer: 2})
    dropped = obs_node.counters()["dropped_unknown"]
    await cluster.append(newcomer, 1)  # published live: the observer gets it and drops it
    await cluster.wait_converged([a, b], {newcomer: 3})
    await wait_until(
        lambda: obs_node.counters()["dropped_unknown"] > dropped,
        5,
        "the observer to drop the newcomer's live event",
        cluster.logs,
    )
    assert newcomer.config.hub_id not in obs_node.current_status()["trusted"]
    obs_log = await cluster.reader(observer)
    assert await obs_log.count(newcomer.hub) == 0

    # The second vouch: now the observer fetches the newcomer's whole chain.
    await (await cluster.writer(b)).append("hub.admitted", admission)
    await cluster.wait_converged([a, b, observer, newcomer], {a: 3, b: 3, newcomer: 3})
    (vouch,) = await obs_log.events(hub=b.hub, kind="hub.admitted")
    first = (await obs_log.events(hub=newcomer.hub, limit=1))[0]
    assert first.pos > vouch.pos, "stored only after the second vouch"
    status = await wait_until(
        lambda: (s := obs_node.current_status())["trusted"].get(newcomer.config.hub_id) and s,
        5,
        "the observer's status to list the newcomer",
    )
    assert status["trusted"][newcomer.config.hub_id] == "admitted"
    assert status["admitted_by"][newcomer.config.hub_id] == sorted(
        [a.config.hub_id, b.config.hub_id]
    )


async def test_a_forged_claim_of_a_hubs_own_later_events_does_not_stop_its_appends(
    cluster: Cluster,
) -> None:
    # Heads are unsigned: a claim that peers hold this hub's events beyond its log (as
    # after a restore from an old backup) is only believed once such a record arrives.
    a, b, c = await honest_trio(cluster)
    node = cluster.node(a)
    async with rogue(cluster.url) as nc:
        await publish_heads(nc, b.hub, {a.hub: (10**6, b"\1" * 32)})
    await wait_until(
        lambda: "announces this hub's own events up to seq 1000000" in node.tail(),
        10,
        "a to hear the claim",
        cluster.logs,
    )
    code, _, err = await hubnode(
        "log",
        "append",
        "--data",
        str(a.path),
        "--kind",
        "hub.profile_updated",
        "--json",
        '{"area": "still appending"}',
    )
    assert code == 0, err
    await cluster.append(a, 1)
    await cluster.wait_converged([a, b, c], {a: 5, b: 3, c: 3})
