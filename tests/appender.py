"""A child process that appends to a hub's log, and the harness that kills and checks it.

Run as a program (the tests start it with ``sys.executable``), it opens a hub data folder
and writes to its log in a loop, printing one line per event the log said is stored::

    python tests/appender.py DATA [--count N] [--seed S] [--lockstep]
    python tests/appender.py DATA --ingest SOURCE.hublog [--seed S]

Its output is ``start`` as it opens the log, ``ready HEAD_SEQ`` once the log is open, then
``SEQ ID_HEX`` per event, written with one unbuffered ``write`` after ``append`` (or
``ingest``) returned. A line the parent has read is therefore an event the log reported
durable: if it is ever missing after a crash, the log broke its promise. Appends mix
single calls with bursts of concurrent calls (``asyncio.gather``) so group commit is
exercised; ``--count 0`` (the default) appends until killed. With ``--lockstep`` the child
prints ``waiting`` before each burst and waits for a line on stdin, so a parent can
release several children's bursts at the same moment, round after round.

Imported (by ``tests/test_crash.py``, ``tests/test_multiprocess.py`` and
``bench/crash.py``), the module is the parent side: :class:`Child` drives one process with
bounded waits, :func:`check_folder` checks a data folder against what children reported,
and :func:`crash_loop` kills appenders at random moments and checks after each kill.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from hubnode.audit import audit_folder
from hubnode.config import HubFolder
from hubnode.events.envelope import decode_record, event_id
from hubnode.events.network import HubProfileUpdated
from hubnode.hublog import read_hublog
from hubnode.store.log import EventLog, Status

APPENDER: Final = Path(__file__).resolve()
BURST_MAX: Final = 24
"""Largest burst of concurrent appends; bursts are 2..BURST_MAX, singles about a third."""

LINE_TIMEOUT: Final = 15.0
"""Longest wait for a child's next line (start-up included) before the harness gives up."""

KILL_PLANS: Final = ("opening", "after ready", "early", "later")
"""Where crash rounds kill, in turn: as the child opens (or creates) the log, once it has
but before its first append returned, within its first bursts, or well into the loop."""


# -- the child ------------------------------------------------------------------------------


def _emit(line: str) -> None:
    # One write(2) per line, below PIPE_BUF: the parent never sees half a line.
    os.write(1, (line + "\n").encode())


async def _append_loop(folder: Path, count: int, rng: random.Random, lockstep: bool) -> None:
    _emit("start")
    async with await HubFolder.open(folder).open_log() as log:
        assert log.hub is not None
        head = await log.head(log.hub)
        _emit(f"ready {head.seq if head else 0}")
        tag = os.getpid()
        made = 0

        async def one() -> None:
            nonlocal made
            made += 1
            body = HubProfileUpdated(area=f"area {tag}-{made}")
            done = await log.append("hub.profile_updated", body)
            _emit(f"{done.seq} {done.id.hex()}")

        sent = 0
        while count == 0 or sent < count:
            size = 1 if rng.random() < 0.35 else rng.randint(2, BURST_MAX)
            if count:
                size = min(size, count - sent)
            if lockstep:
                _emit("waiting")
                sys.stdin.readline()
            if size == 1:
                await one()
            else:
                await asyncio.gather(*(one() for _ in range(size)))
            sent += size


async def _ingest_loop(folder: Path, source: Path, rng: random.Random) -> None:
    with open(source, "rb") as f:
        raws = [raw for _, raw in read_hublog(f)]
    hub = decode_record(raws[0])[1].hub
    _emit("start")
    async with await HubFolder.open(folder).open_log() as log:
        head = await log.head(hub)
        _emit(f"ready {head.seq if head else 0}")
        i = 0
        while i < len(raws):
            size = rng.randint(1, 64)
            for outcome in await log.ingest(raws[i : i + size]):
                if outcome.status is Status.ACCEPTED:
                    assert outcome.id is not None
                    _emit(f"{outcome.seq} {outcome.id.hex()}")
            i += size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--count", type=int, default=0, help="events to append; 0: until killed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lockstep", action="store_true", help="wait for stdin before bursts")
    parser.add_argument("--ingest", type=Path, help="ingest this .hublog instead of appending")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    if args.ingest is not None:
        asyncio.run(_ingest_loop(args.data, args.ingest, rng))
    else:
        asyncio.run(_append_loop(args.data, args.count, rng, args.lockstep))


# -- the parent side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Reported:
    """An event a child printed: the log had returned it as stored."""

    seq: int
    id: bytes


class ChildGone(Exception):
    """The child's output ended before what the harness waited for."""


