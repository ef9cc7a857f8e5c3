"""Project Wycheproof Ed25519 vectors: hubnode.crypto.verify agrees with cryptography and
with the vectors' expected results (DESIGN §2: node and auditor must never disagree).

The file holds only "valid" and "invalid" cases today. An "acceptable" case (a signature
that compliant verifiers may accept or reject) is held to agreement with ``cryptography``
only: that library is the one every hub uses, so agreeing with it is what keeps hubs agreeing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from hubnode import crypto

from .conftest import shared_fixture

EXPECTED_CASES = 151


def load_cases() -> list[dict[str, Any]]:
    with open(shared_fixture("wycheproof-ed25519", "ed25519_test.json"), "rb") as f:
        data = json.load(f)
    assert data["algorithm"] == "EDDSA"
    cases = []
    for group in data["testGroups"]:
        assert group["publicKey"]["curve"] == "edwards25519"
        for test in group["tests"]:
            cases.append({**test, "pk": group["publicKey"]["pk"]})
    return cases


CASES = load_cases()


def cryptography_accepts(pk: bytes, sig: bytes, msg: bytes) -> bool:
    """The reference answer: cryptography called directly (a malformed key is a rejection)."""
    try:
        Ed25519PublicKey.from_public_bytes(pk).verify(sig, msg)
    except (InvalidSignature, ValueError):
        return False
    return True


def test_every_case_is_read():
    assert len(CASES) == EXPECTED_CASES
    assert len({c["tcId"] for c in CASES}) == EXPECTED_CASES
    assert {c["result"] for c in CASES} <= {"valid", "invalid", "acceptable"}
    # Both answers are exercised, so a verifier that always says yes (or no) cannot pass.
    assert {c["result"] for c in CASES} >= {"valid", "invalid"}


@pytest.mark.parametrize("case", CASES, ids=[f"tc{c['tcId']}" for c in CASES])
def test_hubnode_verify_agrees_with_cryptography_and_the_vector(case: dict[str, Any]):
    pk, sig, msg = (bytes.fromhex(case[k]) for k in ("pk", "sig", "msg"))
    ours = crypto.verify(pk, sig, msg)
    assert ours == cryptography_accepts(pk, sig, msg), case["comment"]
    if case["result"] != "acceptable":
        assert ours == (case["result"] == "valid"), (case["tcId"], case["comment"], case["flags"])
