"""Shared fixtures. Public test data lives beside the project in ../shared/fixtures/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hubnode import EventLog, HubFolder, SigningKey, Status
from hubnode.events.network import HubProfileUpdated, HubRegistered
from hubnode.projections import Projection, ProjectionRunner
from hubnode.testing import ChainWriter

if TYPE_CHECKING:
    from .cluster import Cluster
    from .test_console import Clock, Desk, Net

NET = "test-net"
SHARED_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


def shared_fixture(*parts: str) -> Path:
    """A file under ../shared/fixtures; fails (never skips) with a clear message if missing."""
    path = SHARED_FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.fail(
            f"public test data {path} is missing: the suite expects ../shared/fixtures/ "
            "beside the project checkout (see README, 'Tests')"
        )
    return path


def registered(name: str = "Hub", seal_key: bytes | None = None) -> HubRegistered:
    return HubRegistered(
        name=name,
        roles=("gateway",),
        area="Darlington",
        contact="hub@example.org",
        seal_key=seal_key,
    )


def update(n: int) -> HubProfileUpdated:
    return HubProfileUpdated(area=f"area {n}")


def chain(n: int, key: SigningKey | None = None, net: str = NET) -> tuple[ChainWriter, list[bytes]]:
    """A hub's first ``n`` records: hub.registered then profile updates."""
    writer = ChainWriter(net, key)
    records = [writer.next("hub.registered", registered())]
    records += [writer.next("hub.profile_updated", update(i)) for i in range(2, n + 1)]
    return writer, records


def build_view(
    tmp: Path, records: Sequence[bytes], projection: type[Projection]
) -> ProjectionRunner:
    """A log holding ``records`` (ingested one by one, in that order; each must be accepted)
    and a caught-up runner of ``projection`` over it."""

    async def fill() -> None:
        log = await EventLog.open(tmp / "log.sqlite3", net=NET, key=SigningKey.generate())
        try:
            for raw in records:
                (outcome,) = await log.ingest([raw])
                assert outcome.status is Status.ACCEPTED, outcome
        finally:
            await log.close()

    asyncio.run(fill())
    runner = ProjectionRunner(tmp / "log.sqlite3", tmp / "views.sqlite3", [projection])
    runner.catch_up()
    return runner


@pytest.fixture
async def log(tmp_path: Path) -> EventLog:
    """An empty log owned by a fresh hub key."""
    opened = await EventLog.open(tmp_path / "log.sqlite3", net=NET, key=SigningKey.generate())
    yield opened  # type: ignore[misc]
    await opened.close()


# -- three hubs and their staff consoles (tests/test_console.py builds them) -------------


@pytest.fixture(scope="session")
def made_net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Hubs a, b and c with their accounts, made once (keys, registrations); each test gets
    a copy (``net``)."""
    from .test_console import Net

    root = tmp_path_factory.mktemp("console-net")
    Net.create(root)
    return root


@pytest.fixture
def net(made_net: Path, tmp_path: Path) -> Net:
    from .test_console import copy_net

    return copy_net(made_net, tmp_path)


@pytest.fixture
def clock() -> Clock:
    from .test_console import Clock

    return Clock()


@pytest.fixture
def desks(net: Net, clock: Clock) -> Iterator[tuple[Desk, Desk]]:
    """The consoles of hubs a and b, nobody signed in."""
    from .test_console import open_desk

    for a in open_desk(net.a, clock):
        for b in open_desk(net.b, clock):
            yield a, b


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """Real nats-server and ``hubnode run`` processes; every node must exit 0 on SIGTERM."""
    from .cluster import Cluster  # the harness imports this module's helpers

    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        codes = await c.close()
    bad = {name: cs for name, cs in codes.items() if any(cs)}
    assert not bad, f"nodes did not exit 0 on SIGTERM: {bad}\n{c.logs()}"


def sync(src: Path, dst: Path) -> None:
    """Give hub folder ``dst`` every record ``src`` holds, as gossip would (outside a loop)."""

    async def copy_records() -> None:
        async with await HubFolder.open(src).open_log(with_key=False) as source:
            records = [raw async for raw in source.export_records()]
        async with await HubFolder.open(dst).open_log(with_key=False) as target:
            await target.ingest(records)

    asyncio.run(copy_records())
