"""Auditing .hublog files and data folders: every signature, link and seq, streamed."""

from __future__ import annotations

from pathlib import Path

import msgspec

from hubnode import Auditor, AuditReport, HubFolder, Reason, SigningKey, audit_file, audit_folder
from hubnode.events.envelope import event_id, seal
from hubnode.events.ids import hub_display
from hubnode.hublog import MAGIC, HublogWriter
from hubnode.testing import ChainWriter

from .conftest import NET, chain, registered, update


def write_hublog(path: Path, records: list[bytes]) -> list[int]:
    """Write ``records`` as a .hublog; returns each record's frame offset."""
    offsets = []
    with open(path, "wb") as f:
        writer = HublogWriter(f)
        for raw in records:
            offsets.append(writer.size)
            writer.write(raw)
    return offsets


def three_hubs() -> list[tuple[ChainWriter, list[bytes]]]:
    return sorted((chain(n) for n in (5, 3, 4)), key=lambda c: c[0].hub)


def per_hub(report: AuditReport) -> dict[bytes, tuple[int, int, bytes, list[int], int]]:
    return {
        hub: (h.events, h.head_seq, h.head_id, h.forks, h.bad) for hub, h in report.hubs.items()
    }


def test_clean_multi_hub_log_verifies(tmp_path: Path):
    hubs = three_hubs()
    path = tmp_path / "clean.hublog"
    write_hublog(path, [raw for _, records in hubs for raw in records])
    report = audit_file(path)
    assert report.ok()
    assert (report.records, report.failure_count, report.forks) == (12, 0, 0)
    assert report.format_error is None
    for writer, records in hubs:
        hub = report.hubs[writer.hub]
        assert (hub.events, hub.head_seq, hub.head_id) == (len(records), len(records), writer.head)
        assert hub.verified


def test_hubs_may_be_interleaved_as_long_as_each_is_in_seq_order(tmp_path: Path):
    hubs = three_hubs()
    interleaved = [raw for i in range(5) for _, rs in hubs for raw in rs[i : i + 1]]
    path = tmp_path / "mixed.hublog"
    write_hublog(path, interleaved)
    report = audit_file(path)
    assert report.ok()
    assert {h: r.head_seq for h, r in report.hubs.items()} == {w.hub: len(rs) for w, rs in hubs}


def test_empty_log_verifies(tmp_path: Path):
    path = tmp_path / "empty.hublog"
    write_hublog(path, [])
    report = audit_file(path)
    assert report.ok() and report.records == 0 and report.hubs == {}


def test_tampered_byte_names_hub_seq_offset_and_reason(tmp_path: Path):
    hubs = three_hubs()
    records = [raw for _, rs in hubs for raw in rs]
    victim, victim_records = hubs[1]
    index = records.index(victim_records[2])  # the victim's seq 3
    tampered = bytearray(records[index])
    tampered[-70] ^= 0x01  # a byte of the body, inside the signed envelope
    records[index] = bytes(tampered)
    path = tmp_path / "tampered.hublog"
    offsets = write_hublog(path, records)

    report = audit_file(path)
    assert not report.ok()
    first = report.failures[0]
    assert (first.hub, first.seq, first.reason) == (victim.hub, 3, Reason.BAD_SIGNATURE)
    assert first.where == f"byte offset {offsets[index]}"
    assert hub_display(victim.hub) in str(first) and "seq 3" in str(first)
    assert str(offsets[index]) in str(first) and "bad_signature" in str(first)
    # The victim's chain stops verifying there; the other hubs are untouched.
    assert report.hubs[victim.hub].head_seq == 2
    assert not report.hubs[victim.hub].verified
    for writer, rs in hubs:
        if writer is not victim:
            assert report.hubs[writer.hub].verified
            assert report.hubs[writer.hub].head_seq == len(rs)


def test_tampered_last_record_marks_its_hub_unverified(tmp_path: Path):
    writer, records = chain(3)
    records[-1] = records[-1][:-1] + bytes([records[-1][-1] ^ 0x80])  # the signature
    path = tmp_path / "last.hublog"
    write_hublog(path, records)
    report = audit_file(path)
    assert not report.ok()
    assert report.failures[0].reason is Reason.BAD_SIGNATURE
    assert report.hubs[writer.hub].head_seq == 2
    assert not report.hubs[writer.hub].verified


def test_gap_in_a_chain_is_a_bad_seq_at_the_next_record(tmp_path: Path):
    writer, records = chain(5)
    path = tmp_path / "gap.hublog"
    offsets = write_hublog(path, records[:2] + records[3:])
    report = audit_file(path)
    assert not report.ok()
    (failure,) = report.failures
    assert (failure.hub, failure.seq, failure.reason) == (writer.hub, 4, Reason.BAD_SEQ)
    assert failure.where == f"byte offset {offsets[2]}"
    hub = report.hubs[writer.hub]
    assert (hub.head_seq, hub.bad) == (2, 2)  # seq 5 cannot be placed after the break


