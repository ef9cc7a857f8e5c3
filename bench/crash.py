"""Crash benchmark: SIGKILL an appending process at random moments, then check the log.

    python bench/crash.py [--rounds 100] [--quick] [--seed S] [--keep DIR]

Each round starts ``tests/appender.py`` on one hub data folder, reads a random number of
its ``seq id`` lines (each an append that returned, i.e. reported durable) and kills it
with SIGKILL; then every reported event must be stored with the same seq and id, the
chain must be gap-free and audit, and the next child must continue at the next seq.
The child and the checks are the ones ``tests/test_crash.py`` runs (one
implementation). Prints a table per kill plan, the reference figure (0 lost) beside the
measured one, and as its last line one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import NET, emit, print_machine, table

from hubnode import HubFolder
from tests.appender import KILL_PLANS, CrashStats, crash_loop


def report(stats: CrashStats) -> None:
    rows = []
    for plan in KILL_PLANS:
        rounds = [r for r in stats.rounds if r.plan == plan]
        if rounds:
            rows.append(
                (
                    plan,
                    len(rounds),
                    sum(r.reported for r in rounds),
                    sum(r.unreported for r in rounds),
                    max(r.head_after for r in rounds),
                    sum(r.seconds for r in rounds) / len(rounds),
                )
            )
    table(
        "Kills by plan (unreported: stored but killed before printed; not a loss)",
        ("kill plan", "rounds", "reported durable", "unreported", "max seq", "s/round"),
        rows,
    )
    table(
        "Crash loop",
        ("figure", "measured", "reference"),
        [
            ("rounds", len(stats.rounds), ""),
            ("events reported durable", stats.durable, ""),
            ("events found (same seq, id)", stats.found, stats.durable),
            ("lost", stats.lost, 0),
            ("problems", len(stats.problems), 0),
            ("max seq", stats.head, ""),
            ("wall time (s)", round(stats.seconds, 1), ""),
        ],
    )


async def run(rounds: int, seed: int, keep: Path | None) -> CrashStats:
    with tempfile.TemporaryDirectory(prefix="hubnode-crash-") as tmp:
        root = keep or Path(tmp)
        folder = HubFolder.init(root / "hub", name="Crash bench hub", network=NET)
        return await crash_loop(folder.path, rounds=rounds, seed=seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="20 rounds")
    parser.add_argument("--seed", type=int, help="replay a run (default: a fresh random seed)")
    parser.add_argument("--keep", type=Path, help="keep the data folder in this directory")
    args = parser.parse_args()
    rounds = 20 if args.quick else args.rounds
    seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
    print_machine()
    print(f"crash loop: {rounds} rounds, seed {seed} (replay with --seed {seed})", flush=True)
    stats = asyncio.run(run(rounds, seed, args.keep))
    report(stats)
    for problem in stats.problems[:20]:
        print(f"PROBLEM: {problem}")
    emit(
        {
            "rounds": len(stats.rounds),
            "seed": seed,
            "durable_events": stats.durable,
            "found_events": stats.found,
            "lost": stats.lost,
            "problems": len(stats.problems),
            "max_seq": stats.head,
            "seconds": round(stats.seconds, 2),
        }
    )
    sys.exit(1 if stats.problems else 0)


if __name__ == "__main__":
    main()
