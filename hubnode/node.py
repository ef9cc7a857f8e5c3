"""One hub's node: its log, trust set, NATS server (embedded or not) and gossip (DESIGN §1).

``hubnode run`` builds a :class:`Node` and runs it until told to stop. While it runs it
writes ``run/status.json`` in the data folder (atomically, about once a second) so that
``hubnode status`` and ``hubnode peers list`` — separate processes — can show what it sees.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Any, Final

from hubnode.config import EMBEDDED, HubFolder
from hubnode.errors import HubnodeError
from hubnode.events.ids import hub_display, parse_hub
from hubnode.privacy.keyring import Keyring, catch_up_keys
from hubnode.projections import ProjectionRunner, installed_projections
from hubnode.protocol.natsd import EmbeddedServer
from hubnode.protocol.transport import Gossip
from hubnode.store.chain import now_ms
from hubnode.store.intake import DailyIntake, alert_since, megabytes
from hubnode.store.log import EventLog
from hubnode.trust import TrustSet

log = logging.getLogger("hubnode.node")

RUN_DIR: Final = "run"
STATUS_FILE: Final = "status.json"
STATUS_EVERY: Final = 1.0
VIEWS_FILE: Final = "views.sqlite3"
PROJECTION_POLL: Final = 0.5
"""Seconds between checks for events stored by another process (in-process ones wake it)."""


Attachment = Callable[["Node"], AbstractAsyncContextManager[object]]
"""Something served beside a running node over its log and keyring (the staff console):
entered once the node has started, left before it stops."""


def status_path(folder: HubFolder) -> Path:
    return folder.path / RUN_DIR / STATUS_FILE


def read_status(folder: HubFolder) -> dict[str, Any] | None:
    """The status a running (or last) node wrote, or None if there is none."""
    try:
        data: dict[str, Any] = json.loads(status_path(folder).read_text())
    except (OSError, ValueError):
        return None
    return data


def projection_runner(folder: HubFolder) -> ProjectionRunner:
    """The runner of every installed projection over this hub's log and views database."""
    return ProjectionRunner(folder.log_path, folder.path / VIEWS_FILE, installed_projections())


def trust_set(folder: HubFolder) -> TrustSet:
    cfg = folder.config
    return TrustSet(folder.hub, (parse_hub(t.id) for t in cfg.trust), cfg.admit_threshold)


