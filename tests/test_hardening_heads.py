"""Issue 12 item 8: heads announcements are unsigned, so what they claim must not mislead.

Any NATS client can publish ``[sender, {hub: [seq, id]}]`` on ``hubnode.NET.heads`` in a
trusted hub's name. Before the fix such a message made the console say "Hub B is
18446744074709531390 events behind this hub" (a number nobody can lack, said backwards:
it is what *this* hub lacks), and it kept a stopped hub "last seen". Now the number is
capped and flagged, the words say which hub lacks what, and "last seen running" moves
only on a record signed by that hub; a heads message moves only "last heard from".
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hubnode.cli import app
from hubnode.console import reading
from hubnode.console.staff import StaffStore
from hubnode.console.web import when
from hubnode.events.ids import hub_display
from hubnode.node import status_path
from hubnode.protocol import messages as m
from hubnode.protocol.sync import (
    LAG_CAP,
    Fetch,
    FetchState,
    SyncCore,
    SyncLimits,
    bounded_lag,
    events_lacking,
)
from hubnode.protocol.transport import Gossip
from hubnode.store.log import Status
from hubnode.trust import TrustSet
from tests.test_console import CHEAP, PASSWORD, Clock, Desk, Net, act, open_desk

from .cluster import Cluster, hubnode_json, wait_until
from .conftest import update
from .test_bad_peers import publish_heads, rogue
from .test_sync import HUBS, PEERS, Model, ops, run_op

ABSURD = 2**63 - 1
"""The highest seq an envelope may carry (and so a heads message): no log gets near it."""
FAKE_ID = b"\x01" * 32

OWN, H, X = b"o" * 32, b"h" * 32, b"x" * 32


# -- the wording ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lag", "absurd", "said"),
    [
        (1, False, "This hub lacks 1 event that Hub B holds."),
        (2, False, "This hub lacks 2 events that Hub B holds."),
        (999_999, False, "This hub lacks 999,999 events that Hub B holds."),
        (1_000_001, False, "This hub lacks 1,000,001 events that Hub B holds."),
        (12, True, "Hub B's announced head is implausible"),
    ],
)
def test_lag_is_said_as_what_this_hub_lacks(lag: int, absurd: bool, said: str) -> None:
    """Issue 12 item 8: lag is what this hub lacks; an implausible claim is not believed."""
    sentence = reading.lag_sentence("Hub B", lag, absurd)
    assert sentence.startswith(said)
    assert "behind this hub" not in sentence
    if absurd:
        assert "more than 1,000,000" in sentence and str(lag) not in sentence
    assert events_lacking(lag, absurd) == f"{lag:,} event{'' if lag == 1 else 's'}" + (
        " (and a claim of more than 1,000,000 more, not believed)" if absurd else ""
    )


def test_a_status_file_with_an_absurd_lag_is_flagged_when_read() -> None:
    """Issue 12 item 8: a lag no network could have is flagged on reading too."""
    assert bounded_lag(18446744074709531390, False) == (0, True)
    assert bounded_lag(7, False) == (7, False)
    assert bounded_lag(7, True) == (7, True)
    assert bounded_lag(None, False) == (None, False)
    assert bounded_lag("many", False) == (None, False)  # not a number: not shown


def test_a_claim_past_the_cap_is_flagged_per_hub_and_not_counted() -> None:
    """Issue 12 item 8: the cap is per hub: a node new to a large network, lacking millions
    of records over many hubs, shows its real lag; one absurd claim is flagged, not counted."""
    core = SyncCore(OWN)
    many = {bytes([i]) * 32: (LAG_CAP, FAKE_ID) for i in range(3)}
    core.on_peer_heads(X, many, 0.0)
    assert (core.lag(X), core.implausible(X)) == (3 * LAG_CAP, [])
    core.on_peer_heads(X, {**many, H: (ABSURD, FAKE_ID)}, 1.0)
    assert (core.lag(X), core.implausible(X)) == (3 * LAG_CAP, [H])


# -- the sync core ----------------------------------------------------------------------


def test_an_absurd_head_is_fetched_one_batch_at_a_time_and_dropped_when_its_holder_has_nothing():
    """Issue 12 item 8: the core never asks for 2^63 records, and stops asking once the
    claimant answers that it holds nothing past this node."""
    core = SyncCore(OWN)
    core.on_local_heads({H: (5, FAKE_ID)}, 0.0)
    (fetch,) = core.on_peer_heads(X, {H: (ABSURD, FAKE_ID)}, 1.0)
    assert fetch == Fetch(H, 6, core.limits.batch, X)
    assert (core.lag(X), core.implausible(X)) == (0, [H])
    assert core.on_empty(fetch, 1.1) == []
    assert (core.lag(X), core.implausible(X)) == (0, [])
    assert H not in core.peers[X].heads
    assert core.behind() == {}
    assert core.on_tick(1000.0) == []  # nothing left to ask for


def test_a_repeated_absurd_claim_is_asked_about_at_most_once_per_backoff():
    """Issue 12 item 8: a spoofer repeating the claim costs one request per holder backoff."""
    core = SyncCore(OWN)
    core.on_local_heads({H: (5, FAKE_ID)}, 0.0)
    asked: list[Fetch] = []
    now = 0.0
    while now < 300.0:  # announced ten times a second for five minutes
        asked += core.on_peer_heads(X, {H: (ABSURD, FAKE_ID)}, now)
        if core.state(H) is FetchState.FETCHING:
            asked += core.on_empty(asked[-1], now + 0.01)
        now += 0.1
    assert all(f == Fetch(H, 6, core.limits.batch, X) for f in asked)
    # 0.5, 1, 2, … 30 s, then every 30 s: about 16 requests, not 3000.
    assert len(asked) <= 20, len(asked)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(ops, st.tuples(st.just("empty"), st.integers(0, 7))), max_size=60),
    st.integers(1, 4),
    st.integers(1, 20),
)
def test_empty_answers_among_random_inputs_never_break_the_core(
    script: list[tuple[Any, ...]], max_in_flight: int, batch: int
) -> None:
    """Issue 12 item 8: with claims dropped on empty answers, the core still never raises,
    never exceeds its bounds and asks only peers whose standing claim covers the request."""
    model = Model(SyncCore(OWN, SyncLimits(batch=batch, max_in_flight=max_in_flight)))
    for op in script:
        if op[0] != "empty":
            run_op(model, op)
            continue
        fetch = model.pick(op[1]) or Fetch(HUBS[op[1] % len(HUBS)], 1, 3, PEERS[op[1] % 4])
        live = model.outstanding.get(fetch.hub, (None,))[0] == fetch
        model.settle(fetch)
        model.take(model.core.on_empty(fetch, model.now))
        view = model.core.peers.get(fetch.peer)
        if live and view is not None:  # the answer withdrew the peer's claim from ``start``
            assert view.heads.get(fetch.hub, (0, b""))[0] < fetch.start


# -- one node in this process: the adapter, the status file, the console, the CLI --------


@pytest.fixture
def desk(net: Net) -> Iterator[Desk]:
    """Hub a's console, its worker signed in."""
    for desk in open_desk(net.a, Clock()):
        yield desk.signed_in("a worker")


