"""Replaying signed logs as an auditor: every signature, chain link and seq (DESIGN §3).

The auditor trusts nothing but the bytes: any hub, any network (one per source). It
streams records in chunks, verifies each chunk's signatures on a thread pool while it
checks the previous chunk's chains, and keeps per hub only its head, so memory stays
flat however long the log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from hubnode.config import HubFolder
from hubnode.errors import InvalidEvent, Reason
from hubnode.events.envelope import MAX_RECORD_SIZE
from hubnode.events.ids import hub_display
from hubnode.events.kinds import KINDS, KindRegistry
from hubnode.events.verify import Verified, check_link, verify_record
from hubnode.hublog import HublogFormatError, read_hublog
from hubnode.store.log import EventLog

CHUNK: Final = 4096
MAX_FAILURES_KEPT: Final = 100


@dataclass
class HubReport:
    hub: bytes
    events: int = 0
    head_seq: int = 0
    head_id: bytes = b""
    forks: list[int] = field(default_factory=list)
    bad: int = 0
    """Records of this hub that failed, or that follow a failure and so cannot be checked."""

    @property
    def verified(self) -> bool:
        return self.bad == 0 and not self.forks


@dataclass(frozen=True)
class Failure:
    where: str
    """Byte offset in a file, or the record's position in a data folder's export."""
    reason: Reason
    detail: str
    hub: bytes | None = None
    seq: int | None = None

    def __str__(self) -> str:
        who = f"{hub_display(self.hub)} seq {self.seq}" if self.hub is not None else "record"
        return f"{who} at {self.where}: {self.reason.value}: {self.detail}"


@dataclass
class AuditReport:
    source: str
    records: int = 0
    hubs: dict[bytes, HubReport] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    failure_count: int = 0
    format_error: str | None = None
    """The file could not be read to its end (bad magic, truncated frame)."""

    @property
    def forks(self) -> int:
        return sum(len(h.forks) for h in self.hubs.values())

    def ok(self, allow_forks: bool = False) -> bool:
        return (
            self.failure_count == 0
            and self.format_error is None
            and (allow_forks or self.forks == 0)
        )


_Checked = tuple[Verified, InvalidEvent | None] | InvalidEvent


def _check_chunk(raws: Sequence[bytes], registry: KindRegistry) -> list[_Checked]:
    out: list[_Checked] = []
    for raw in raws:
        try:
            rec = verify_record(raw, max_size=MAX_RECORD_SIZE)
        except InvalidEvent as e:
            out.append(e)
            continue
        try:
            registry.check_body(rec.envelope.kind, rec.envelope.body)
        except InvalidEvent as e:
            out.append((rec, e))
        else:
            out.append((rec, None))
    return out


class Auditor:
    """Feed ``(where, raw)`` chunks in file order, then :meth:`finish` for the report."""

    def __init__(
        self,
        source: str,
        *,
        registry: KindRegistry = KINDS,
        workers: int = 2,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        self.report = AuditReport(source)
        self._registry = registry
        self._workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hubnode-audit")
        self._in_flight: tuple[list[str], list[Future[list[_Checked]]]] | None = None
        self._broken: set[bytes] = set()
        self._net: str | None = None
        self._on_progress = on_progress

    def feed(self, chunk: Sequence[tuple[str, bytes]]) -> None:
        """Start verifying ``chunk`` and finish checking the one before it."""
        wheres = [w for w, _ in chunk]
        raws = [r for _, r in chunk]
        step = max(1, -(-len(raws) // self._workers))
        futures = [
            self._pool.submit(_check_chunk, raws[i : i + step], self._registry)
            for i in range(0, len(raws), step)
        ]
        previous, self._in_flight = self._in_flight, (wheres, futures)
        if previous is not None:
            self._settle(*previous)

    def finish(self) -> AuditReport:
        if self._in_flight is not None:
            self._settle(*self._in_flight)
            self._in_flight = None
        self._pool.shutdown(wait=True)
        return self.report

    def _fail(self, failure: Failure) -> None:
        self.report.failure_count += 1
        if len(self.report.failures) < MAX_FAILURES_KEPT:
            self.report.failures.append(failure)

    def _settle(self, wheres: list[str], futures: list[Future[list[_Checked]]]) -> None:
        results = [r for f in futures for r in f.result()]
        for where, checked in zip(wheres, results, strict=True):
            self._check(where, checked)
        self.report.records += len(results)
        if self._on_progress is not None:
            self._on_progress(len(results))

    def _check(self, where: str, checked: _Checked) -> None:
        if isinstance(checked, InvalidEvent):
            self._fail(Failure(where, checked.reason, checked.detail, checked.hub, checked.seq))
            if checked.hub is not None:  # the claimed author's report must not say "verified"
                self.report.hubs.setdefault(checked.hub, HubReport(checked.hub)).bad += 1
            return
        rec, body_error = checked
        env = rec.envelope
        hub = self.report.hubs.get(env.hub)
        if hub is None:
            hub = self.report.hubs[env.hub] = HubReport(env.hub)

        def fail(reason: Reason, detail: str) -> None:
            hub.bad += 1
            self._fail(Failure(where, reason, detail, env.hub, env.seq))

        if self._net is None:
            self._net = env.net
        elif env.net != self._net:
            fail(Reason.WRONG_NETWORK, f"network {env.net!r} in a log of network {self._net!r}")
            return
        if env.hub in self._broken:
            hub.bad += 1  # its chain broke earlier: this record cannot be placed
            return
        if hub.events and env.seq == hub.head_seq:
            if rec.id == hub.head_id:
                fail(Reason.BAD_SEQ, f"the same event appears twice (seq {env.seq})")
            else:
                hub.forks.append(env.seq)  # a fork proof: both records validly signed
            return
        head = (hub.head_seq, hub.head_id) if hub.events else None
        try:
            check_link(env, head)
        except InvalidEvent as e:
            self._broken.add(env.hub)
            fail(e.reason, e.detail)
            return
        if body_error is not None:
            fail(body_error.reason, body_error.detail)  # the chain itself still holds
        hub.events += 1
        hub.head_seq = env.seq
        hub.head_id = rec.id


def audit_file(path: Path, on_progress: Callable[[int], None] = lambda n: None) -> AuditReport:
    """Audit a .hublog file; ``on_progress`` gets bytes read."""
    auditor = Auditor(str(path))
    with open(path, "rb") as f:
        chunk: list[tuple[str, bytes]] = []
        try:
            for offset, raw in read_hublog(f):
                chunk.append((f"byte offset {offset}", raw))
                if len(chunk) == CHUNK:
                    auditor.feed(chunk)
                    on_progress(sum(len(r) + 4 for _, r in chunk))
                    chunk = []
        except HublogFormatError as e:
            auditor.report.format_error = str(e)
        auditor.feed(chunk)
        on_progress(sum(len(r) + 4 for _, r in chunk))
    return auditor.finish()


async def audit_folder(
    path: Path, on_progress: Callable[[int], None] = lambda n: None
) -> AuditReport:
    """Audit the log of a hub data folder, read in export order; ``on_progress`` gets records."""
    folder = HubFolder.open(path)
    auditor = Auditor(str(path))
    async with await EventLog.open(folder.log_path, net=folder.config.network, create=False) as log:
        chunk: list[tuple[str, bytes]] = []
        n = 0
        # As stored, unchecked: the auditor verifies every record itself and reports them all.
        async for raw in log.export_records(checked=False):
            n += 1
            chunk.append((f"record #{n} of the export", raw))
            if len(chunk) == CHUNK:
                auditor.feed(chunk)
                on_progress(len(chunk))
                chunk = []
        auditor.feed(chunk)
        on_progress(len(chunk))
    return auditor.finish()