class Node:
    """A hub's running node. ``await node.start()``, then ``await node.stop()``."""

    def __init__(
        self,
        folder: HubFolder,
        *,
        nats_url: str | None = None,
        attach: Sequence[Attachment] = (),
    ) -> None:
        self.folder = folder
        self.attach = tuple(attach)
        self.nats_url = nats_url or folder.config.nats_url
        self.log: EventLog | None = None
        self.gossip: Gossip | None = None
        self.server: EmbeddedServer | None = None
        self._status_task: asyncio.Task[None] | None = None
        self._projection_task: asyncio.Task[None] | None = None
        self.projections: ProjectionRunner | None = None
        self._catching_up: asyncio.Future[int] | None = None
        self.keyring: Keyring | None = None
        self.started_at = time.time()
        self.over_budget: list[DailyIntake] = []
        """Other hubs that sent more than the storage budget today or yesterday."""
        self._budget_warned: set[tuple[bytes, str]] = set()

    async def start(self) -> None:
        cfg = self.folder.config
        self.log = await self.folder.open_log()
        self.keyring = Keyring.open(self.folder)
        self.projections = projection_runner(self.folder)
        self._projection_task = asyncio.create_task(self._projection_loop())
        url = self.nats_url
        if url == EMBEDDED:
            self.server = EmbeddedServer(
                self.folder.path / RUN_DIR / "nats",
                cfg.embedded,
                server_name=f"hubnode-{hub_display(self.folder.hub)[4:20]}",
                cluster_name=f"hubnode-{cfg.network}",
            )
            url = await self.server.start()
            log.info("embedded nats-server listening at %s", url)
        self.gossip = Gossip(self.log, trust_set(self.folder), heads_interval=cfg.heads_interval)
        # Status first: while the node retries an unreachable (or refusing) server,
        # `hubnode status` shows it running and not connected.
        self._status_task = asyncio.create_task(self._status_loop())
        await self.gossip.start(url)
        log.info(
            "hub %s (%s) on network %r: connected to %s, %d trusted hubs",
            cfg.name,
            hub_display(self.folder.hub),
            cfg.network,
            self.gossip.nats_url,
            len(self.gossip.trust),
        )

    async def stop(self) -> None:
        """Stop accepting, flush, close: gossip first, then status, log, server."""
        for task in (self._status_task, self._projection_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.gossip is not None:
            await self.gossip.stop()
            self.write_status(running=False)
        if self._catching_up is not None:
            await asyncio.gather(self._catching_up, return_exceptions=True)
        if self.projections is not None:
            self.projections.close()
        if self.keyring is not None:
            self.keyring.close()
        if self.log is not None:
            await self.log.close()
        if self.server is not None:
            await self.server.stop()
        log.info("stopped")

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            async with AsyncExitStack() as attached:
                for attachment in self.attach:
                    await attached.enter_async_context(attachment(self))
                await stop.wait()
        finally:
            await self.stop()

    async def _projection_loop(self) -> None:
        """Keep projections and the keyring up to date: after each store, and every 0.5 s."""
        assert self.log is not None and self.projections is not None
        runner, log_ = self.projections, self.log
        while True:
            # Listen before catching up: an event stored while catch_up runs must wake the
            # next round at once, not wait for the poll.
            changed = asyncio.ensure_future(log_.wait_changed())
            # Shielded: a stop must let the worker thread finish before closing its database.
            self._catching_up = asyncio.ensure_future(asyncio.to_thread(runner.catch_up))
            try:
                await asyncio.shield(self._catching_up)
            except HubnodeError as e:
                log.warning("projections: %s", e)
            await self._keys()
            try:
                await asyncio.wait([changed], timeout=PROJECTION_POLL)
            finally:
                changed.cancel()

    async def _keys(self) -> None:
        """Open key boxes sealed to this hub, honour erasures, publish the seal key."""
        assert self.log is not None and self.keyring is not None
        try:
            done = await catch_up_keys(self.log, self.keyring)
        except HubnodeError as e:  # e.g. BehindPeers after a restore: retried next round
            log.warning("keyring: %s", e)
            return
        for owner, subject in done.erased:
            log.info("erased subject %s of %s: key destroyed", subject, hub_display(owner))
        if done.rotated:
            log.info("seal key rotated after an erasure; new key published")
        if done.unreadable:
            log.warning("%d key boxes sealed to this hub could not be opened", done.unreadable)

    async def _status_loop(self) -> None:
        while True:
            await self._check_budget()
            self.write_status(running=True)
            await asyncio.sleep(STATUS_EVERY)  # the status file's refresh period

    async def _check_budget(self) -> None:
        """Find the hubs over the storage budget; log a warning once per hub and day."""
        assert self.log is not None
        budget = self.folder.config.storage_budget_bytes
        try:
            self.over_budget = await self.log.over_budget(
                budget, since=alert_since(now_ms()), other_than=self.folder.hub
            )
        except sqlite3.Error as e:  # keep the last answer: the status must still be written
            log.warning("cannot read the storage budget's counts: %s", e)
            return
        for row in self.over_budget:
            if (row.hub, row.day) not in self._budget_warned:
                self._budget_warned.add((row.hub, row.day))
                log.warning(
                    "%s sent %s on %s, over this hub's storage budget of %s a day "
                    "(storage_budget_mb_per_day); nothing is dropped: check with its operator",
                    hub_display(row.hub),
                    megabytes(row.bytes),
                    row.day,
                    megabytes(budget),
                )

    def write_status(self, *, running: bool) -> None:
        assert self.gossip is not None
        status = self.gossip.status()
        status.update(
            {
                "hub": hub_display(self.folder.hub),
                "name": self.folder.config.name,
                "network": self.folder.config.network,
                "running": running,
                "pid": os.getpid(),
                "started_at": self.started_at,
                "updated_at": time.time(),
                "trusted": {
                    hub_display(h): self.gossip.trust.why(h) for h in self.gossip.trust.members
                },
                "admitted_by": {
                    hub_display(h): sorted(hub_display(a) for a in self.gossip.trust.admitters(h))
                    for h in self.gossip.trust.members
                    if self.gossip.trust.admitters(h)
                },
                "over_budget": [
                    row.as_json(self.folder.config.storage_budget_bytes) for row in self.over_budget
                ],
                # Records found damaged while serving (each logged once): not served.
                "bad_records": [bad.as_json() for bad in self.gossip.log.damage],
            }
        )
        path = status_path(self.folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, indent=1))
        os.replace(tmp, path)
