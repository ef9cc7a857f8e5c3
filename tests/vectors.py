"""Protocol test vectors for docs/protocol.md, built from fixed seeds with hubnode's own code.

Ed25519 signatures are deterministic (RFC 8032), so the same seeds always give the same
bytes. ``tests/test_vectors.py`` checks that the document carries exactly these blocks and
checks the vectors independently of this module.

    python -m tests.vectors          # print the ```vector blocks for docs/protocol.md
    python -m tests.vectors --check  # exit 1 if docs/protocol.md differs from them
    python -m tests.vectors --write  # rewrite the doc's blocks in place, by vector name
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Final

import msgspec

from hubnode.crypto import SigningKey
from hubnode.events.envelope import (
    FORMAT_VERSION,
    Envelope,
    encode_envelope,
    event_id,
    seal,
    signed_bytes,
)
from hubnode.events.ids import hub_display
from hubnode.events.kinds import KINDS, Body
from hubnode.events.network import HubProfileUpdated, HubRegistered
from hubnode.hublog import HublogWriter

DOC: Final = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"

SEED_A: Final = bytes(range(0x00, 0x20))
SEED_B: Final = bytes(range(0x20, 0x40))
NET: Final = "darlington-csn"
TS: Final = 1_767_225_600_000  # 2026-01-01T00:00:00Z
TS_LATER: Final = TS + 60_000
IDENTITY: Final = b"\x01" + bytes(31)
"""The identity point: a small-order "key" under which anyone can sign (docs: Identity)."""

Vector = dict[str, str]

_FENCE: Final = re.compile(r"^```vector\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _hex(data: bytes) -> str:
    return data.hex()


def key_vector(name: str, seed: bytes) -> Vector:
    key = SigningKey.from_seed(seed)
    return {
        "vector": name,
        "seed": _hex(seed),
        "public_key": _hex(key.public),
        "hub_id": hub_display(key.public),
    }


def event_vector(name: str, key: SigningKey, env: Envelope, body: Body) -> Vector:
    """Every intermediate value of one signed event, as the document lists them."""
    envelope = encode_envelope(env)
    raw = seal(env, key)
    record = msgspec.msgpack.decode(raw)
    return {
        "vector": name,
        "v": str(env.v),
        "net": env.net,
        "hub": _hex(env.hub),
        "key": _hex(env.key),
        "seq": str(env.seq),
        "prev": "nil" if env.prev is None else _hex(env.prev),
        "ts": str(env.ts),
        "kind": env.kind,
        "body_fields": msgspec.json.encode(body).decode(),
        "body": _hex(env.body),
        "envelope": _hex(envelope),
        "signed_bytes": _hex(signed_bytes(envelope)),
        "signature": _hex(record[1]),
        "record": _hex(raw),
        "id": _hex(event_id(raw)),
    }


def check_vector(
    name: str, expect: str, change: str, raw: bytes, *, reason: str = "", after: str = ""
) -> Vector:
    """A record a verifier for network ``NET`` must accept, or reject with ``reason``."""
    vector = {"vector": name, "expect": expect}
    if reason:
        vector["reason"] = reason
    if after:
        vector["after"] = after
    vector["change"] = change
    vector["record"] = _hex(raw)
    return vector


def _env(
    key: SigningKey,
    seq: int,
    prev: bytes | None,
    ts: int,
    kind: str,
    body: bytes,
    *,
    net: str = NET,
    hub: bytes | None = None,
    v: int = FORMAT_VERSION,
) -> Envelope:
    return Envelope(v, net, hub or key.public, key.public, seq, prev, ts, kind, body)


def _signed_raw(key: SigningKey, envelope_bytes: bytes) -> bytes:
    """A canonical record around arbitrary (possibly invalid) envelope bytes."""
    signature = key.sign(signed_bytes(envelope_bytes))
    return msgspec.msgpack.encode([envelope_bytes, signature])


def build() -> list[Vector]:
    """All vectors, in the order the document lists them."""
    key_a, key_b = SigningKey.from_seed(SEED_A), SigningKey.from_seed(SEED_B)

    registered = HubRegistered(
        name="Darlington Advice Hub",
        roles=("gateway", "follow-up"),
        area="Darlington town centre",
        contact="advice@example.org",
    )
    moved = HubProfileUpdated(area="Darlington and Newton Aycliffe")
    recontact = HubProfileUpdated(contact="help@example.org")
    volunteers = HubRegistered(
        name="Volunteer Centre",
        roles=("direct-delivery", "new-services"),
        area="Borough-wide",
        contact="volunteer@example.org",
    )

    def body(kind: str, value: Body) -> bytes:
        return KINDS.encode_body(kind, value)

    env_a1 = _env(key_a, 1, None, TS, "hub.registered", body("hub.registered", registered))
    raw_a1 = seal(env_a1, key_a)
    id_a1 = event_id(raw_a1)
    env_a2 = _env(
        key_a, 2, id_a1, TS_LATER, "hub.profile_updated", body("hub.profile_updated", moved)
    )
    env_a2_fork = _env(
        key_a, 2, id_a1, TS_LATER, "hub.profile_updated", body("hub.profile_updated", recontact)
    )
    env_b1 = _env(key_b, 1, None, TS, "hub.registered", body("hub.registered", volunteers))

    vectors = [
        key_vector("key-a", SEED_A),
        key_vector("key-b", SEED_B),
        event_vector("event-a1", key_a, env_a1, registered),
        event_vector("event-a2", key_a, env_a2, moved),
        event_vector("event-a2-fork", key_a, env_a2_fork, recontact),
        event_vector("event-b1", key_b, env_b1, volunteers),
    ]

    buf = _Buffer()
    writer = HublogWriter(buf)
    writer.write(raw_a1)
    writer.write(seal(env_a2, key_a))
    vectors.append({"vector": "hublog-a1-a2", "file": _hex(bytes(buf.data))})

    env_a1_bytes = encode_envelope(env_a1)
    signature_a1 = msgspec.msgpack.decode(raw_a1)[1]
    # bin 16 header (c5 00 nn) where bin 8 (c4 nn) is the shortest: same signed envelope.
    long_header = (
        b"\x92\xc5" + len(env_a1_bytes).to_bytes(2, "big") + env_a1_bytes + b"\xc4\x40"
    ) + signature_a1
    # v = 1 as uint 8 (cc 01) instead of positive fixint 01, validly signed.
    assert env_a1_bytes[:2] == b"\x99\x01"
    wide_int = b"\x99\xcc\x01" + env_a1_bytes[2:]
    # hub = key = the identity point, "signed" with R = identity and S = 0: no key needed.
    identity_a1 = msgspec.structs.replace(env_a1, hub=IDENTITY, key=IDENTITY)
    forged_a1 = msgspec.msgpack.encode([encode_envelope(identity_a1), IDENTITY + bytes(32)])
    flipped = bytearray(raw_a1)
    flipped[-1] ^= 0x01
    a1_fields = msgspec.to_builtins(registered)

    vectors += [
        check_vector(
            "accept-body-key-order",
            "accept",
            "event-a1 with its body map keys in another order (contact first), re-signed; "
            "bodies are not re-encoded, so any valid map is accepted (the id differs)",
            seal(
                _env(
                    key_a,
                    1,
                    None,
                    TS,
                    "hub.registered",
                    msgspec.msgpack.encode(
                        {"contact": a1_fields["contact"]}
                        | {k: v for k, v in a1_fields.items() if k != "contact"}
                    ),
                ),
                key_a,
            ),
        ),
        check_vector(
            "reject-record-long-header",
            "reject",
            "event-a1's record with the envelope under a bin 16 header; the signature "
            "still verifies, but the same event would have a second id",
            long_header,
            reason="non_canonical",
        ),
        check_vector(
            "reject-envelope-wide-int",
            "reject",
            "event-a1's envelope with v encoded as uint 8 (cc 01), re-signed",
            _signed_raw(key_a, wide_int),
            reason="non_canonical",
        ),
        check_vector(
            "reject-net-trailing-newline",
            "reject",
            'event-a1 with net "darlington-csn\\n", re-signed',
            seal(_env(key_a, 1, None, TS, env_a1.kind, env_a1.body, net=NET + "\n"), key_a),
            reason="malformed_envelope",
        ),
        check_vector(
            "reject-format-version-2",
            "reject",
            "event-a1 with v = 2, re-signed",
            seal(_env(key_a, 1, None, TS, env_a1.kind, env_a1.body, v=2), key_a),
            reason="unsupported_version",
        ),
        check_vector(
            "reject-wrong-network",
            "reject",
            'event-a1 with net "other-net", re-signed (the verifier is on darlington-csn)',
            seal(_env(key_a, 1, None, TS, env_a1.kind, env_a1.body, net="other-net"), key_a),
            reason="wrong_network",
        ),
        check_vector(
            "reject-key-not-in-force",
            "reject",
            "event-a1 with key = key-b's public key, signed by key-b",
            seal(_env(key_b, 1, None, TS, env_a1.kind, env_a1.body, hub=key_a.public), key_b),
            reason="key_not_in_force",
        ),
        check_vector(
            "reject-weak-key",
            "reject",
            "event-a1 with hub = key = the identity point 0100…00, and as signature R = "
            "0100…00 and S = 0, which OpenSSL accepts for any message under that key",
            forged_a1,
            reason="weak_key",
        ),
        check_vector(
            "reject-bad-signature",
            "reject",
            "event-a1's record with the last signature bit flipped",
            bytes(flipped),
            reason="bad_signature",
        ),
        check_vector(
            "reject-seq2-without-prev",
            "reject",
            "event-a2 with prev = nil, re-signed",
            seal(_env(key_a, 2, None, TS_LATER, env_a2.kind, env_a2.body), key_a),
            reason="bad_seq",
        ),
        check_vector(
            "reject-prev-mismatch",
            "reject",
            "event-a2 with prev = 32 bytes 0xaa, re-signed, received after event-a1",
            seal(_env(key_a, 2, b"\xaa" * 32, TS_LATER, env_a2.kind, env_a2.body), key_a),
            reason="prev_mismatch",
            after="event-a1",
        ),
        check_vector(
            "reject-unknown-kind",
            "reject",
            'event-a1 with kind "hub.closed", re-signed',
            seal(_env(key_a, 1, None, TS, "hub.closed", env_a1.body), key_a),
            reason="unknown_kind",
        ),
        check_vector(
            "reject-bad-body",
            "reject",
            'event-a1 with a body lacking "contact", re-signed',
            seal(
                _env(
                    key_a,
                    1,
                    None,
                    TS,
                    env_a1.kind,
                    msgspec.msgpack.encode({k: v for k, v in a1_fields.items() if k != "contact"}),
                ),
                key_a,
            ),
            reason="bad_body",
        ),
        check_vector(
            "reject-newer-body-version",
            "reject",
            'event-a1 with "_v": 2 added to the body, re-signed',
            seal(
                _env(
                    key_a, 1, None, TS, env_a1.kind, msgspec.msgpack.encode({"_v": 2, **a1_fields})
                ),
                key_a,
            ),
            reason="body_version",
        ),
    ]
    return vectors


class _Buffer:
    """The smallest binary sink HublogWriter needs."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> int:
        self.data += data
        return len(data)


