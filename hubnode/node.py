"""One hub's node: its log, trust set, NATS server (embedded or not) and gossip (DESIGN §1).

``hubnode run`` builds a :class:`Node` and runs it until told to stop. While it runs it
writes ``run/status.json`` in the data folder (atomically, about once a second) so that
``hubnode status`` and ``hubnode peers list`` — separate processes — can show what it sees,
including what keeps it from working (``failing``: NATS unreachable, the log not writable,
the views damaged). A stop request is honoured in every state, even before NATS ever
answered: ``run`` races the start against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sqlite3
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from hubnode.config import EMBEDDED, HubFolder, check_nats_url, shown_url
from hubnode.errors import ConfigError, HubnodeError, StorageError
from hubnode.events.ids import hub_display, parse_hub
from hubnode.privacy.keyring import Keyring, catch_up_keys, check_log
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
STALE_AFTER: Final = 10.0
"""Seconds after which a status file a live node has not updated is stale."""
NATS_GRACE: Final = 5.0
"""Seconds without a NATS connection before the node reports itself failing (a server
restart, or the first connection at start, takes less)."""


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


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (``os.kill(pid, 0)`` sends nothing)."""
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True  # another user's process: it exists
    except (OSError, OverflowError, ValueError):
        return False
    return True


def node_state(status: dict[str, Any] | None, now: float) -> tuple[str, dict[str, str]]:
    """What a status file says of its node: ``(state, failing)``.

    ``state`` is ``"running"``, ``"failing"`` (running, but ``failing`` says what does not
    work), ``"stale"`` (the process lives but has not updated its status: its disk may be
    full) or ``"not running"`` (stopped, killed, or never run).
    """
    if not status or not status.get("running"):
        return "not running", {}
    pid = status.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return "not running", {}
    updated = float(status.get("updated_at") or 0)
    if now - updated > STALE_AFTER:
        since = when(updated)
        return "stale", {"status": f"status file stale: not updated since {since}"}
    failing = status.get("failing") or {}
    return ("failing" if failing else "running"), dict(failing)


