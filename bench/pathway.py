"""Sealed referrals: seal + sign + append at a point of access, and opening them at a recipient.

    .venv/bin/python bench/pathway.py [--quick] [--profile]

One **referral** is what a point of access writes for a new person referred to a hub:
three signed events appended atomically by one ``log.append_many``: ``enquiry.logged``
(the person sealed with a fresh data key), ``consent.recorded`` (that key sealed to the 3
recipient hubs and to the point of access itself: 4 boxes sharing one ephemeral X25519
key) and ``referral.requested`` (to one of the 3, with a sealed note). The recipients are
real hub folders, each with a history of ``capacity.reported`` events (500; 100 with
--quick) and its published seal key, which the point of access holds through ``ingest``
(``_pathway.py`` builds all of this).

Writer tasks each loop "build a referral, ``await append_many``", so group commit shares
each fsync'd transaction. Figures are medians of 5 runs (3 with --quick), scenarios
interleaved, each on a fresh point-of-access log (WAL, synchronous=FULL, checked). The
scenarios are in :func:`scenarios`. The **reference** appends the same events with the
same body sizes byte for byte, in clear: the same validation, signing and storing, no
crypto.

``referrals_per_s`` is the sealed pipeline on the 2 cores: two writer processes appending
to the one log (the log is multi-process safe), 32 tasks each, as two importers, or an
importer beside the node, would run. One process uses one core: ``cryptography``'s X25519
holds the GIL (docs/performance.md, "Pathway", has what was tried to use a second core
from one process). The one-process figures (8 and 64 writers) and two processes of 4
and 8 writers are shown beside it.

Then each step alone on one thread (CPU µs per referral), and opening (``opens_per_s``):
a recipient opens its box in every consent of a run and decrypts the person; beside it,
raw ChaCha20-Poly1305 decrypts of the same ciphertexts and raw X25519 exchanges.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import multiprocessing as mp
import os
import pstats
import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import CpuSample, emit, print_machine, progress, table
from _pathway import (
    NET,
    RECIPIENTS,
    Items,
    Keys,
    Meter,
    Network,
    PointOfAccess,
    Who,
    body_bytes,
    build_network,
    measure_opens,
    new_point_of_access,
    people,
    referral,
)

from hubnode import crypto
from hubnode.config import HubFolder
from hubnode.events.envelope import FORMAT_VERSION, Envelope, event_id
from hubnode.events.envelope import seal as sign_envelope
from hubnode.events.kinds import KINDS
from hubnode.privacy.keyring import Keyring
from hubnode.privacy.seal import key_boxes, new_subject
from hubnode.store.log import EventLog

WRITERS: Final = 8
WIDE: Final = 64
TARGET: Final = 3_000
HEADLINE: Final = "sealed_2p_wide"
"""``referrals_per_s``: the sealed pipeline on both cores, two writer processes."""


# -- the timed pipelines -----------------------------------------------------------------

Build = Callable[[PointOfAccess, EventLog, int, Keys], Awaitable[Items]]


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    writers: int
    """Writer tasks in each process."""
    build: Build
    procs: int = 1
    """Processes appending to the one log, each with ``writers`` tasks."""
    share: int = 1
    """Runs on n // share referrals (the slow keyring scenarios); reported per referral."""
    reference: str = "clear"
    """The clear scenario it compares with: as many processes and writers (for a clear
    scenario, the 8-writer one, to show how clear appends scale)."""


