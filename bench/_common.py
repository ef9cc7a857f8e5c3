"""Shared helpers for the bench scripts: machine facts, timing, tables, cached .hublog files.

Benchmarks are programs, not tests (STYLE §14): each script prints a table with its
figures and, side by side from the same run, the references they are compared with, then
as its last line one JSON object with the figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import struct
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import cryptography

from hubnode.crypto import SigningKey
from hubnode.events.network import HubProfileUpdated, HubRegistered
from hubnode.hublog import MAGIC, read_hublog
from hubnode.testing import ChainWriter

BENCH_DIR: Final = Path(__file__).resolve().parent
CACHE_DIR: Final = BENCH_DIR / ".cache"
ROOT: Final = BENCH_DIR.parent
NET: Final = "bench-net"
KIND: Final = "hub.profile_updated"

_FRAME: Final = struct.Struct(">I")
_GENERATOR_VERSION: Final = 1
"""Bump when the generated records change, so stale cached files are not reused."""

# -- realistic bodies -----------------------------------------------------------------------

_TOWNS: Final = (
    "Darlington",
    "Stockton-on-Tees",
    "Middlesbrough",
    "Hartlepool",
    "Redcar and Cleveland",
    "County Durham",
)
_ROLE_SETS: Final = (
    ("gateway",),
    ("gateway", "follow-up"),
    ("direct-delivery",),
    ("direct-delivery", "advocacy"),
    ("follow-up", "advocacy", "new-services"),
)


def registered_body(hub_no: int) -> HubRegistered:
    town = _TOWNS[hub_no % len(_TOWNS)]
    return HubRegistered(
        name=f"{town} Community Hub {hub_no}",
        roles=_ROLE_SETS[hub_no % len(_ROLE_SETS)],
        area=f"{town} and surrounding wards, North East England",
        contact=f"referrals-{hub_no}@{town.lower().replace(' ', '-')}-hub.example.org",
    )


def profile_body(hub_no: int, n: int) -> HubProfileUpdated:
    """A full profile update, as a hub editing its public profile would sign (~190 bytes)."""
    town = _TOWNS[(hub_no + n) % len(_TOWNS)]
    return HubProfileUpdated(
        name=f"{town} Community Hub {hub_no} (rev {n})",
        roles=_ROLE_SETS[n % len(_ROLE_SETS)],
        area=f"{town}, wards {n % 40} to {n % 40 + 6}, North East England",
        contact=f"referrals-{hub_no}-{n % 97}@{town.lower().replace(' ', '-')}-hub.example.org",
    )


def hub_key(hub_no: int) -> SigningKey:
    """A deterministic key per bench hub, so cached files are reproducible."""
    return SigningKey.from_seed(hashlib.sha256(f"hubnode-bench-hub-{hub_no}".encode()).digest())


# -- machine, timing, output ----------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "mem_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cryptography": cryptography.__version__,
    }


def print_machine() -> None:
    m = machine()
    print(
        f"machine: {m['cores']} cores ({m['cpu']}), {m['mem_gib']} GiB, Python {m['python']}, "
        f"SQLite {m['sqlite']}, cryptography {m['cryptography']}"
    )
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (shared machine)")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


@dataclass
class CpuSample:
    """Wall and process CPU time (all threads) over a span: utilisation = cpu / wall."""

    wall: float = 0.0
    cpu: float = 0.0

    @property
    def utilisation(self) -> float:
        return self.cpu / self.wall if self.wall else 0.0


class CpuMeter:
    """``with CpuMeter() as m: ...`` then ``m.sample`` (this process, every thread, and the
    child processes it started and waited for in between)."""

    def __enter__(self) -> CpuMeter:
        self._t0 = time.perf_counter()
        self._c0 = _cpu(os.times())
        return self

    def __exit__(self, *exc: object) -> None:
        self.sample = CpuSample(time.perf_counter() - self._t0, _cpu(os.times()) - self._c0)


def _cpu(t: os.times_result) -> float:
    return t.user + t.system + t.children_user + t.children_system


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a plain fixed-width table; first column left-aligned, the rest right-aligned."""
    cells = [[str(h) for h in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        first = r[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    print()
    print(title)
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for r in cells[1:]:
        print(line(r))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def emit(figures: dict[str, Any]) -> None:
    """The last line of every bench script: one JSON object with its figures."""
    print(json.dumps(figures, sort_keys=False), flush=True)


# -- cached .hublog files -------------------------------------------------------------------


def _sign_hub(args: tuple[int, int, str]) -> tuple[int, bytes, int]:
    """Worker: sign hub ``hub_no``'s first ``n`` events into a framed part file."""
    hub_no, n, part = args
    writer = ChainWriter(NET, hub_key(hub_no))
    with open(part, "wb") as f:
        raw = writer.next("hub.registered", registered_body(hub_no))
        f.write(_FRAME.pack(len(raw)) + raw)
        for i in range(2, n + 1):
            raw = writer.next(KIND, profile_body(hub_no, i))
            f.write(_FRAME.pack(len(raw)) + raw)
    return hub_no, writer.hub, n


def _read_frames(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        (length,) = _FRAME.unpack_from(data, pos)
        pos += _FRAME.size
        yield data[pos : pos + length]
        pos += length


def cached_hublog(
    name: str, hubs: int, per_hub: int, *, order: str, workers: int | None = None
) -> Path:
    """``bench/.cache/NAME-HUBSxPER_HUB-ORDER.hublog``, generated once (signing on every core).

    ``order`` is ``"export"`` (hubs in id order, each hub's events in seq order, as
    ``hubnode export`` writes) or ``"gossip"`` (hubs interleaved in runs of 1-100
    records, each hub's events still in seq order, as a node syncing from many peers
    receives them).
    """
    if order not in ("export", "gossip"):
        raise ValueError(f"unknown order {order!r}")
    CACHE_DIR.mkdir(exist_ok=True)
    path = CACHE_DIR / f"{name}-v{_GENERATOR_VERSION}-{hubs}x{per_hub}-{order}.hublog"
    if path.exists():
        return path
    total = hubs * per_hub
    parts_dir = CACHE_DIR / f"{path.stem}.parts"
    shutil.rmtree(parts_dir, ignore_errors=True)
    parts_dir.mkdir()
    workers = workers or os.cpu_count() or 2
    progress(f"generating {path.name}: {hubs} hubs x {per_hub:,} events on {workers} processes")
    t0 = time.perf_counter()
    done: list[tuple[int, bytes]] = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(_sign_hub, (i, per_hub, str(parts_dir / f"{i}.part"))) for i in range(hubs)
        ]
        signed = 0
        for future in as_completed(futures):
            hub_no, hub, n = future.result()
            done.append((hub_no, hub))
            signed += n
            elapsed = time.perf_counter() - t0
            progress(
                f"  signed {len(done)}/{hubs} hubs, {signed:,}/{total:,} events, "
                f"{elapsed:.1f} s, {signed / elapsed:,.0f} events/s"
            )
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as out:
        out.write(MAGIC)
        if order == "export":
            for hub_no, _ in sorted(done, key=lambda d: d[1]):
                with open(parts_dir / f"{hub_no}.part", "rb") as part:
                    shutil.copyfileobj(part, out, 1 << 20)
        else:
            _interleave([_read_frames(parts_dir / f"{i}.part") for i in range(hubs)], out)
    tmp.replace(path)
    shutil.rmtree(parts_dir)
    progress(
        f"  wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s"
    )
    return path


def _interleave(chains: list[Iterator[bytes]], out: Any) -> None:
    rng = random.Random(20261125)
    live = list(chains)
    while live:
        i = rng.randrange(len(live))
        run = rng.randint(1, 100)
        for _ in range(run):
            raw = next(live[i], None)
            if raw is None:
                live.pop(i)
                break
            out.write(_FRAME.pack(len(raw)) + raw)


def load_records(path: Path) -> list[bytes]:
    with open(path, "rb") as f:
        return [raw for _, raw in read_hublog(f)]