def test_reordered_pair_is_reported(tmp_path: Path):
    writer, records = chain(4)
    records[1], records[2] = records[2], records[1]
    path = tmp_path / "reordered.hublog"
    write_hublog(path, records)
    report = audit_file(path)
    assert not report.ok()
    assert (report.failures[0].seq, report.failures[0].reason) == (3, Reason.BAD_SEQ)
    assert report.hubs[writer.hub].head_seq == 1


def test_duplicated_record_is_reported(tmp_path: Path):
    writer, records = chain(3)
    path = tmp_path / "dup.hublog"
    offsets = write_hublog(path, [*records[:2], records[1], records[2]])
    report = audit_file(path)
    assert not report.ok()
    (failure,) = report.failures
    assert (failure.seq, failure.reason, failure.where) == (
        2,
        Reason.BAD_SEQ,
        f"byte offset {offsets[2]}",
    )
    assert report.forks == 0
    assert report.hubs[writer.hub].head_seq == 3


def test_wrong_prev_is_a_prev_mismatch(tmp_path: Path):
    writer, records = chain(2)
    env = msgspec.structs.replace(
        writer.envelope("hub.profile_updated", update(3)), prev=b"\x00" * 32
    )
    path = tmp_path / "prev.hublog"
    write_hublog(path, [*records, seal(env, writer.key)])
    report = audit_file(path)
    assert [f.reason for f in report.failures] == [Reason.PREV_MISMATCH]


def test_truncated_file_is_a_format_error_after_the_good_records(tmp_path: Path):
    writer, records = chain(4)
    path = tmp_path / "cut.hublog"
    write_hublog(path, records)
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    report = audit_file(path)
    assert not report.ok()
    assert report.format_error is not None and "truncated" in report.format_error
    assert report.records == 3
    assert report.hubs[writer.hub].head_seq == 3
    assert report.failure_count == 0


def test_bad_magic_is_a_format_error(tmp_path: Path):
    path = tmp_path / "bad.hublog"
    path.write_bytes(b"NOTALOG\n")
    report = audit_file(path)
    assert not report.ok()
    assert report.format_error is not None and "not a .hublog" in report.format_error
    assert report.records == 0


def test_fork_pair_is_reported_as_a_fork(tmp_path: Path):
    writer, records = chain(2)
    twin = writer.fork()
    a = writer.next("hub.profile_updated", update(3))
    b = twin.next("hub.profile_updated", update(30))
    path = tmp_path / "fork.hublog"
    write_hublog(path, [*records, a, b])
    report = audit_file(path)
    assert report.forks == 1
    assert report.hubs[writer.hub].forks == [3]
    assert report.failure_count == 0
    assert not report.ok()
    assert report.ok(allow_forks=True)
    assert report.hubs[writer.hub].head_id == event_id(a)  # the first one stays the chain


def test_records_of_another_network_in_the_same_file_are_reported(tmp_path: Path):
    _, ours = chain(2)
    _, theirs = chain(2, net="another-net")
    path = tmp_path / "nets.hublog"
    write_hublog(path, ours + theirs)
    report = audit_file(path)
    assert [f.reason for f in report.failures] == [Reason.WRONG_NETWORK] * 2


def test_undecodable_body_is_reported_but_the_chain_still_holds(tmp_path: Path):
    writer, records = chain(2)
    records.append(writer.next("no.such_kind", b"\x80"))
    records.append(writer.next("hub.profile_updated", update(4)))
    path = tmp_path / "kind.hublog"
    write_hublog(path, records)
    report = audit_file(path)
    assert [(f.seq, f.reason) for f in report.failures] == [(3, Reason.UNKNOWN_KIND)]
    assert report.hubs[writer.hub].head_seq == 4


def test_garbage_frame_is_a_failure_not_a_crash(tmp_path: Path):
    _, records = chain(2)
    path = tmp_path / "garbage.hublog"
    offsets = write_hublog(path, [records[0], b"\x91" * 3000 + b"\xc0", records[1]])
    report = audit_file(path)
    assert [(f.where, f.reason) for f in report.failures] == [
        (f"byte offset {offsets[1]}", Reason.MALFORMED_RECORD)
    ]
    assert report.records == 3


def test_progress_reports_every_byte_read(tmp_path: Path):
    _, records = chain(3)
    path = tmp_path / "p.hublog"
    write_hublog(path, records)
    seen: list[int] = []
    audit_file(path, on_progress=seen.append)
    assert sum(seen) == path.stat().st_size - len(MAGIC)