class Child:
    """One child process. Every wait is bounded; leaving ``async with`` kills it."""

    def __init__(self, proc: asyncio.subprocess.Process, args: list[str]) -> None:
        self.proc = proc
        self.args = args
        self.started = False
        self.waiting = False
        self.ready_head: int | None = None
        self.reported: list[Reported] = []
        self.eof = False

    @classmethod
    async def start(
        cls,
        folder: Path,
        *,
        count: int = 0,
        seed: int = 0,
        lockstep: bool = False,
        ingest: Path | None = None,
    ) -> Self:
        args = [str(folder), "--count", str(count), "--seed", str(seed)]
        if lockstep:
            args.append("--lockstep")
        if ingest is not None:
            args += ["--ingest", str(ingest)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(APPENDER),
            *args,
            stdin=asyncio.subprocess.PIPE if lockstep else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc, args)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.kill()

    async def read_line(self) -> bool:
        """Read and record the next line; False once the output has ended."""
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), LINE_TIMEOUT)
        except TimeoutError:
            raise TimeoutError(
                f"appender {' '.join(self.args)} printed nothing for {LINE_TIMEOUT} s"
            ) from None
        if not line:
            self.eof = True
            return False
        word, *value = line.split()
        if word == b"start":
            self.started = True
        elif word == b"waiting":
            self.waiting = True
        elif word == b"ready":
            self.ready_head = int(value[0])
        else:
            self.reported.append(Reported(int(word), bytes.fromhex(value[0].decode())))
        return True

    async def wait_started(self) -> None:
        """Wait until the child has imported everything and is opening its log."""
        while not self.started:
            if not await self.read_line():
                raise ChildGone(f"appender exited before it started: {await self.stderr()}")

    async def wait_ready(self) -> int:
        """Wait for ``ready`` and return the head seq the child found."""
        while self.ready_head is None:
            if not await self.read_line():
                raise ChildGone(f"appender exited before it was ready: {await self.stderr()}")
        return self.ready_head

    async def read_until(self, n: int) -> None:
        """Read until the child has reported ``n`` events (or its output ends)."""
        while len(self.reported) < n and await self.read_line():
            pass

    async def wait_waiting(self) -> bool:
        """Wait until a lockstep child waits for its next burst; False if it has ended."""
        while not self.waiting:
            if not await self.read_line():
                return False
        return True

    def go(self) -> None:
        """Release a waiting lockstep child's next burst."""
        assert self.proc.stdin is not None
        self.waiting = False
        self.proc.stdin.write(b"go\n")

    async def finish(self) -> int:
        """Read to the end of the output and return the exit code."""
        while not self.eof:
            await self.read_line()
        return await asyncio.wait_for(self.proc.wait(), LINE_TIMEOUT)

    async def kill(self) -> None:
        """SIGKILL the child (if it still runs) and reap it."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it exited since the check
                self.proc.kill()
        await asyncio.wait_for(self.proc.wait(), LINE_TIMEOUT)

    async def stderr(self) -> str:
        """What the child wrote to stderr; call once it has exited."""
        assert self.proc.stderr is not None
        data = await asyncio.wait_for(self.proc.stderr.read(), LINE_TIMEOUT)
        return data.decode(errors="replace").strip() or "(no stderr)"


@dataclass
class FolderCheck:
    ids: list[bytes]
    """The hub's stored event ids, ``ids[seq - 1]``."""
    found: int
    """How many of the reported events are stored with the same seq and id."""
    problems: list[str]

    @property
    def head(self) -> int:
        return len(self.ids)


async def check_folder(folder: Path, hub: bytes, reported: Iterable[Reported]) -> FolderCheck:
    """Check ``hub``'s chain in ``folder`` and that every reported event is in it.

    The chain must run seq 1, 2, … with each ``prev`` the previous id, and the auditor
    must verify the whole log (signatures, links, bodies). Nothing is written.
    """
    hub_folder = HubFolder.open(folder)
    ids: list[bytes] = []
    problems: list[str] = []
    if hub_folder.log_path.exists():
        async with await EventLog.open(
            hub_folder.log_path, net=hub_folder.config.network, create=False
        ) as log:
            raws = await log.records(hub, 1, limit=1 << 62, max_bytes=1 << 62)
        for raw in raws:
            env = decode_record(raw)[1]
            expected_prev = ids[-1] if ids else None
            if env.seq != len(ids) + 1 or env.prev != expected_prev:
                problems.append(
                    f"chain broken at stored seq {env.seq}: expected seq {len(ids) + 1} "
                    f"linking to {expected_prev.hex()[:12] if expected_prev else None}"
                )
                break
            ids.append(event_id(raw))
        report = await audit_folder(folder)
        if not report.ok():
            shown = "; ".join(str(f) for f in report.failures[:3]) or report.format_error
            problems.append(f"audit failed ({report.failure_count} failures): {shown}")
        audited = report.hubs.get(hub)
        audited_head = audited.head_seq if audited is not None else 0
        if audited_head != len(ids) or (audited is not None and audited.events != len(ids)):
            problems.append(f"audit saw the hub at seq {audited_head}, the log at {len(ids)}")
    found = 0
    for r in reported:
        if r.seq > len(ids):
            problems.append(f"lost: event seq {r.seq} id {r.id.hex()[:12]} was reported stored")
        elif ids[r.seq - 1] != r.id:
            problems.append(
                f"replaced: seq {r.seq} was reported as {r.id.hex()[:12]} but "
                f"{ids[r.seq - 1].hex()[:12]} is stored"
            )
        else:
            found += 1
    return FolderCheck(ids, found, problems)