@dataclass
class _Msg:
    """What a subscription hands the adapter: the payload (no reply subject)."""

    data: bytes
    subject: str = m.subject("test-net", "heads")
    reply: str = ""


def warnings_in(page: str) -> list[str]:
    """The warnings at the top of a page, for assertion messages."""
    return re.findall(r'<div class="warning" role="alert">(.*?)</div>', page, re.S)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def spoofed_status(net: Net) -> dict[str, Any]:
    """Hub a's node receives a new record signed by b at t=100, then (b stopped) heads in
    b's name at t=200 claiming seq 2^63-1 of b and of c; the status it writes, at t=300."""

    async def new_record(cw: Any) -> bytes:
        await cw.log.append("hub.profile_updated", update(5))
        head = await cw.log.head(cw.log.hub)
        (raw,) = await cw.log.records(cw.log.hub, head.seq, limit=1, max_bytes=1 << 20)
        return bytes(raw)

    raw = act(net.b, new_record)

    async def run() -> dict[str, Any]:
        clock = FakeClock()
        async with await net.a.open_log() as log:
            gossip = Gossip(log, TrustSet(net.a.hub, [net.b.hub, net.c.hub]), clock=clock)
            gossip.heads = {h: (v.seq, v.id) for h, v in (await log.heads()).items()}
            gossip.core.on_local_heads(gossip.heads, clock.now)
            (outcome,) = await gossip.ingest([raw], source=net.b.hub)
            assert (outcome.hub, outcome.status) == (net.b.hub, Status.ACCEPTED)
            clock.now = 200.0
            spoof = m.HeadsMessage(
                net.b.hub, {net.b.hub: (ABSURD, FAKE_ID), net.c.hub: (ABSURD, FAKE_ID)}
            )
            await gossip._on_heads(_Msg(m.encoder.encode(spoof)))  # as the subscription would
            clock.now = 300.0
            status = gossip.status()
            await gossip.stop()
        return status

    status = asyncio.run(run())
    status.update({"running": True, "updated_at": time.time(), "pid": os.getpid()})
    path = status_path(net.a)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(status))
    return status