def test_chunking_does_not_change_the_report():
    hubs = [chain(7) for _ in range(4)]
    twin = hubs[0][0].fork()
    twin.seq, twin.head = 3, event_id(hubs[0][1][2])
    fork = twin.next("hub.profile_updated", update(99))
    stream = [raw for i in range(7) for _, rs in hubs for raw in rs[i : i + 1]]
    stream.insert(stream.index(hubs[0][1][3]) + 1, fork)  # right after its seq, as exported
    stream.insert(5, stream[3])  # a duplicate
    stream.append(b"junk")
    labelled = [(f"#{i}", raw) for i, raw in enumerate(stream)]

    def audit(chunk: int, workers: int) -> AuditReport:
        auditor = Auditor("t", workers=workers)
        for i in range(0, len(labelled), chunk):
            auditor.feed(labelled[i : i + chunk])
        return auditor.finish()

    whole = audit(len(labelled), 1)
    assert whole.failure_count == 2 and whole.forks == 1
    for chunk, workers in ((1, 1), (3, 2), (5, 4)):
        report = audit(chunk, workers)
        assert per_hub(report) == per_hub(whole)
        assert report.failures == whole.failures
        assert report.records == whole.records == len(stream)


# -- data folders and exports -----------------------------------------------------------------


async def make_folder(tmp_path: Path) -> tuple[Path, HubFolder]:
    path = tmp_path / "hub"
    folder = HubFolder.init(path, name="Alpha", network=NET)
    other, other_records = chain(4)
    twin = other.fork()
    twin.seq, twin.head = 2, event_id(other_records[1])
    fork = twin.next("hub.profile_updated", update(30))
    async with await folder.open_log() as log:
        await log.append("hub.registered", registered("Alpha"))
        await log.ingest(other_records)
        for i in range(2, 6):
            await log.append("hub.profile_updated", update(i))
        await log.ingest([fork, chain(3)[1][0]])
    return path, folder


async def export(folder: HubFolder, path: Path) -> Path:
    async with await folder.open_log(with_key=False) as log:
        with open(path, "wb") as f:
            writer = HublogWriter(f)
            async for raw in log.export_records():
                writer.write(raw)
    return path


async def test_audit_of_an_export_written_by_the_log(tmp_path: Path):
    _, folder = await make_folder(tmp_path)
    report = audit_file(await export(folder, tmp_path / "export.hublog"))
    assert report.failure_count == 0 and report.format_error is None
    assert report.forks == 1
    assert report.ok(allow_forks=True) and not report.ok()
    own = report.hubs[folder.hub]
    assert (own.events, own.head_seq) == (5, 5)
    assert report.records == 5 + 4 + 1 + 1  # own, other (+ fork evidence), a third hub


async def test_audit_folder_matches_the_audit_of_its_export(tmp_path: Path):
    path, folder = await make_folder(tmp_path)
    from_file = audit_file(await export(folder, tmp_path / "export.hublog"))
    progress: list[int] = []
    from_folder = await audit_folder(path, on_progress=progress.append)
    assert per_hub(from_folder) == per_hub(from_file)
    assert (from_folder.records, from_folder.forks, from_folder.failure_count) == (
        from_file.records,
        from_file.forks,
        from_file.failure_count,
    )
    assert sum(progress) == from_folder.records
    assert from_folder.ok(allow_forks=True)


async def test_audit_folder_checks_every_signature_again(tmp_path: Path):
    # Audit trusts no stored bytes: a record altered inside the database is caught.
    import sqlite3

    path, folder = await make_folder(tmp_path)
    db = sqlite3.connect(folder.log_path)
    raw, pos = db.execute(
        "SELECT raw, pos FROM events WHERE hub = ? AND seq = 3", (folder.hub,)
    ).fetchone()
    altered = raw[:-1] + bytes([raw[-1] ^ 0x01])
    db.execute("UPDATE events SET raw = ? WHERE pos = ?", (altered, pos))
    db.commit()
    db.close()
    report = await audit_folder(path)
    assert not report.ok(allow_forks=True)
    assert (report.failures[0].hub, report.failures[0].seq) == (folder.hub, 3)
    assert report.failures[0].reason is Reason.BAD_SIGNATURE


def test_auditor_accepts_any_hub_and_key(tmp_path: Path):
    writers = [ChainWriter(NET, SigningKey.from_seed(bytes([i]) * 32)) for i in range(3)]
    records = [w.next("hub.registered", registered(f"H{i}")) for i, w in enumerate(writers)]
    path = tmp_path / "any.hublog"
    write_hublog(path, records)
    assert audit_file(path).ok()