@dataclass
class Round:
    index: int
    plan: str
    kill_after: int
    """Events read before the kill; -1: killed as soon as the child began opening the log."""
    head_before: int
    reported: int
    head_after: int
    seconds: float

    @property
    def unreported(self) -> int:
        """Events stored but never reported: the kill fell between commit and print."""
        return self.head_after - self.head_before - self.reported


@dataclass
class CrashStats:
    seed: int
    rounds: list[Round] = field(default_factory=list)
    durable: int = 0
    """Events children reported stored, all rounds together."""
    found: int = 0
    """Of those, found with the same seq and id at the last check."""
    head: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.durable - self.found


def _kill_after(plan: str, rng: random.Random) -> int:
    match plan:
        case "opening":
            return -1
        case "after ready":
            return 0
        case "early":
            return rng.randint(1, 2 * BURST_MAX)
        case _:
            return rng.randint(2 * BURST_MAX + 1, 400)


async def crash_loop(
    folder: Path,
    rounds: int,
    seed: int,
    *,
    ingest: Path | None = None,
    finish_with: int = 25,
) -> CrashStats:
    """Kill a child appender (or ingester) ``rounds`` times and check after each kill.

    Checks: every event any child reported is stored with the same seq and id, the
    chain is gap-free and audits, each child continues at the next seq after the stored
    head, and a last child runs to completion (``finish_with`` appends, or the rest of
    the ``ingest`` source). Problems are collected in the result, not raised.
    """
    rng = random.Random(seed)
    stats = CrashStats(seed)
    if ingest is None:
        hub = HubFolder.open(folder).hub
    else:
        with open(ingest, "rb") as f:
            hub = decode_record(next(read_hublog(f))[1])[1].hub
    reported: list[Reported] = []
    head = 0
    started = time.perf_counter()

    async def run(index: int, plan: str, kill_after: int | None) -> bool:
        """One child; ``kill_after`` None runs it to completion. False: stop the loop."""
        nonlocal head
        t0 = time.perf_counter()
        when = {None: "never killed", -1: "killed as it opened the log"}.get(
            kill_after, f"killed after {kill_after} events"
        )
        where = f"round {index} ({plan}: {when})"
        child = await Child.start(
            folder,
            seed=rng.getrandbits(32),
            count=finish_with if kill_after is None and ingest is None else 0,
            ingest=ingest,
        )
        async with child:
            try:
                if kill_after == -1:
                    await child.wait_started()
                else:
                    ready = await child.wait_ready()
                    if ready != head:
                        stats.problems.append(f"{where}: child opened at seq {ready}, not {head}")
                if kill_after is None:
                    code = await child.finish()
                    if code != 0:
                        stats.problems.append(f"{where}: exit {code}: {await child.stderr()}")
                elif kill_after > 0:
                    await child.read_until(kill_after)
                    if child.eof and (ingest is None or await child.proc.wait() != 0):
                        stats.problems.append(f"{where}: child quit: {await child.stderr()}")
            except (TimeoutError, ChildGone) as e:
                await child.kill()
                stats.problems.append(f"{where}: {e}; stderr: {await child.stderr()}")
                return False
        new = child.reported
        seqs = [r.seq for r in new]
        if seqs != list(range(head + 1, head + 1 + len(new))):
            stats.problems.append(f"{where}: reported seqs {seqs[:5]}… do not follow {head}")
        reported.extend(new)
        check = await check_folder(folder, hub, reported)
        stats.problems += [f"{where}: {p}" for p in check.problems]
        stats.durable, stats.found = len(reported), check.found
        if kill_after is not None:
            stats.rounds.append(
                Round(
                    index,
                    plan,
                    kill_after,
                    head,
                    len(new),
                    check.head,
                    time.perf_counter() - t0,
                )
            )
        head = check.head
        return not check.problems

    for i in range(rounds):
        plan = KILL_PLANS[i % len(KILL_PLANS)]
        if not await run(i, plan, _kill_after(plan, rng)):
            break
    else:
        before = head
        finished = await run(rounds, "to completion", None)
        if finished and ingest is None and head != before + finish_with:
            stats.problems.append(f"last child appended {head - before}, not {finish_with}")
    stats.head = head
    stats.seconds = time.perf_counter() - started
    return stats


if __name__ == "__main__":
    main()