def scenarios(who: list[Who]) -> list[Scenario]:
    def inline(clear: bool) -> Build:
        async def build(poa: PointOfAccess, log: EventLog, i: int, keys: Keys) -> Items:
            return referral(poa, i, keys, who[i], clear)[0]

        return build

    async def lookup(poa: PointOfAccess, log: EventLog, i: int, keys: Keys) -> Items:
        return referral(poa, i, await poa.keys(log, cached=False), who[i])[0]

    async def book(poa: PointOfAccess, log: EventLog, i: int, keys: Keys) -> Items:
        return referral(poa, i, await poa.keys(log), who[i])[0]

    async def remember(poa: PointOfAccess, log: EventLog, i: int, keys: Keys) -> Items:
        items, subject, data_key = referral(poa, i, keys, who[i])
        poa.ring.remember(poa.hub, subject, data_key)  # blocks the loop: the keyring is sync
        return items

    async def grouped(poa: PointOfAccess, log: EventLog, i: int, keys: Keys) -> Items:
        items, subject, data_key = referral(poa, i, keys, who[i])
        await poa.ring.remember_grouped(poa.hub, subject, data_key)
        return items

    async def casework(poa: PointOfAccess, log: EventLog, i: int, keys: Keys) -> Items:
        # The writes of Casework.log_enquiry then Casework.refer (what `hubnode enquiry log`
        # and `hubnode referral create` run), without view catch-up: look the keys up (in
        # the log's book), remember the data key, append enquiry + consent, read the key
        # back to seal the note, append the referral.
        items, subject, data_key = referral(poa, i, await poa.keys(log), who[i])
        await poa.ring.remember_grouped(poa.hub, subject, data_key)
        await log.append_many(items[:2])
        poa.ring.data_key(poa.hub, subject)
        return items[2:]

    w, h, wide = WRITERS, WRITERS // 2, WIDE
    sealed, clear = inline(False), inline(True)
    return [
        Scenario("sealed", f"sealed, {w} writers, one process", w, sealed),
        Scenario("lookup", f"sealed, {w} writers, seal_keys(fresh book) each", w, lookup),
        Scenario("book", f"sealed, {w} writers, seal_keys() each", w, book),
        Scenario("remember", f"sealed, {w} writers, + Keyring.remember", w, remember, share=10),
        Scenario("grouped", f"sealed, {w} writers, + remember_grouped", w, grouped),
        Scenario("casework", f"as Casework writes, {w} writers", w, casework, share=10),
        Scenario("clear", f"reference: clear, {w} writers", w, clear),
        Scenario("sealed_2p", f"sealed, 2 processes x {h}", h, sealed, 2, reference="clear_2p"),
        Scenario("clear_2p", f"reference: clear, 2 processes x {h}", h, clear, 2),
        Scenario("sealed_2p_8", f"sealed, 2 processes x {w}", w, sealed, 2, reference="clear_2p_8"),
        Scenario("clear_2p_8", f"reference: clear, 2 processes x {w}", w, clear, 2),
        Scenario("sealed_wide", f"sealed, {wide} writers", wide, sealed, reference="clear_wide"),
        Scenario("clear_wide", f"reference: clear, {wide} writers", wide, clear),
        Scenario(
            "sealed_2p_wide",
            f"sealed, 2 processes x {wide // 2} (referrals_per_s)",
            wide // 2,
            sealed,
            2,
            reference="clear_2p_wide",
        ),
        Scenario(
            "clear_2p_wide", f"reference: clear, 2 processes x {wide // 2}", wide // 2, clear, 2
        ),
    ]


async def _write(poa: PointOfAccess, log: EventLog, todo: Sequence[int], s: Scenario) -> Meter:
    """``s.writers`` tasks appending referrals ``todo`` to ``log``, timed."""
    async with log._db.execute("PRAGMA synchronous") as cur:  # durability as claimed
        row = await cur.fetchone()
    assert row is not None and row[0] == 2, f"expected synchronous=FULL (2), got {row}"

    async def writer(mine: Sequence[int], keys: Keys) -> None:
        for i in mine:
            await log.append_many(await s.build(poa, log, i, keys))

    with Meter() as meter:
        keys = await poa.keys(log)  # the per-run cache: one lookup for all writers
        await asyncio.gather(*(writer(todo[w :: s.writers], keys) for w in range(s.writers)))
    return meter


def _process(
    folder: Path, recipients: list[bytes], n: int, key: str, part: int, go: Any, q: Any
) -> None:
    """One of several writer processes: appends its share of the referrals to the log."""
    s = next(s for s in scenarios(people(n)) if s.key == key)
    todo = range(part, n, s.procs)

    async def run() -> Meter:
        hub = HubFolder.open(folder)
        with Keyring.open(hub) as ring:
            async with await hub.open_log() as log:
                q.put("ready")
                await asyncio.to_thread(go.wait)  # the parent starts every process at once
                return await _write(PointOfAccess(hub, recipients, ring), log, todo, s)

    meter = asyncio.run(run())
    q.put((meter.start, meter.end, meter.sample.cpu))