def render(vectors: list[Vector]) -> str:
    """The ```vector blocks, one per vector, separated by blank lines."""
    return "\n\n".join(
        "```vector\n" + "".join(f"{k}: {v}\n" for k, v in vector.items()) + "```"
        for vector in vectors
    )


def parse(text: str) -> list[Vector]:
    """Every ```vector block of a Markdown text, as ``key: value`` dicts in order."""
    vectors = []
    for block in _FENCE.findall(text):
        vector: Vector = {}
        for line in block.splitlines():
            key, sep, value = line.partition(": ")
            if not sep or key in vector:
                raise ValueError(f"bad vector line {line!r}")
            vector[key] = value
        vectors.append(vector)
    return vectors


def rewrite(text: str, vectors: list[Vector]) -> str:
    """``text`` with each ```vector block replaced by the current vector of the same name."""
    by_name = {v["vector"]: v for v in vectors}

    def current(match: re.Match[str]) -> str:
        name = parse(match.group(0))[0]["vector"]
        if name not in by_name:
            raise ValueError(f"the document has a vector {name!r} that build() does not make")
        return render([by_name[name]])

    return _FENCE.sub(current, text)


def main(argv: list[str]) -> int:
    vectors = build()
    if argv[1:] == ["--check"]:
        if parse(DOC.read_text(encoding="utf-8")) != vectors:
            print(f"{DOC} does not carry the current vectors", file=sys.stderr)
            return 1
        return 0
    if argv[1:] == ["--write"]:
        DOC.write_text(rewrite(DOC.read_text(encoding="utf-8"), vectors), encoding="utf-8")
        return 0
    print(render(vectors))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