def when(ts: float) -> str:
    """A wall-clock time as status reports show it."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class _Stopping(Exception):
    """Raised in the projection worker thread between batches once the node stops."""


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
        self._start_failed = False
        self._stopping = False
        self._problems: dict[str, str] = {}
        """Failures the node met (views, keyring, status file), by area, until they clear."""

    async def start(self) -> None:
        """Check the files, open the log, start the server if embedded, connect and gossip.

        Raises ConfigError for a bad ``nats_url``, DamagedDatabase (a StorageError) for a
        damaged log or views database: both before anything is opened.
        """
        cfg = self.folder.config
        try:
            check_nats_url(self.nats_url)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        await self._check_files()
        self.log = await self.folder.open_log()
        self.keyring = Keyring.open(self.folder)
        # The keyring and the views (in the runner's constructor) check that the log is the
        # one they read before gossip stores anything: a checkpoint beyond a restored log's
        # end is sure to be seen now, and re-fetched events would soon reach it.
        await check_log(self.log, self.keyring)
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

    async def _check_files(self) -> None:
        """The start-up check of the log and the views, side by side, each bounded in time
        (``hubnode/store/health.py``): a damaged file stops the start with what to do."""
        try:  # a read-only folder fails later, in whichever file is opened first: say it here
            with tempfile.TemporaryFile(dir=self.folder.path):
                pass
        except OSError as e:
            raise StorageError(
                f"cannot write to the data folder {self.folder.path}: {e.strerror or e}; "
                "the node writes its log, views and status there"
            ) from e
        views = self.folder.path / VIEWS_FILE
        checks = await asyncio.gather(
            asyncio.to_thread(EventLog.check_file, self.folder.log_path),
            asyncio.to_thread(ProjectionRunner.check, views),
        )
        for path, found in zip((self.folder.log_path, views), checks, strict=True):
            if not found.complete:
                log.info(
                    "start-up check of %s stopped after %.1f s (a large file not in memory); "
                    "the rest was not checked",
                    path,
                    found.seconds,
                )

    async def stop(self) -> None:
        """Stop accepting, flush, close: gossip first, then status, log, server.

        Works on a node that started only in part (a start that failed, or one cancelled
        while it waited for NATS), and goes on past a step that fails: the embedded server
        is always stopped and the log always closed.
        """
        self._stopping = True
        for task in (self._status_task, self._projection_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self.gossip is not None:
            await self._step("leaving NATS", self.gossip.stop())
            self.write_status(running=False)
        if self._catching_up is not None:
            await asyncio.gather(self._catching_up, return_exceptions=True)
        for what, close in (("views", self.projections), ("keyring", self.keyring)):
            if close is not None:
                try:
                    close.close()
                except Exception as e:  # the next steps must still run
                    log.warning("closing the %s failed: %s", what, e)
        if self.log is not None:
            await self._step("closing the log", self.log.close())
        if self.server is not None:
            await self._step("stopping nats-server", self.server.stop())
        if self.log is not None and not self._start_failed:  # else its error alone says why
            log.info("stopped")

    @staticmethod
    async def _step(what: str, step: Awaitable[object]) -> None:
        try:
            await step
        except Exception as e:  # the next steps must still run
            log.warning("%s failed: %s", what, e)

    async def run(self, stop: asyncio.Event) -> None:
        """Start, serve the attachments until ``stop`` is set, stop.

        ``stop`` is honoured during the start too: a node waiting for a NATS server that
        never answers (or checking its files) stops at once.
        """
        starting = asyncio.ensure_future(self.start())
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # a start that failed raises here
                async with AsyncExitStack() as attached:
                    for attachment in self.attach:
                        await attached.enter_async_context(attachment(self))
                    await stopping
        finally:
            stopping.cancel()
            if not starting.done():
                log.info("stopping before the start finished")
                starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            self._start_failed = not starting.cancelled() and starting.exception() is not None
            await self.stop()

    def failing(self) -> dict[str, str]:
        """What keeps this node from working, by area (``nats``, ``log``, ``views``,
        ``keyring``, ``status``): ``hubnode status`` shows it as "running but failing"."""
        out: dict[str, str] = {}
        gossip = self.gossip
        if (
            gossip is not None
            and not gossip.connected
            and time.time() - gossip.connected_changed > NATS_GRACE
        ):
            url = gossip.nats_url or shown_url(self.nats_url)
            out["nats"] = f"not connected to NATS at {url} since {when(gossip.connected_changed)}"
        if self.log is not None and self.log.write_failure:
            out["log"] = self.log.write_failure
        out.update(self._problems)
        return out

    def _problem(self, area: str, reason: str | None) -> None:
        """Note (or clear, with None) a failure in ``area``, logging each change once."""
        before = self._problems.get(area)
        if reason == before:
            return
        if reason is None:
            del self._problems[area]
            log.info("%s: working again", area)
        else:
            self._problems[area] = reason
            log.warning("%s: %s", area, reason)

    async def _projection_loop(self) -> None:
        """Keep projections and the keyring up to date: after each store, and every 0.5 s."""
        assert self.log is not None and self.projections is not None
        runner, log_ = self.projections, self.log
        while True:
            # Listen before catching up: an event stored while catch_up runs must wake the
            # next round at once, not wait for the poll.
            changed = asyncio.ensure_future(log_.wait_changed())
            # Shielded: a stop must let the worker thread finish before closing its database;
            # it stops between two batches once the node stops.
            self._catching_up = asyncio.ensure_future(
                asyncio.to_thread(runner.catch_up, progress=self._unless_stopping)
            )
            try:
                await asyncio.shield(self._catching_up)
            except _Stopping:
                return
            except HubnodeError as e:  # damaged views, a full disk: StorageError says which
                self._problem("views", str(e))
            except Exception as e:  # a bug: keep the node (and its other views) going
                self._problem("views", f"{type(e).__name__}: {e}")
            else:
                self._problem("views", None)
            await self._keys()
            try:
                await asyncio.wait([changed], timeout=PROJECTION_POLL)
            finally:
                changed.cancel()

    def _unless_stopping(self, _applied: int) -> None:
        if self._stopping:
            raise _Stopping

    async def _keys(self) -> None:
        """Open key boxes sealed to this hub, honour erasures, publish the seal key."""
        assert self.log is not None and self.keyring is not None
        try:
            done = await catch_up_keys(self.log, self.keyring)
        except HubnodeError as e:  # e.g. BehindPeers after a restore: retried next round
            log.warning("keyring: %s", e)
            return
        except (sqlite3.Error, OSError) as e:  # keys/keyring.sqlite3 on a full disk, say
            self._problem("keyring", f"cannot update the keyring: {e}")
            return
        self._problem("keyring", None)
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
        """Write ``run/status.json``. If it cannot be written (a full or read-only disk),
        the last one written stays, the failure is logged once, and the node goes on:
        ``hubnode status`` then sees it stale while the process lives."""
        assert self.gossip is not None
        status = self.gossip.status()
        failing = self.failing()
        failing.pop("status", None)  # true of the last attempt, not of this file if written
        status.update(
            {
                "hub": hub_display(self.folder.hub),
                "name": self.folder.config.name,
                "network": self.folder.config.network,
                "running": running,
                "pid": os.getpid(),
                "started_at": self.started_at,
                "updated_at": time.time(),
                "failing": failing,
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
        tmp = path.with_suffix(".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(status, indent=1))
            os.replace(tmp, path)
        except OSError as e:
            self._problem("status", f"cannot write {path.parent}: {e.strerror or e}")
        else:
            self._problem("status", None)


STOP_DEADLINE: Final = 4.5
"""Seconds a stop may take before ``hubnode run`` cuts it short (SIGTERM and Ctrl-C end
the node within 5 s in any state). Nothing is lost: every commit is already durable."""


class StopDeadline:
    """SIGINT and SIGTERM set ``stop``; ``STOP_DEADLINE`` seconds later, from a daemon
    thread, the process exits whatever is still running.

    Once the node has stopped (``stopped`` set) what can still hold the process is a
    blocking call in a worker thread that the interpreter waits for at exit: a DNS lookup
    of a NATS host, stuck on an unreachable DNS server, lasts as long as the resolver's
    timeout. The process then exits 0. If the node itself did not stop in time (a stuck
    step), it stops the embedded nats-server and exits 1, saying so.
    """

    def __init__(self, stop: asyncio.Event, server_pid: Callable[[], int | None]) -> None:
        self.stop = stop
        self.server_pid = server_pid
        self.stopped = threading.Event()

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._requested)

    def _requested(self) -> None:
        if self.stop.is_set():
            return
        self.stop.set()
        deadline = threading.Timer(STOP_DEADLINE, self._exit_now)
        deadline.daemon = True
        deadline.start()

    def _exit_now(self) -> None:
        if self.stopped.is_set():
            log.info("not waiting for a blocked lookup (DNS?) to end")
            os._exit(0)
        log.error(
            "did not stop within %.1f s; exiting now (nothing written is lost)", STOP_DEADLINE
        )
        pid = self.server_pid()
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        os._exit(1)