def run_scenario(tmp: Path, net: Network, n: int, s: Scenario) -> tuple[CpuSample, Path]:
    """One timed run on a fresh point of access: the sample (CPU of every writer
    process), and the log it wrote."""

    async def setup() -> PointOfAccess:
        return await new_point_of_access(tmp / "poa", net)

    async def stored() -> int:
        async with await poa.folder.open_log() as log:
            return await log.count()

    async def inline() -> CpuSample:
        async with await poa.folder.open_log() as log:
            return (await _write(poa, log, range(n), s)).sample

    poa = asyncio.run(setup())
    before = asyncio.run(stored())
    with poa.ring:
        sample = asyncio.run(inline()) if s.procs == 1 else _in_processes(poa, n, s)
    assert asyncio.run(stored()) - before == 3 * n, "events missing"
    return sample, poa.folder.log_path


def _in_processes(poa: PointOfAccess, n: int, s: Scenario) -> CpuSample:
    """``s.procs`` writer processes started together: CPU summed, wall from the first
    start to the last end."""
    ctx = mp.get_context("spawn")  # nothing of this process's state: as a new terminal
    go, q = ctx.Event(), ctx.Queue()
    args = [(poa.folder.path, poa.recipients, n, s.key, p, go, q) for p in range(s.procs)]
    procs = [ctx.Process(target=_process, args=a) for a in args]
    for p in procs:
        p.start()
    assert [q.get(timeout=120) for _ in procs] == ["ready"] * s.procs
    go.set()
    ends = [q.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
        assert p.exitcode == 0, f"writer process failed ({p.exitcode})"
    wall = max(e for _, e, _ in ends) - min(b for b, _, _ in ends)
    return CpuSample(wall, sum(c for _, _, c in ends))


# -- where the time goes -----------------------------------------------------------------


def stages(tmp: Path, net: Network, n: int, who: list[Who]) -> dict[str, float]:
    """Each step alone on one thread: CPU µs per referral (wall µs for the keyring write,
    which waits for fsyncs)."""

    def timed(fn: Callable[[], object], count: int, wall: bool = False) -> float:
        with Meter() as meter:
            fn()
        return (meter.sample.wall if wall else meter.sample.cpu) / count * 1e6

    async def go() -> dict[str, float]:
        poa = await new_point_of_access(tmp / "stages", net)
        out: dict[str, float] = {}
        with poa.ring:
            async with await poa.folder.open_log() as log:
                m = max(n // 5, 1)  # each lookup is several SQLite reads: fewer will do
                for name, cached in (("lookup", False), ("lookup_book", True)):
                    with Meter() as meter:
                        for _ in range(m):
                            keys = await poa.keys(log, cached=cached)
                    out[name] = meter.sample.cpu / m * 1e6
                # The log's book after each referral stored (3 events): as a writer sees it.
                cpu = 0.0
                for i in range(m):
                    await log.append_many(referral(poa, i, keys, who[i], True)[0])
                    with Meter() as meter:
                        await poa.keys(log)
                    cpu += meter.sample.cpu
                out["lookup_book_new"] = cpu / m * 1e6
            me, signer = poa.hub, poa.folder.key()
            made = [referral(poa, i, keys, who[i]) for i in range(n)]
            encoded = [[(k, KINDS.encode_body(k, b)) for k, b in items] for items, _, _ in made]

            def sign() -> None:  # what _commit_appends does for each event
                prev, seq = None, 0
                for items in encoded:
                    for kind, body in items:
                        seq += 1
                        env = Envelope(FORMAT_VERSION, NET, me, me, seq, prev, 0, kind, body)
                        prev = event_id(sign_envelope(env, signer))

            steps: dict[str, Callable[[], object]] = {
                "seal": lambda: [referral(poa, i, keys, who[i]) for i in range(n)],
                "boxes": lambda: [
                    key_boxes(NET, me, new_subject(), crypto.new_data_key(), keys) for _ in range(n)
                ],
                "clear": lambda: [referral(poa, i, keys, who[i], True) for i in range(n)],
                # what append_many does before queueing
                "encode": lambda: [
                    KINDS.decode_body(k, KINDS.encode_body(k, b))
                    for items, _, _ in made
                    for k, b in items
                ],
                "sign": sign,
            }
            out |= {name: timed(fn, n) for name, fn in steps.items()}
            m = max(n // 20, 1)  # fsync'd: slow
            out["remember_wall"] = timed(
                lambda: [poa.ring.remember(me, s, dk) for _, s, dk in made[:m]], m, wall=True
            )
            out["remember_8_wall"] = timed(  # per subject, in transactions of 8
                lambda: [
                    poa.ring.remember_many((me, s, dk) for _, s, dk in made[j : j + WRITERS])
                    for j in range(0, m * WRITERS, WRITERS)
                ],
                m * WRITERS,
                wall=True,
            )
        return out

    return asyncio.run(go())


# -- the run -----------------------------------------------------------------------------


@dataclass
class Results:
    n: int
    runs: int
    plan: list[Scenario]
    samples: dict[str, list[CpuSample]]
    opens: list[tuple[CpuSample, CpuSample, CpuSample]] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    stage: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def mid(ss: list[CpuSample]) -> CpuSample:
        return sorted(ss, key=lambda s: s.wall)[len(ss) // 2]

    def count(self, key: str) -> int:
        return self.n // next(s for s in self.plan if s.key == key).share

    def rate(self, key: str) -> float:
        return self.count(key) / self.mid(self.samples[key]).wall

    def cpu_us(self, key: str) -> float:
        return self.mid(self.samples[key]).cpu / self.count(key) * 1e6


def measure(n: int, runs: int, history: int, profile: bool) -> Results:
    who = people(n)
    plan = scenarios(who)
    res = Results(n, runs, plan, {s.key: [] for s in plan})
    with tempfile.TemporaryDirectory(prefix="hubnode-bench-") as tmp_s:
        tmp = Path(tmp_s)
        net = asyncio.run(build_network(tmp / "net", history))

        async def probe() -> int:
            poa = await new_point_of_access(tmp / "probe", net)
            with poa.ring:
                async with await poa.folder.open_log() as log:
                    keys = await poa.keys(log)
                return body_bytes(poa, keys, who[:500])

        print(
            f"{n:,} referrals (3 events each) per run, {runs} runs; {RECIPIENTS} recipients "
            f"with {history:,} events each; {asyncio.run(probe()):,} body bytes per referral, "
            f"sealed and clear alike; temp folder on {tempfile.gettempdir()}"
        )
        for r in range(runs):  # interleave scenarios so machine noise spreads over all
            res.loads.append(os.getloadavg()[0])
            for s in plan:
                run_dir = tmp / f"run-{r}-{s.key}"
                sample, log_path = run_scenario(run_dir, net, res.count(s.key), s)
                res.samples[s.key].append(sample)
                progress(
                    f"  run {r + 1}/{runs} {s.label}: {res.count(s.key) / sample.wall:,.0f} "
                    f"referrals/s, CPU {sample.utilisation:.0%}"
                )
                if s.key == "sealed":
                    o, d, x = measure_opens(log_path, net.recipients[r % RECIPIENTS], who)
                    res.opens.append((o, d, x))
                    progress(f"  run {r + 1}/{runs} opens {n / o.wall:,.0f}/s")
                shutil.rmtree(run_dir)
        res.loads.append(os.getloadavg()[0])
        res.stage = stages(tmp, net, min(n, 2_000), who)
        if profile:
            prof = cProfile.Profile()
            prof.enable()
            run_scenario(tmp / "profile", net, n, plan[0])
            prof.disable()
            text = io.StringIO()
            pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(30)
            progress(text.getvalue())
    return res


def report(res: Results) -> dict[str, Any]:
    n, runs, st = res.n, res.runs, res.stage
    rows = []
    for s in res.plan:
        walls = [x.wall for x in res.samples[s.key]]
        count, rate = res.count(s.key), res.rate(s.key)
        rows.append(
            [
                s.label,
                count,
                rate,
                3 * rate,
                count / max(walls),
                count / min(walls),
                f"{res.mid(res.samples[s.key]).utilisation:.0%}",
                res.cpu_us(s.key),
                f"{rate / res.rate(s.reference):.2f}x",
            ]
        )
    table(
        f"Referrals (3 events, one append_many each), median of {runs} runs",
        ["scenario", "referrals", "/s", "events/s", "min", "max", "CPU", "CPU µs", "x clear"],
        rows,
    )
    print(
        "CPU: user + sys of the writing processes (all threads) over wall time, of 200 % on "
        "2 cores; CPU µs: per referral. x clear: against the clear reference with as many "
        "processes and writers (a clear row: against clear, 8 writers in one process)."
    )

    sealed = res.cpu_us("sealed")

    def row(label: str, us: float, share: bool = True) -> list[Any]:
        return [label, us, f"{us / sealed:.0%}" if share else ""]

    store = {
        k: res.cpu_us(k) - st["clear"] - st["encode"] - st["sign"] for k in ("clear", "clear_wide")
    }
    table(
        "Where the time goes: each step alone, 1 thread, CPU µs per referral",
        ["step", "µs", f"of sealed, {WRITERS} writers"],
        [
            row(f"seal_keys() of {RECIPIENTS} hubs + own key, fresh book", st["lookup"], False),
            row("  the same, log's book, nothing stored since", st["lookup_book"], False),
            row("  the same, log's book, 3 events stored since", st["lookup_book_new"], False),
            row("build sealed bodies: subject, data key, person, 4 boxes, note", st["seal"]),
            row("  of which key_boxes (4 boxes)", st["boxes"]),
            row("build the clear bodies instead (reference)", st["clear"], False),
            row("encode + validate 3 bodies (append_many)", st["encode"]),
            row("sign 3 envelopes + event ids (_commit_appends)", st["sign"]),
            row(
                f"storing, {WRITERS} writers: clear pipeline minus the 3 steps above",
                store["clear"],
            ),
            row(f"storing, {WIDE} writers: the same", store["clear_wide"], False),
            row(f"sealed pipeline, {WRITERS} writers (median run)", sealed),
            row(f"sealed pipeline, {WIDE} writers (median run)", res.cpu_us("sealed_wide"), False),
            row("Keyring.remember, one call (wall µs, fsync'd)", st["remember_wall"], False),
            row(
                f"  remember_many of {WRITERS}, per subject (wall µs)", st["remember_8_wall"], False
            ),
        ],
    )

    o, d, x = (res.mid([run[i] for run in res.opens]) for i in range(3))
    table(
        f"Opening at one recipient, {n:,} referrals, median of {runs} runs",
        ["what", "per s", "CPU µs each"],
        [
            ["open_box + open_person (opens_per_s)", n / o.wall, o.cpu / n * 1e6],
            ["raw ChaCha20-Poly1305 decrypt of the person", n / d.wall, d.cpu / n * 1e6],
            ["raw X25519 exchange with the box's ephemeral key", n / x.wall, x.cpu / n * 1e6],
        ],
    )
    print()
    for key in (HEADLINE, "sealed", "sealed_2p", "sealed_2p_8", "sealed_wide"):
        verdict = "met" if res.rate(key) >= TARGET else "MISSED"
        label = next(s.label for s in res.plan if s.key == key)
        print(f"target: >= {TARGET:,} referrals/s on 2 cores, {label}: {verdict}")
    loads = ", ".join(f"{v:.2f}" for v in res.loads)
    print(f"load average (1 min) at the start of each run, and at the end: {loads}")
    return {
        "referrals_per_s": round(res.rate(HEADLINE)),
        "events_per_s": round(3 * res.rate(HEADLINE)),
        "one_process_referrals_per_s": round(res.rate("sealed")),
        **{f"{s.key}_referrals_per_s": round(res.rate(s.key)) for s in res.plan},
        **{f"{s.key}_cpu_us": round(res.cpu_us(s.key)) for s in res.plan},
        "opens_per_s": round(n / o.wall),
        "chacha20_decrypt_per_s": round(n / d.wall),
        "x25519_exchange_per_s": round(n / x.wall),
        "stage_us": {k: round(v, 1) for k, v in st.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer referrals and runs")
    parser.add_argument("--profile", action="store_true", help="cProfile one sealed run")
    args = parser.parse_args()
    n, runs, history = (1_000, 3, 100) if args.quick else (5_000, 5, 500)
    print_machine()
    res = measure(n, runs, history, args.profile)
    figures = report(res)
    emit(
        {
            "bench": "pathway",
            "quick": args.quick,
            "referrals": n,
            "runs": runs,
            "writers": WRITERS,
            "wide_writers": WIDE,
            "recipients": RECIPIENTS,
            "recipient_history": history,
            "cores": os.cpu_count(),
            **figures,
            "load_1min": [round(v, 2) for v in res.loads],
        }
    )


if __name__ == "__main__":
    main()
