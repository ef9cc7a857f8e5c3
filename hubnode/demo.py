"""``make demo``: three hubs sign events, pass their logs to each other, export and audit.

Until the federation layer lands the hubs exchange logs as .hublog files, the way an
operator or auditor would; every step goes through the same code as the CLI.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hubnode.audit import AuditReport, audit_file
from hubnode.config import HubFolder
from hubnode.events.ids import hub_display, short_hub
from hubnode.events.network import HubAdmitted, HubProfileUpdated, HubRegistered, Role
from hubnode.hublog import HublogWriter, read_hublog
from hubnode.store.log import EventLog, Status

NETWORK = "darlington-csn"
HUBS: tuple[tuple[str, tuple[Role, ...], str, str], ...] = (
    (
        "Darlington Advice Hub",
        ("gateway", "follow-up"),
        "Darlington town centre",
        "advice@example.org",
    ),
    (
        "Care Navigators North",
        ("follow-up", "advocacy"),
        "North Darlington",
        "navigators@example.org",
    ),
    (
        "Volunteer Centre",
        ("direct-delivery", "new-services"),
        "Borough-wide",
        "volunteer@example.org",
    ),
)


async def _export(log: EventLog, path: Path) -> int:
    with open(path, "wb") as f:
        writer = HublogWriter(f)
        async for raw in log.export_records():
            writer.write(raw)
    return writer.count


async def run_demo(keep: Path | None, out: Console) -> None:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        await _run(keep, out)
        return
    with tempfile.TemporaryDirectory(prefix="hubnode-demo-") as tmp:
        await _run(Path(tmp), out)


async def _run(root: Path, out: Console) -> None:
    out.print(f"[bold]hubnode demo[/] — network {NETWORK!r}, hubs in {root}\n")
    folders = [
        HubFolder.init(root / f"hub{i + 1}", name=name, network=NETWORK)
        for i, (name, *_rest) in enumerate(HUBS)
    ]
    logs = [await f.open_log() for f in folders]
    try:
        # 1. Each hub registers itself; the gateway admits the others; they answer.
        for log, (name, roles, area, contact) in zip(logs, HUBS, strict=True):
            await log.append(
                "hub.registered", HubRegistered(name=name, roles=roles, area=area, contact=contact)
            )
        first, *others = logs
        await asyncio.gather(
            *(
                first.append(
                    "hub.admitted", HubAdmitted(hub=hub_display(o.hub or b""), name=f.config.name)
                )
                for o, f in zip(others, folders[1:], strict=True)
            )
        )
        for o in others:
            await o.append(
                "hub.admitted", HubAdmitted(hub=hub_display(first.hub or b""), name=HUBS[0][0])
            )
        # Staff at the volunteer centre update its profile many times at once: one group commit.
        updates = [
            logs[2].append(
                "hub.profile_updated", HubProfileUpdated(area=f"Borough-wide (round {n})")
            )
            for n in range(1, 51)
        ]
        await asyncio.gather(*updates)
        out.print(
            "1. each hub signed its events: registered, admitted its peers, updated its profile"
        )

        # 2. Hubs pass their logs around as .hublog files and ingest each other's records.
        exported = []
        for i, log in enumerate(logs):
            path = root / f"hub{i + 1}-own.hublog"
            await _export(log, path)
            exported.append(path)
        for i, log in enumerate(logs):
            for j, path in enumerate(exported):
                if i == j:
                    continue
                with open(path, "rb") as f:
                    outcomes = await log.ingest(raw for _, raw in read_hublog(f))
                accepted = sum(o.status is Status.ACCEPTED for o in outcomes)
                out.print(
                    f"   {folders[i].config.name} ingested {accepted} events of "
                    f"{folders[j].config.name}"
                )
        # Ingest is idempotent: the same file again changes nothing.
        with open(exported[1], "rb") as f:
            again = await logs[0].ingest(raw for _, raw in read_hublog(f))
        dups = sum(o.status is Status.DUPLICATE for o in again)
        out.print(f"2. logs exchanged; re-ingesting a file gave {dups} duplicates and no change")

        # 3. Every hub exports its whole log; an auditor verifies each export.
        reports: list[tuple[str, int, AuditReport]] = []
        for i, log in enumerate(logs):
            path = root / f"hub{i + 1}.hublog"
            count = await _export(log, path)
            reports.append((folders[i].config.name, count, audit_file(path)))
    finally:
        for log in logs:
            await log.close()

    out.print("3. each hub exported its log; audit results:\n")
    table = Table("hub", "hub id", "events held", "own head seq", "own head id", "verified")
    for (name, count, report), folder in zip(reports, folders, strict=True):
        own = report.hubs[folder.hub]
        table.add_row(
            name,
            short_hub(folder.hub) + "…",
            str(count),
            str(own.head_seq),
            own.head_id.hex()[:16],
            "[green]yes[/]" if report.ok() else "[red]NO[/]",
        )
    out.print(table)

    # 4. Tampering is caught: change one byte of one record and audit again.
    path = root / "hub1.hublog"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    tampered = root / "tampered.hublog"
    tampered.write_bytes(bytes(data))
    report = audit_file(tampered)
    verdict = "verified" if report.ok() else "FAILED"
    out.print(f"\n4. one flipped bit in {tampered.name}: audit {verdict}")
    if report.failures:
        out.print(f"   first bad record: {report.failures[0]}", markup=False)
