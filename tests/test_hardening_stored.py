"""Issue 12, items 1 and 5 after an upgrade: a record a log stored under looser rules, whose
body this hubnode no longer accepts, stops nothing but what must stop.

A node attacked before the fix holds a trusted hub's ``hub.admitted`` naming the identity
point (item 1): its body fails today's schema. Reading the log must not crash the node:
the admission is not counted (and said once in the log), and the network view stops at
that record with the record named, while every other view goes on.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hubnode import EventLog, SigningKey, Status
from hubnode.events.ids import hub_display
from hubnode.events.kinds import KINDS, Body, KindRegistry
from hubnode.events.network import HubRegistered
from hubnode.projections import ProjectionRunner, installed_projections
from hubnode.testing import ChainWriter
from hubnode.trust import TrustSet, fold_admissions

from .conftest import NET, registered

IDENTITY = hub_display(bytes([1]) + bytes(31))
"""The identity point: a small-order key (refused since item 1)."""
OWNER = SigningKey.generate()
"""The hub whose log it is."""


class LooseAdmitted(Body, frozen=True, kw_only=True):
    """``hub.admitted`` as it was read before item 1: any hub id."""

    hub: str
    name: str | None = None
    note: str = ""


class OldRules(KindRegistry):
    """The kinds as a hubnode before item 1 read them."""

    def __init__(self) -> None:
        super().__init__()
        for spec in KINDS:
            body = LooseAdmitted if spec.kind == "hub.admitted" else spec.body
            self.register(spec.kind, body, version=spec.version, upcasters=spec.upcasters)


def stored_before_the_fix(tmp_path: Path) -> tuple[Path, ChainWriter, ChainWriter]:
    """A log holding hub b's admission of the identity point, stored by an old node, then
    a profile update of b and a registration of c after it."""
    b, c = ChainWriter(NET), ChainWriter(NET)
    encode = msgspec.msgpack.encode
    records = [
        b.next("hub.registered", registered("Hub B")),
        b.next("hub.admitted", encode({"hub": IDENTITY, "note": "vouched"})),
        b.next("hub.profile_updated", encode({"area": "Darlington and Durham"})),
        c.next("hub.registered", registered("Hub C")),
    ]
    path = tmp_path / "log.sqlite3"

    async def store() -> None:
        log = await EventLog.open(path, net=NET, key=OWNER, registry=OldRules())
        try:
            outcomes = await log.ingest(records)
            assert [o.status for o in outcomes] == [Status.ACCEPTED] * 4, outcomes
        finally:
            await log.close()

    asyncio.run(store())
    return path, b, c


def test_reading_the_log_skips_a_stored_body_that_no_longer_decodes_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, b, c = stored_before_the_fix(tmp_path)

    async def read() -> tuple[list[Any], bool, TrustSet]:
        log = await EventLog.open(path, net=NET, key=OWNER)
        try:
            events = await log.events()
            await log.events()  # read twice: said once
            trust = TrustSet(log.hub, [b.hub])
            grew, _ = await fold_admissions(trust, log)
            return events, grew, trust
        finally:
            await log.close()

    with caplog.at_level(logging.WARNING, logger="hubnode"):
        events, grew, trust = asyncio.run(read())
    assert [(e.hub, e.seq) for e in events] == [(b.hub, 1), (b.hub, 3), (c.hub, 1)]
    assert not grew and bytes([1]) + bytes(31) not in trust
    said = [r.getMessage() for r in caplog.records if "no longer" in r.getMessage()]
    assert len(said) == 1, said
    assert hub_display(b.hub) in said[0] and "seq 2" in said[0] and "hub.admitted" in said[0]


def test_the_network_view_stops_at_it_naming_the_record_and_the_others_go_on(
    tmp_path: Path,
) -> None:
    path, b, _ = stored_before_the_fix(tmp_path)
    runner = ProjectionRunner(path, tmp_path / "views.sqlite3", installed_projections())
    try:
        runner.catch_up(parallel=False)
        status = {s.name: s for s in runner.status()}
        network = status["network"]
        assert network.status == "stopped"
        assert network.error_at is not None and f"{hub_display(b.hub)} seq 2" in network.error_at
        assert network.error is not None and "hub.admitted" in network.error
        assert all(s.status == "serving" for n, s in status.items() if n != "network"), status
        (name,) = runner.query("network", "SELECT name FROM {hubs} WHERE hub = ?", (b.hub,))
        assert name == ("Hub B",)  # what came before the record is kept
    finally:
        runner.close()


def test_a_loose_body_is_still_refused_at_ingest(tmp_path: Path) -> None:
    """The upgrade's rule holds for every record that arrives from now on."""
    b = ChainWriter(NET)
    records = [
        b.next("hub.registered", registered("Hub B")),
        b.next("hub.admitted", msgspec.msgpack.encode({"hub": IDENTITY})),
    ]

    async def ingest() -> list[Status]:
        log = await EventLog.open(tmp_path / "log.sqlite3", net=NET, key=SigningKey.generate())
        try:
            return [o.status for o in await log.ingest(records)]
        finally:
            await log.close()

    assert asyncio.run(ingest()) == [Status.ACCEPTED, Status.REJECTED]
    assert isinstance(KINDS.decode_body("hub.registered", msgspec.msgpack.encode(
        registered())), HubRegistered)  # fmt: skip
