"""Issue 12 item 1: small-order and non-canonical Ed25519 keys are refused as hub ids.

The attack: a trusted hub appended ``hub.admitted`` for the identity point (``hub:aeaa…``).
OpenSSL verifies any message under that "key" with the signature R = identity, S = 0, so
anyone on NATS could then write as that hub, and the forged hub could admit more keys.
Every place a key enters is closed here: hub ids in bodies and on the command line, the
trust list in hubnode.toml, the trust set, the envelope's ``hub``/``key`` and
``crypto.verify`` itself.

The curve arithmetic below is a second, independent model (affine points, x recovered),
to cross-check hubnode's (which reads y alone).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from hubnode import ConfigError, EventLog, HubFolder, InvalidEvent, SigningKey, Status, crypto
from hubnode.events.envelope import (
    FORMAT_VERSION,
    Envelope,
    WireRecord,
    encode_envelope,
    event_id,
)
from hubnode.events.fields import HUB_ID_PATTERN, HubId
from hubnode.events.ids import hub_display, parse_hub
from hubnode.events.kinds import KINDS
from hubnode.events.network import HubAdmitted
from hubnode.testing import ChainWriter
from hubnode.trust import TrustSet, fold_admissions

from .conftest import NET, registered, shared_fixture

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, -1, P) % P

SMALL_ORDER = {
    # The 8 points of order dividing 8, canonically encoded, with their order: the list
    # from the literature (libsodium's blocklist; Chalkias et al., "Taming the many
    # EdDSAs", 2020), to cross-check what hubnode computes.
    "0100000000000000000000000000000000000000000000000000000000000000": 1,  # identity
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f": 2,  # (0, -1)
    "0000000000000000000000000000000000000000000000000000000000000000": 4,
    "0000000000000000000000000000000000000000000000000000000000000080": 4,
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05": 8,
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85": 8,
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a": 8,
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa": 8,
}
TORSION = [bytes.fromhex(k) for k in SMALL_ORDER]
IDENTITY = TORSION[0]


def encoding(y: int, sign: int = 0) -> bytes:
    """The 32 bytes of y (little-endian) with the sign bit of x on top, y taken as is."""
    return (y | sign << 255).to_bytes(32, "little")


NON_CANONICAL = {
    "identity as y = p + 1": encoding(P + 1),
    "identity as y = p + 1, sign bit set": encoding(P + 1, 1),
    "identity with the sign bit set (x = 0)": encoding(1, 1),
    "(0, -1) with the sign bit set (x = 0)": encoding(P - 1, 1),
    "order 4 as y = p": encoding(P),
    "y = p + 2": encoding(P + 2),
    "y = 2^255 - 1": encoding(2**255 - 1),
}
WEAK = TORSION + list(NON_CANONICAL.values())
WEAK_IDS = [f"order-{o}-{k[:8]}" for k, o in SMALL_ORDER.items()] + list(NON_CANONICAL)

EVERY_WEAK_KEY = frozenset(
    [encoding(y, s) for y in range(P, 2**255) for s in (0, 1)]  # y >= p: 38
    + [encoding(1, 1), encoding(P - 1, 1)]  # x = 0 with the sign bit set: 2
    + TORSION  # small order: 8
)
"""Every key hubnode refuses, by the definition in docs/protocol.md: 48."""


# -- an independent affine model of edwards25519 ---------------------------------------------


def affine_decode(raw: bytes) -> tuple[int, int] | None:
    """The point ``raw`` encodes, y reduced mod p as OpenSSL does; None if off the curve."""
    n = int.from_bytes(raw, "little")
    y, sign = (n & ((1 << 255) - 1)) % P, n >> 255
    xx = (y * y - 1) * pow(D * y * y + 1, -1, P) % P
    x = pow(xx, (P + 3) // 8, P)
    if x * x % P != xx:
        x = x * pow(2, (P - 1) // 4, P) % P
    if x * x % P != xx:
        return None
    if x & 1 != sign:
        x = -x % P
    return x, y


def affine_add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    return (
        (x1 * y2 + x2 * y1) * pow(1 + t, -1, P) % P,
        (y1 * y2 + x1 * x2) * pow(1 - t, -1, P) % P,
    )


def affine_times(k: int, point: tuple[int, int]) -> tuple[int, int]:
    result = (0, 1)
    while k:
        if k & 1:
            result = affine_add(result, point)
        point = affine_add(point, point)
        k >>= 1
    return result


def affine_encode(point: tuple[int, int]) -> bytes:
    x, y = point
    return encoding(y, x & 1)


def order(point: tuple[int, int]) -> int | None:
    """The order of ``point`` if it divides 8, else None."""
    return next((n for n in (1, 2, 4, 8) if affine_times(n, point) == (0, 1)), None)


# -- helpers ---------------------------------------------------------------------------------


def forged(env: Envelope) -> bytes:
    """A record "signed" by the identity key: R = identity, S = 0 (OpenSSL accepts it)."""
    return msgspec.msgpack.encode(WireRecord(encode_envelope(env), IDENTITY + bytes(32)))


def openssl_accepts(public: bytes, signature: bytes, data: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
    except Exception:
        return False
    return True


def a_forgery(public: bytes) -> tuple[bytes, bytes] | None:
    """(signature, message) that OpenSSL accepts under ``public`` made without any private
    key: R a small-order point, S = 0. Exists when ``public`` has small order."""
    for i in range(16):
        message = b"hubnode/v1/event\x00forged %d" % i
        for r in TORSION:
            if openssl_accepts(public, r + bytes(32), message):
                return r + bytes(32), message
    return None


def assert_says_why(message: str, raw: bytes) -> None:
    """The message names what is wrong with the key ``raw``."""
    small = SMALL_ORDER.get(raw.hex())
    if small is None:
        assert "non-canonical encoding" in message, message
        return
    assert "anyone can forge signatures" in message, message
    assert ("identity point" if small == 1 else f"small order {small}") in message, message


# -- (a) the attack, end to end ------------------------------------------------------------


async def test_a_vouch_for_the_identity_point_opens_no_write_path(tmp_path: Path) -> None:
    """Issue 12 item 1: a hub.admitted naming the identity point is refused, and so is
    every record "signed" by that key or by a key it would admit."""
    voucher = ChainWriter(NET)
    async with await EventLog.open(
        tmp_path / "log.sqlite3", net=NET, key=SigningKey.generate()
    ) as log:
        trust = TrustSet(log.hub, [voucher.hub])
        vouch = [
            voucher.next("hub.registered", registered("Voucher")),
            voucher.next("hub.admitted", HubAdmitted(hub=hub_display(IDENTITY), name="x")),
        ]
        outcomes = await log.ingest(vouch, trusted=trust.contains)
        assert outcomes[0].status is Status.ACCEPTED
        # The vouch is a body that fails its schema: the voucher's chain stops there.
        assert (outcomes[1].status, outcomes[1].reason) == (Status.REJECTED, "bad_body")
        await fold_admissions(trust, log)
        assert IDENTITY not in trust

        # The forger: no key at all, R = identity and S = 0. Refused even by a node that
        # trusts every hub (an auditor's view), with a reason naming the key.
        fresh = SigningKey.generate()
        seq1 = Envelope(
            FORMAT_VERSION, NET, IDENTITY, IDENTITY, 1, None, 1, "hub.registered",
            msgspec.msgpack.encode(msgspec.to_builtins(registered("Forged"))),
        )  # fmt: skip
        raw1 = forged(seq1)
        for trusted in (trust.contains, lambda hub: True, None):
            [outcome] = await log.ingest([raw1], trusted=trusted)
            assert outcome.status is Status.REJECTED, outcome
        assert outcome.reason == "weak_key"
        assert "identity point" in (outcome.detail or "")

        # A TrustSet never takes such a key, however it is offered.
        with pytest.raises(ValueError, match="identity point"):
            TrustSet(log.hub, [IDENTITY])
        with pytest.raises(ValueError, match="identity point"):
            trust.add_local(IDENTITY)
        with pytest.raises(ValueError, match="identity point"):
            trust.admit(voucher.hub, IDENTITY)

        # What the forged hub would append next: an admission of a fresh key.
        seq2 = msgspec.structs.replace(
            seq1,
            seq=2,
            prev=event_id(raw1),
            kind="hub.admitted",
            body=msgspec.msgpack.encode({"hub": hub_display(fresh.public)}),
        )
        [outcome] = await log.ingest([forged(seq2)], trusted=None)
        assert (outcome.status, outcome.reason) == (Status.REJECTED, "weak_key")
        assert {ev.hub for ev in await log.events()} == {voucher.hub}
        assert trust.members == {log.hub, voucher.hub}


def test_the_forged_signature_is_one_openssl_accepts() -> None:
    """Why refusing the key is needed: OpenSSL verifies R = identity, S = 0 for any
    message under the identity key."""
    for message in (b"", b"any message", bytes(range(256))):
        assert openssl_accepts(IDENTITY, IDENTITY + bytes(32), message)


# -- which keys: the computation, against the literature and an independent model -----------


def test_the_eight_small_order_points_are_the_literatures_list() -> None:
    for raw, expected in zip(TORSION, SMALL_ORDER.values(), strict=True):
        point = affine_decode(raw)
        assert point is not None and affine_encode(point) == raw
        assert order(point) == expected
        reason = crypto.weak_key_reason(raw)
        assert reason is not None
        assert ("identity point" if expected == 1 else f"small order {expected}") in reason
    # They are the whole subgroup: closed under addition (so no ninth point is missing:
    # the torsion subgroup of edwards25519 has exactly 8 elements).
    points = {affine_decode(raw) for raw in TORSION}
    assert {affine_add(a, b) for a in points for b in points if a and b} == points


def test_protocol_md_lists_the_eight_with_their_order_and_hub_id() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    rows = re.findall(r"^ *\| (\d)[^|]* \| `([0-9a-f]{64})` \| `(hub:[a-z2-7]{52})` \|$", doc, re.M)
    assert {raw: int(n) for n, raw, _ in rows} == SMALL_ORDER
    assert all(hub_display(bytes.fromhex(raw)) == shown for _, raw, shown in rows)
    assert "48 byte strings" in doc


def test_every_weak_key_is_refused_and_the_set_has_48() -> None:
    assert len(EVERY_WEAK_KEY) == 48
    for raw in EVERY_WEAK_KEY:
        assert crypto.weak_key_reason(raw) is not None, raw.hex()


def test_keys_next_to_the_boundaries_are_refused_exactly_when_weak() -> None:
    """y near 0, near 1 and near p, with either sign bit."""
    ys = [*range(0, 40), *range(P - 40, 2**255)]
    for raw in (encoding(y, s) for y in ys for s in (0, 1)):
        assert (crypto.weak_key_reason(raw) is not None) == (raw in EVERY_WEAK_KEY), raw.hex()


def test_a_mixed_order_key_and_an_off_curve_value_are_not_refused() -> None:
    """Documented choice: only the 8 small-order points and non-canonical encodings."""
    honest = SigningKey.from_seed(bytes(range(32))).public
    point = affine_decode(honest)
    assert point is not None and affine_times(L, point) == (0, 1)  # prime order
    for raw in TORSION[1:]:
        torsion = affine_decode(raw)
        assert torsion is not None
        mixed = affine_add(point, torsion)
        assert affine_times(L, mixed) != (0, 1)  # not of prime order, not of small order
        assert crypto.weak_key_reason(affine_encode(mixed)) is None
    off_curve = next(encoding(y) for y in range(2, 100) if affine_decode(encoding(y)) is None)
    assert crypto.weak_key_reason(off_curve) is None
    assert hub_display(off_curve) == hub_display(parse_hub(hub_display(off_curve)))
    assert not crypto.verify(off_curve, bytes(64), b"")  # OpenSSL refuses it anyway


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32))
def test_every_key_an_honest_hub_generates_passes(_: int) -> None:
    key = SigningKey.generate()
    assert crypto.weak_key_reason(key.public) is None
    shown = hub_display(key.public)
    assert parse_hub(shown) == key.public
    assert msgspec.convert(shown, HubId) == shown
    assert crypto.verify(key.public, key.sign(b"m"), b"m")


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_any_32_bytes_is_refused_only_if_it_is_one_of_the_48(raw: bytes) -> None:
    assert (crypto.weak_key_reason(raw) is not None) == (raw in EVERY_WEAK_KEY)


def test_the_hub_id_pattern_refuses_exactly_the_48() -> None:
    """The pattern's lookahead is written by hand (a short regex keeps schema errors
    readable); this pins it to the computed set. Each of its alternatives is a product of
    character classes, so if it refused any string outside the set, it would refuse one
    that differs from a weak key in a single character: all of those are tried."""
    pattern = re.compile(HUB_ID_PATTERN)
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    weak_ids = {hub_display(raw) for raw in EVERY_WEAK_KEY}
    for shown in weak_ids:
        assert not pattern.search(shown), shown
        for i in range(len("hub:"), len(shown)):
            for c in alphabet:
                near = shown[:i] + c + shown[i + 1 :]
                if near not in weak_ids and near[-1] in "aq":
                    assert pattern.search(near), near


# -- (b) parse_hub and the HubId field -----------------------------------------------------


@pytest.mark.parametrize("raw", WEAK, ids=WEAK_IDS)
def test_parse_hub_refuses_small_order_and_non_canonical_keys(raw: bytes) -> None:
    """Issue 12 item 1: parse_hub refuses the 8 small-order points and non-canonical
    encodings, saying why and what to do."""
    text = hub_display(raw)
    with pytest.raises(ValueError) as caught:
        parse_hub(text)
    message = str(caught.value)
    assert text in message and "\n" not in message
    assert_says_why(message, raw)
    assert "hubnode id" in message  # and what to do


@pytest.mark.parametrize("raw", WEAK, ids=WEAK_IDS)
def test_a_body_naming_a_weak_key_fails_its_schema(raw: bytes) -> None:
    """Issue 12 item 1: hub.admitted (and every other body's hub id) refuses such a key."""
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(hub_display(raw), HubId)
    body = {"hub": hub_display(raw)}
    with pytest.raises(InvalidEvent, match="bad_body"):
        KINDS.decode_body("hub.admitted", msgspec.msgpack.encode(body))
    with pytest.raises(InvalidEvent, match="bad_body"):
        KINDS.body_from_json("hub.admitted", msgspec.json.encode(body))


# -- (c) hubnode peers add -------------------------------------------------------------------


def invoke(runner: CliRunner, *args: str | Path) -> Result:
    from hubnode.cli import app

    return runner.invoke(app, [str(a) for a in args])


def test_peers_add_refuses_every_weak_key(tmp_path: Path) -> None:
    """Issue 12 item 1: `hubnode peers add` refuses such a key: exit 2, one line."""
    runner = CliRunner(env={"HUBNODE_DATA": None, "COLUMNS": "250", "NO_COLOR": "1"})
    data = tmp_path / "hub"
    made = invoke(runner, "init", "--data", data, "--name", "Hub A", "--network", NET)
    assert made.exit_code == 0, made.output
    for raw in WEAK:
        result = invoke(runner, "peers", "add", "--data", data, hub_display(raw))
        assert result.exit_code == 2, result.output
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert hub_display(raw) in result.stderr
        assert_says_why(result.stderr, raw)
    assert HubFolder.open(data).config.trust == ()
    honest = hub_display(SigningKey.generate().public)
    assert invoke(runner, "peers", "add", "--data", data, honest).exit_code == 0


# -- (d) the trust list in hubnode.toml ------------------------------------------------------


def test_a_trust_entry_with_a_weak_key_is_a_config_error(tmp_path: Path) -> None:
    """Issue 12 item 1: hubnode.toml naming such a key in `trust` does not open."""
    HubFolder.init(tmp_path, name="Hub A", network=NET)
    cfg = tmp_path / "hubnode.toml"
    settings = tomllib.loads(cfg.read_text())
    for raw in WEAK:
        settings["trust"] = [{"id": hub_display(raw), "name": "weak"}]
        cfg.write_bytes(msgspec.toml.encode(settings))
        with pytest.raises(ConfigError) as caught:
            HubFolder.open(tmp_path)
        message = str(caught.value)
        assert str(cfg) in message and "\n" not in message
        assert hub_display(raw) in message
        assert_says_why(message, raw)


def test_a_trust_entry_must_be_written_in_display_form(tmp_path: Path) -> None:
    HubFolder.init(tmp_path, name="Hub A", network=NET)
    cfg = tmp_path / "hubnode.toml"
    settings = tomllib.loads(cfg.read_text())
    shown = hub_display(SigningKey.generate().public)
    for spelt, says in (
        ("hub:" + shown[4:].upper(), "must be written"),
        (shown[:-1] + "b", "base32"),
    ):
        settings["trust"] = [{"id": spelt}]
        cfg.write_bytes(msgspec.toml.encode(settings))
        with pytest.raises(ConfigError, match=says):
            HubFolder.open(tmp_path)
    settings["trust"] = [{"id": shown}]
    cfg.write_bytes(msgspec.toml.encode(settings))
    assert [t.id for t in HubFolder.open(tmp_path).config.trust] == [shown]


# -- (e) crypto.verify ---------------------------------------------------------------------------


@pytest.mark.parametrize("raw", WEAK, ids=WEAK_IDS)
def test_verify_refuses_a_weak_key_even_where_openssl_accepts(raw: bytes) -> None:
    """Issue 12 item 1: crypto.verify refuses such a public key outright."""
    forgery = a_forgery(raw)
    point = affine_decode(raw)
    if point is not None and order(point) is not None:  # a small-order point, however spelt
        assert forgery is not None, "OpenSSL accepts a forgery under every small-order key"
    signature, message = forgery or (IDENTITY + bytes(32), b"m")
    assert not crypto.verify(raw, signature, message)


def test_no_wycheproof_case_uses_a_refused_key() -> None:
    """So every Wycheproof outcome is what it was (tests/test_wycheproof.py)."""
    suite = json.loads(shared_fixture("wycheproof-ed25519", "ed25519_test.json").read_text())
    keys = {bytes.fromhex(g["publicKey"]["pk"]) for g in suite["testGroups"]}
    assert len(keys) == 52
    assert [k.hex() for k in keys if crypto.weak_key_reason(k) is not None] == []