def test_claims_of_this_hubs_own_events_raised_one_by_one_warn_once(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12 item 8: a spoofer raising its claim of this hub's own head one seq at a time
    gets one warning in the node's log, not one per message."""

    async def run() -> None:
        async with await net.a.open_log() as log:
            gossip = Gossip(log, TrustSet(net.a.hub, [net.b.hub]), clock=FakeClock())
            for seq in range(10, 60):
                spoof = m.HeadsMessage(net.b.hub, {net.a.hub: (seq, FAKE_ID)})
                await gossip._on_heads(_Msg(m.encoder.encode(spoof)))
            await gossip.stop()

    with caplog.at_level("WARNING", logger="hubnode"):
        asyncio.run(run())
    said = [r for r in caplog.records if "announces this hub's own events" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]


def test_a_spoofed_absurd_head_is_capped_flagged_and_moves_only_last_heard(
    net: Net, desk: Desk
) -> None:
    """Issue 12 item 8: heads spoofed in a stopped hub's name, claiming 2^63-1 events."""
    status = spoofed_status(net)
    b = status["peers"][hub_display(net.b.hub)]
    today = desk.get("/").text
    assert "behind this hub" not in today and "18446744" not in today, warnings_in(today)
    assert "Hub B&#39;s announced head is implausible" in today
    assert "more than 1,000,000" in today

    assert b["heads"][hub_display(net.b.hub)] == ABSURD  # what was announced, as announced
    assert (b["lag"], b["lag_claim_absurd"]) == (0, True)
    # Heard at t=200; the record arrived at t=100, signed by b moments before.
    assert 100.0 <= b["last_heard"] - b["last_record"] < 105.0
    assert "last_seen" not in b

    network = desk.get("/network").text
    assert "0 events (and a claim of more than 1,000,000 more, not believed)" in network
    assert f"<dt>Last seen running</dt><dd>{when(int(b['last_record'] * 1000))}</dd>" in network
    assert f"<dt>Last heard from</dt><dd>{when(int(b['last_heard'] * 1000))}</dd>" in network

    runner = CliRunner(env={"HUBNODE_DATA": None, "COLUMNS": "250", "NO_COLOR": "1"})
    shown = runner.invoke(app, ["status", "--data", str(net.a.path)])
    assert shown.exit_code == 0, shown.output
    assert "last seen running" in shown.output and "last heard from" in shown.output
    assert "0 events (and a claim of more than 1,000,000 more, not believed)" in shown.output
    assert str(ABSURD) not in shown.output
    listed = runner.invoke(app, ["peers", "list", "--data", str(net.a.path), "--json"])
    assert listed.exit_code == 0, listed.output
    row = next(r for r in json.loads(listed.output) if r["id"] == hub_display(net.b.hub))
    assert (row["lag"], row["lag_claim_absurd"]) == (0, True)
    assert (row["last_record"], row["last_heard"]) == (b["last_record"], b["last_heard"])


def test_heads_alone_give_last_heard_and_no_last_seen_running(net: Net) -> None:
    """Issue 12 item 8: a hub known only from heads was never seen running (this run)."""

    async def run() -> dict[str, Any]:
        async with await net.a.open_log() as log:
            gossip = Gossip(log, TrustSet(net.a.hub, [net.c.hub]))
            message = m.HeadsMessage(net.c.hub, {net.c.hub: (1, FAKE_ID)})
            await gossip._on_heads(_Msg(m.encoder.encode(message)))
            status = gossip.status()
            await gossip.stop()
        return status

    c = asyncio.run(run())["peers"][hub_display(net.c.hub)]
    assert c["last_record"] is None and c["last_heard"] is not None


class EmptyHandedPeer:
    """The NATS connection as far as fetching goes: every holder answers "nothing"."""

    max_payload = 1 << 20

    def __init__(self) -> None:
        self.asked: list[m.SyncRequest] = []

    async def request(self, subject: str, payload: bytes, **_: Any) -> _Msg:
        self.asked.append(m.request_decoder.decode(payload))
        return _Msg(m.encoder.encode([]), subject)


def test_a_claim_its_sender_cannot_back_is_dropped_by_the_adapter(net: Net) -> None:
    """Issue 12 item 8: heads in running c's name claim 2^63-1 of c; asked, c has none
    past what this node holds, so the claim (and the absurd lag) goes at once."""

    async def run() -> tuple[dict[str, Any], list[m.SyncRequest], int]:
        async with await net.a.open_log() as log:
            gossip = Gossip(log, TrustSet(net.a.hub, [net.c.hub]))
            gossip.heads = {h: (v.seq, v.id) for h, v in (await log.heads()).items()}
            gossip.core.on_local_heads(gossip.heads, 0.0)
            nc = EmptyHandedPeer()
            gossip._nc = nc  # type: ignore[assignment]
            spoof = m.HeadsMessage(net.c.hub, {net.c.hub: (ABSURD, FAKE_ID)})
            await gossip._on_heads(_Msg(m.encoder.encode(spoof)))
            while gossip._tasks:
                await asyncio.wait(list(gossip._tasks))
            status = gossip.status()
            gossip._nc = None
            await gossip.stop()
        return status, nc.asked, gossip.heads[net.c.hub][0]

    status, asked, held = asyncio.run(run())
    assert [(r.hub, r.start, r.peer) for r in asked] == [(net.c.hub, held + 1, net.c.hub)]
    assert asked[0].limit <= 500  # one batch, whatever the claim
    c = status["peers"][hub_display(net.c.hub)]
    assert (c["lag"], c["lag_claim_absurd"]) == (0, False)


# -- real nodes on a real nats-server ---------------------------------------------------


@pytest.mark.timeout(60)
async def test_spoofed_heads_for_a_stopped_hub_do_not_make_it_seen_running(
    cluster: Cluster,
) -> None:
    """Issue 12 item 8: a plain NATS client claims, in stopped b's name, 2^63-1 events of
    b and of running c; a's node and console must neither believe the number nor call b
    running."""
    await cluster.start_server()
    a, b, c = cluster.hubs("a", "b", "c")
    with StaffStore.open(a.path) as store:
        store.add("a worker", "worker", PASSWORD, CHEAP)
    for folder in (a, b, c):
        await cluster.append(folder, 2)
    for folder in (a, b, c):
        await cluster.start(folder)
    await cluster.wait_converged([a, b, c], {a: 2, b: 2, c: 2})
    node = cluster.node(a)
    peer = b.config.hub_id

    def seen_b() -> Any:
        return (node.current_status().get("peers", {}).get(peer) or {}).get("last_record")

    await wait_until(seen_b, 10, "a to have received b's events", cluster.logs)
    await cluster.stop(b)
    stopped = time.time()
    held = await cluster.seqs(a)

    async with rogue(cluster.url) as nc:
        await publish_heads(nc, b.hub, {b.hub: (ABSURD, FAKE_ID), c.hub: (ABSURD, FAKE_ID)})

    def heard() -> Any:
        seen = node.current_status().get("peers", {}).get(peer) or {}
        return seen if seen.get("heads", {}).get(peer) == ABSURD else None

    await wait_until(heard, 10, "a to hear the spoofed heads", cluster.logs)
    for desk in open_desk(a, Clock()):
        today = desk.signed_in("a worker").get("/").text
        assert "behind this hub" not in today and "18446744" not in today, warnings_in(today)
        assert "b&#39;s announced head is implausible" in today

    status = await hubnode_json("status", "--data", str(a.path))
    shown = status["peers"][peer]
    assert (shown["lag"], shown["lag_claim_absurd"]) == (0, True), shown
    assert shown["last_record"] < stopped < shown["last_heard"], shown
    assert await cluster.seqs(a) == held  # nothing stored from a claim
