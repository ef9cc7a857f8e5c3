"""What must never happen: a person's details in clear anywhere but a reading command's output.

Three hub processes on one real nats-server. Unique personal values (also in Cyrillic,
Chinese and Arabic script) go in through the CLI — enquiry, referral note, follow-up
note — they travel, get read where consent allows, and one person is erased. Then every
byte of every hub's files (logs with their WAL, views, keyring, status, node logs),
the ``.hublog`` exports and every message a test subscriber saw on NATS is searched for
each value as UTF-8, UTF-16, base64 and hex: there must be none.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats

from hubnode.config import HubFolder
from tests.cluster import Cluster, hubnode, hubnode_json, wait_until

PEOPLE = [
    {
        "name": "Quenby Xylofax-Ørnebjerg",
        "phone": "+44 7700 913582",
        "email": "quenby.xylofax.7731@example.net",
        "dob": "1907-11-13",
        "address": "42 Wyvernholt Lane, Darlington",
        "notes": "keeps a budgerigar named Ptolemy Quasar",
    },
    {
        "name": "Дмитрий Зубоскалович",
        "phone": "07700 900461",
        "email": "dmitri.zuboskal@example.org",
        "dob": "1911-04-29",
        "address": "Квартира 7, улица Ленина",
    },
    {"name": "王小明樂天派", "email": "wang.xiaoming.lt@example.com", "dob": "1913-08-17"},
    {"name": "مريم الزهراوي القرطبي", "phone": "+44 1325 771 392"},
]
REFERRAL_NOTE = "prefers calls after Zephyrtide Marrowbrook"
FOLLOWUP_NOTE = "said the Glimmerfold office was shut"


def planted() -> list[str]:
    values = [v for person in PEOPLE for v in person.values()]
    return [*values, REFERRAL_NOTE, FOLLOWUP_NOTE]


def encodings(value: str) -> Iterator[tuple[str, bytes]]:
    """``value`` as it could sit in a file or message: long enough to never match by chance."""
    raw = value.encode()
    yield "utf-8", raw
    yield "utf-16-le", value.encode("utf-16-le")
    yield "utf-16-be", value.encode("utf-16-be")
    yield "hex", raw.hex().encode()
    yield "HEX", raw.hex().upper().encode()
    # base64 of the value at each of the three alignments in a longer stream: keep only the
    # 4-character groups made of the value's bytes alone.
    for shift in range(3):
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            text = encode(bytes(shift) + raw)
            groups = [text[i : i + 4] for i in range(0, len(text), 4)]
            first = 1 if shift else 0
            last = len(groups) if (shift + len(raw)) % 3 == 0 else len(groups) - 1
            core = b"".join(groups[first:last])
            if len(core) >= 8:
                yield f"{name}+{shift}", core


def leaks(blobs: dict[str, bytes]) -> list[str]:
    found = []
    for value in planted():
        for encoding, needle in encodings(value):
            for where, blob in blobs.items():
                if needle in blob:
                    found.append(f"{value!r} as {encoding} in {where}")
    return found


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


async def cli_json(*args: str, stdin: bytes | None = None) -> Any:
    return await hubnode_json(*(str(a) for a in args), stdin=stdin)


async def cli(*args: str, stdin: bytes | None = None) -> str:
    code, out, err = await hubnode(*(str(a) for a in args), stdin=stdin)
    assert code == 0, f"hubnode {' '.join(args)} exited {code}: {err}"
    return out


def test_encodings_find_a_value_wherever_it_sits() -> None:
    value = PEOPLE[1]["name"]
    for encoding, _ in encodings(value):
        blob_by = {
            "utf-8": value.encode(),
            "utf-16-le": value.encode("utf-16-le"),
            "utf-16-be": value.encode("utf-16-be"),
            "hex": value.encode().hex().encode(),
            "HEX": value.encode().hex().upper().encode(),
        }
        for shift in range(3):
            prefixed = b"x" * shift + value.encode() + b"tail"
            blob_by[f"base64+{shift}"] = base64.b64encode(b"ab" + prefixed)
            blob_by[f"base64url+{shift}"] = base64.urlsafe_b64encode(b"ab" + prefixed)
        # Every encoding of the value is found in some natural rendering of it ...
        assert leaks({"blob": b"<" + b"".join(blob_by.values()) + b">"}), encoding
    # ... and nothing is found where the value is not.
    assert leaks({"blob": b"nothing personal here" * 1000}) == []


async def test_no_personal_value_rests_or_travels_in_clear(
    cluster: Cluster, tmp_path: Path
) -> None:
    await cluster.start_server()
    a, b, c = cluster.hubs("a", "b", "c")
    for folder in (a, b, c):
        await cluster.append(folder, 1)  # registered, with its seal key
    seen: list[bytes] = []
    tap = await nats.connect(cluster.url)

    async def capture(msg: Any) -> None:
        seen.append(msg.subject.encode() + b"\n" + (msg.reply or "").encode() + b"\n" + msg.data)

    await tap.subscribe(">", cb=capture)
    try:
        for folder in (a, b, c):
            await cluster.start(folder)
        await cluster.wait_converged([a, b, c], {a: 1, b: 1, c: 1})
        await run_the_pathway(cluster, a, b, c)
    finally:
        await tap.drain()
        await cluster.close()

    exports = tmp_path / "exports"
    exports.mkdir()
    for folder in (a, b, c):
        await cli(
            "log",
            "export",
            "--data",
            str(folder.path),
            "--out",
            str(exports / f"{folder.config.name}.hublog"),
        )
    blobs = files_under(cluster.root) | files_under(exports)
    blobs |= {f"nats message {i}": m for i, m in enumerate(seen)}
    assert any(name.endswith("log.sqlite3-wal") or name.endswith("log.sqlite3") for name in blobs)
    assert sum(len(m) for m in seen) > 0
    assert leaks(blobs) == []


async def run_the_pathway(cluster: Cluster, a: HubFolder, b: HubFolder, c: HubFolder) -> None:
    """Log four people at A (consent: B), refer, accept, complete, follow up, erase one."""
    da, db, dc = (str(f.path) for f in (a, b, c))
    subjects = []
    for person in PEOPLE:
        logged = await cli_json(
            "enquiry", "log", "--data", da, "--from-file", "-", "--need", "housing",
            "--channel", "walk-in", "--area", "DL1", "--consent", b.config.hub_id,
            stdin=json.dumps(person).encode(),
        )  # fmt: skip
        subjects.append(logged["subject"])
    made = await cli_json(
        "referral", "create", "--data", da, "--subject", subjects[0],
        "--to-hub", b.config.hub_id, "--note-file", "-", stdin=REFERRAL_NOTE.encode(),
    )  # fmt: skip
    ref = made["ref"]

    async def b_has(ref: str) -> bool:
        code, _, _ = await hubnode("referral", "show", "--data", db, ref)
        return code == 0

    await wait_until(lambda: b_has(ref), 15, "the referral to reach B")
    await cli("referral", "accept", "--data", db, ref)
    await cli(
        "referral", "complete", "--data", db, ref, "--outcome", "housing found", "--satisfied", "no"
    )

    async def a_sees(status: str) -> bool:
        shown = await cli_json("referral", "show", "--data", da, ref)
        return bool(shown["status"] == status)

    await wait_until(lambda: a_sees("completed"), 15, "A to see the referral completed")
    await cli(
        "followup", "record", "--data", da, ref, "--satisfied", "no",
        "--note-file", "-", "--no-advocacy", stdin=FOLLOWUP_NOTE.encode(),
    )  # fmt: skip

    # The details are real: B reads them (consent), C cannot.
    async def readable(data: str, subject: str, expected: bool) -> bool:
        code, out, _ = await hubnode("person", "show", "--data", data, subject, "--json")
        return code == 0 and json.loads(out)["readable"] is expected

    await wait_until(lambda: readable(db, subjects[0], True), 15, "B to read person 1")
    await wait_until(lambda: readable(dc, subjects[0], False), 15, "C to know of person 1")
    shown = await cli_json("person", "show", "--data", db, subjects[0])
    assert shown["details"][0]["name"] == PEOPLE[0]["name"]
    shown_note = await cli_json("referral", "show", "--data", db, ref)
    assert REFERRAL_NOTE in str(shown_note)

    # Erase person 2: A and B confirm.
    await cli("person", "erase", "--data", da, subjects[1], "--reason", "the person asked", "--yes")

    async def confirmed() -> bool:
        status = await cli_json("person", "erasure-status", "--data", da, subjects[1])
        return all(row["confirmed"] for row in status["hubs"])

    await wait_until(confirmed, 20, "A and B to confirm the erasure")
    for data in (da, db):
        after = await cli_json("person", "show", "--data", data, subjects[1])
        assert after["erased"] and not after["readable"] and after["details"] == []
