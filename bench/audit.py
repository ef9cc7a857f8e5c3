"""``hubnode audit verify`` over a large .hublog, run as the real CLI in a child process.

    .venv/bin/python bench/audit.py [--quick]

Input: 1,000,000 events by 100 hubs (100,000 with --quick), generated once into
bench/.cache/ (signed on every core, one process per hub at a time) in export order:
hubs in id order, each hub's events in seq order, as ``hubnode export`` writes them.

Each run starts ``.venv/bin/hubnode audit verify --json FILE`` and measures its wall
time and, from ``wait4``, the child's peak RSS and CPU time. The JSON report is checked:
every record verified, no failure. The file is in the page cache after generation (and
after the first run), so this measures verification, not the disk.

References from the same run:

- reading the file only (framing, no decoding), the floor of any auditor in Python;
- a minimal single-threaded loop that reads the file, decodes the two msgpack arrays
  just enough to find key, signature and signed bytes, and verifies with
  ``cryptography``; run on a sample of the file and extrapolated to all of it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import msgspec
from _common import (
    ROOT,
    CpuMeter,
    CpuSample,
    cached_hublog,
    emit,
    print_machine,
    progress,
    table,
)
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hubnode.events.envelope import SIGNING_CONTEXT
from hubnode.hublog import read_hublog

HUBS = 100


def _hubnode() -> Path:
    beside = Path(sys.executable).parent / "hubnode"
    return beside if beside.exists() else ROOT / ".venv" / "bin" / "hubnode"


def audit_cli(path: Path, n: int) -> dict[str, float]:
    """One ``hubnode audit verify`` child: wall seconds, peak RSS (MB), CPU seconds."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        child = subprocess.Popen(
            [str(_hubnode()), "audit", "verify", "--json", str(path)], stdout=out, stderr=err
        )
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - t0
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if child.returncode != 0:
        raise SystemExit(
            f"hubnode audit verify exited {child.returncode}:\n{stderr.decode()[-2000:]}"
        )
    (report,) = json.loads(stdout)
    assert report["ok"] and report["records"] == n and report["failures"] == 0, report
    assert len(report["hubs"]) == HUBS and all(h["bad"] == 0 for h in report["hubs"].values())
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall": wall, "rss_mb": usage.ru_maxrss / 1024, "cpu": cpu}


def read_only(path: Path) -> tuple[CpuSample, int]:
    count = 0
    with CpuMeter() as meter, open(path, "rb") as f:
        for _ in read_hublog(f):
            count += 1
    return meter.sample, count


def minimal_verify(path: Path, sample: int) -> CpuSample:
    """Time to read and verify the first ``sample`` records, one thread, bare minimum."""
    keys: dict[bytes, Ed25519PublicKey] = {}
    decode = msgspec.msgpack.decode
    with CpuMeter() as meter, open(path, "rb") as f:
        for i, (_, raw) in enumerate(read_hublog(f)):
            if i == sample:
                break
            env_bytes, sig = decode(raw)
            key_bytes = decode(env_bytes)[3]
            key = keys.get(key_bytes)
            if key is None:
                key = keys[key_bytes] = Ed25519PublicKey.from_public_bytes(key_bytes)
            try:
                key.verify(sig, SIGNING_CONTEXT + env_bytes)
            except InvalidSignature:
                raise SystemExit(f"record {i} does not verify") from None
    return meter.sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 events instead of 1M")
    parser.add_argument("--runs", type=int, default=3, help="runs of the CLI (default 3)")
    args = parser.parse_args()
    per_hub, sample = (1_000, 20_000) if args.quick else (10_000, 100_000)

    print_machine()
    path = cached_hublog("audit", HUBS, per_hub, order="export")
    size_mb = path.stat().st_size / 1e6
    read, n = read_only(path)
    print(f"{path.name}: {n:,} records by {HUBS} hubs, {size_mb:.0f} MB; {args.runs} CLI runs")

    runs: list[dict[str, float]] = []
    for r in range(args.runs):
        run = audit_cli(path, n)
        runs.append(run)
        progress(
            f"  run {r + 1}/{args.runs}: {run['wall']:.1f} s, {n / run['wall']:,.0f} events/s, "
            f"peak RSS {run['rss_mb']:.0f} MB, CPU {run['cpu'] / run['wall']:.0%}"
        )
    minimal = sorted((minimal_verify(path, sample) for _ in range(3)), key=lambda s: s.wall)[1]
    minimal_s = minimal.wall * n / sample

    mid = sorted(runs, key=lambda run: run["wall"])[len(runs) // 2]
    audit_s, rss = mid["wall"], max(run["rss_mb"] for run in runs)
    rows: list[list[Any]] = [
        [
            "hubnode audit verify (CLI child process)",
            round(audit_s, 2),
            n / audit_s,
            round(mid["cpu"], 1),
            f"{mid['cpu'] / audit_s:.0%}",
            round(rss),
        ],
        [
            "read the file only (framing, 1 thread)",
            round(read.wall, 2),
            n / read.wall,
            round(read.cpu, 2),
            f"{read.utilisation:.0%}",
            "-",
        ],
        [
            f"minimal read + verify, 1 thread (sample of {sample:,}, extrapolated)",
            round(minimal_s, 1),
            n / minimal_s,
            round(minimal.cpu * n / sample, 1),
            f"{minimal.utilisation:.0%}",
            "-",
        ],
    ]
    table(
        f"Audit of {n:,} events ({size_mb:.0f} MB), median of {args.runs} CLI runs",
        ["what", "seconds", "events/s", "CPU s", "CPU (of 200%)", "peak RSS MB"],
        rows,
    )
    walls = ", ".join(f"{run['wall']:.1f}" for run in runs)
    print(
        f"\nCLI wall times: {walls} s; peak RSS is the largest of the runs. CPU s is "
        "user + sys: on a busy machine wall time grows while CPU s stays about the same."
    )
    ok_time, ok_rss = audit_s < 90, rss < 150
    print(
        f"targets (1M events): < 90 s: {'met' if ok_time else 'MISSED'}; "
        f"< 150 MB: {'met' if ok_rss else 'MISSED'}"
        + ("" if not args.quick else " (quick run: 100k events, not the target size)")
    )
    emit(
        {
            "bench": "audit",
            "quick": args.quick,
            "events": n,
            "hubs": HUBS,
            "runs": args.runs,
            "cores": os.cpu_count(),
            "audit_s": round(audit_s, 2),
            "audit_rss_mb": round(rss, 1),
            "audit_per_s": round(n / audit_s),
            "audit_cpu_s": round(mid["cpu"], 1),
            "audit_cpu_utilisation": round(mid["cpu"] / audit_s, 2),
            "read_only_s": round(read.wall, 2),
            "minimal_verify_1_thread_s_extrapolated": round(minimal_s, 2),
            "minimal_verify_1_thread_per_s": round(n / minimal_s),
            "minimal_verify_sample": sample,
        }
    )


if __name__ == "__main__":
    main()
