"""The verification stage of ``EventLog.ingest``: stateless checks on a thread pool.

Every check that needs no other record (DESIGN §3: size, decoding, network, trust, key,
signature, seq/prev shape, and the body step: its size limit, decode by kind and unknown
fields) runs here, on every core:
``cryptography`` releases the GIL while it verifies. What needs the log (the link to the
hub's head, duplicates, forks, gaps) is the store stage's, in ``log.py``.

Several ``ingest`` calls may be in flight at once, so that one call's records are verified
while an earlier call's are stored. Two helpers keep that equivalent to running the calls
one after another:

- :class:`Turns` makes the store stages run one at a time, in the order the calls began;
- :class:`InFlight` lets a call reuse the verification of a record that an earlier call
  still in flight is verifying or storing (live gossip and a fetch often carry the same
  records), instead of checking its signature a second time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from hubnode.errors import InvalidEvent
from hubnode.events.kinds import KindRegistry
from hubnode.events.verify import TrustCheck, Verified, verify_record

PARALLEL_FROM: Final = 64
"""Verify batches at least this large on the thread pool."""

CHUNK: Final = 128
"""Records per pool task, at least: small enough that a batch spreads evenly over the
threads when other processes take a core away from one of them, large enough that the
per-task overhead (~50 µs) stays under 1 %."""


class Checked(Verified, frozen=True):
    """A record that passed every stateless check but possibly its body decode.

    ``body_error`` is kept, not raised: DESIGN §3 reports a broken chain link (which only
    the store stage can check) before a bad body, so the store stage raises it after that.
    """

    body_error: InvalidEvent | None = None


Result = Checked | InvalidEvent


def check_chunk(
    raws: Sequence[bytes],
    net: str,
    trusted: TrustCheck | None,
    max_size: int,
    registry: KindRegistry,
) -> list[Result]:
    """:func:`verify_record` each record, then decode its body; safe on any thread."""
    out: list[Result] = []
    for raw in raws:
        try:
            rec = verify_record(raw, net=net, trusted=trusted, max_size=max_size)
        except InvalidEvent as e:
            out.append(e)
            continue
        env = rec.envelope
        body_error = None
        try:
            registry.check_body(env.kind, env.body)  # after the signature: DESIGN §3
        except InvalidEvent as e:
            body_error = e
        out.append(Checked(rec.raw, rec.id, env, body_error))
    return out


class VerifyPool:
    """The threads that verify records for one log."""

    def __init__(self, net: str, registry: KindRegistry, max_size: int, workers: int) -> None:
        self.net = net
        self.registry = registry
        self.max_size = max_size
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hubnode-verify")

    async def check_many(self, raws: Sequence[bytes], trusted: TrustCheck | None) -> list[Result]:
        """Check ``raws``, on every thread for large batches; one result per record, in order."""
        if len(raws) < PARALLEL_FROM:
            return check_chunk(raws, self.net, trusted, self.max_size, self.registry)
        loop = asyncio.get_running_loop()
        step = max(CHUNK, -(-len(raws) // self.workers // 4))
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(
                    self._pool,
                    check_chunk,
                    raws[i : i + step],
                    self.net,
                    trusted,
                    self.max_size,
                    self.registry,
                )
                for i in range(0, len(raws), step)
            )
        )
        return [result for part in parts for result in part]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


class Turns:
    """Places in line: each waits until every place taken before it is done."""

    def __init__(self) -> None:
        self._last: asyncio.Future[None] | None = None

    def take(self) -> Turn:
        turn = Turn(self._last, asyncio.get_running_loop().create_future())
        self._last = turn.done_future
        return turn


class Turn:
    """One place in line: :meth:`wait` for it, and always end it with :meth:`done`."""

    def __init__(self, before: asyncio.Future[None] | None, done: asyncio.Future[None]) -> None:
        self._before = before
        self.done_future = done

    async def wait(self) -> None:
        """Return once every earlier turn is done."""
        if self._before is not None:
            # Shielded: a caller that gives up must not cancel the turn it waits behind.
            await asyncio.shield(self._before)

    def done(self) -> None:
        """End this turn; if an earlier one is still running, once that one ends."""
        before = self._before
        if before is None or before.done():
            self._finish()
        else:
            # Given up early (cancelled, failed): later turns must still wait for earlier ones.
            before.add_done_callback(self._finish)

    def _finish(self, _: object = None) -> None:
        if not self.done_future.done():
            self.done_future.set_result(None)


class InFlight:
    """Records being verified or stored by ``ingest`` calls in flight, by event id."""

    def __init__(self) -> None:
        self._by_id: dict[bytes, Claim] = {}

    def claim(self, ids: Sequence[bytes], trusted: TrustCheck | None) -> Claim:
        """Take the ids no call in flight holds; borrow the results for the others.

        A result is borrowed only under the same trust check: it may decide the outcome.
        """
        claim = Claim(self, trusted)
        for i, id_ in enumerate(ids):
            if id_ in claim.results:  # twice in this batch: verify it once
                claim.borrowed.append((i, claim))
                continue
            held = self._by_id.get(id_)
            if held is not None and held.trusted == trusted:
                claim.borrowed.append((i, held))
                continue
            claim.results[id_] = None
            claim.first.append(i)
            if held is None:
                self._by_id[id_] = claim
        return claim

    def _release(self, claim: Claim) -> None:
        claim.settled()
        for id_ in claim.results:
            if self._by_id.get(id_) is claim:
                del self._by_id[id_]

    def __len__(self) -> int:
        return len(self._by_id)


class Claim:
    """One ``ingest`` call's share of :class:`InFlight`."""

    def __init__(self, inflight: InFlight, trusted: TrustCheck | None) -> None:
        self._inflight = inflight
        self.trusted = trusted
        self.results: dict[bytes, Result | None] = {}
        """By id, the result of each record this call verifies. None: not verified (yet),
        or found stored already."""
        self.first: list[int] = []
        """Indexes of the records this call verifies (first of their id in no call in flight)."""
        self.borrowed: list[tuple[int, Claim]] = []
        """Indexes of the others, with the call that verifies them."""
        self._settled = asyncio.get_running_loop().create_future()

    async def verified(self) -> None:
        """Wait until this call has verified its records (or given up)."""
        await asyncio.shield(self._settled)

    def settled(self) -> None:
        """Every result this call will give is in ``results``."""
        if not self._settled.done():
            self._settled.set_result(None)

    def release(self) -> None:
        """Forget this call's ids: call once stored (or failed)."""
        self._inflight._release(self)
