"""Erasure is crypto-shredding: after it, no hub can read the person, whatever it does.

Checked on the bytes: the destroyed data key and the retired seal key are found in the
keyring file before erasure and nowhere in the hub's folder after it; the sealed boxes
still in the signed logs no longer open; restarts and rebuilds change nothing; the logs
still verify.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hubnode import HubFolder
from hubnode.errors import PrivacyError
from hubnode.events.pathway import ConsentRecorded
from hubnode.privacy.keyring import KEYRING_FILE, Keyring
from hubnode.privacy.seal import open_box
from tests.test_pathway_cli import Hubs, as_json, gossip, log_enquiry, ok


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner(env={"HUBNODE_DATA": None, "COLUMNS": "250", "NO_COLOR": "1"})


@pytest.fixture
def hubs(cli: CliRunner, tmp_path: Path) -> Hubs:
    return Hubs(cli, tmp_path)


def everything_in(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


async def consent_box_for(hub: HubFolder, owner: HubFolder) -> ConsentRecorded:
    async with await hub.open_log(with_key=False) as log:
        (ev,) = await log.events(hub=owner.hub, kind="consent.recorded")
    assert isinstance(ev.body, ConsentRecorded)
    return ev.body


@pytest.mark.parametrize("restart", [False, True])
def test_after_erasure_no_hub_can_read_the_person(
    cli: CliRunner, hubs: Hubs, restart: bool
) -> None:
    a, b, c = hubs
    fa, fb = HubFolder.open(a), HubFolder.open(b)
    subject = log_enquiry(cli, a, hubs.ids[1])
    gossip(a, b, c)
    assert as_json(cli, "person", "show", "--data", b, subject)["readable"] is True
    assert as_json(cli, "person", "show", "--data", c, subject)["readable"] is False

    with Keyring.open(fb) as ring:
        data_key = ring.data_key(fa.hub, subject)
        old_seal = ring.seal_key
    with Keyring.open(fa) as ring:
        a_seal = ring.seal_key.private_bytes()
    keyring_b = (b / KEYRING_FILE).read_bytes()
    assert data_key in keyring_b and old_seal.private_bytes() in keyring_b  # the test can see

    ok(cli, "person", "erase", "--data", a, subject, "--reason", "the person asked", "--yes")
    gossip(a, b, c)
    shown = as_json(cli, "person", "show", "--data", b, subject)  # B's keyring catches up
    assert shown["erased"] and not shown["readable"] and shown["details"] == []

    # The data key and both retired seal keys are gone from every byte of A's and B's folders.
    for folder in (a, b):
        blob = everything_in(folder)
        assert data_key not in blob
        assert old_seal.private_bytes() not in blob
        assert a_seal not in blob

    # The box in the signed log no longer opens with B's (new) seal key.
    box = next(k for k in asyncio.run(consent_box_for(fb, fa)).keys if k.hub == hubs.ids[1])
    with Keyring.open(fb) as ring:
        assert ring.seal_key.public != old_seal.public
        with pytest.raises(PrivacyError):
            open_box(fb.config.network, fa.hub, subject, fb.hub, ring.seal_key, box)

    if restart:  # a rebuilt view and a reopened keyring know no more than before
        ok(cli, "projections", "rebuild", "pathway", "--data", b)
    with Keyring.open(fb) as ring, pytest.raises(PrivacyError, match="erased"):
        ring.data_key(fa.hub, subject)
    again = as_json(cli, "person", "show", "--data", b, subject)
    assert again["erased"] and not again["readable"]

    gossip(a, b, c)
    status = as_json(cli, "person", "erasure-status", "--data", a, subject)
    assert status["erased"]
    confirmed = {row["hub"]: row["confirmed"] for row in status["hubs"]}
    assert confirmed == {hubs.ids[0]: True, hubs.ids[1]: True}  # C never held the key

    for folder in (a, b, c):
        ok(cli, "audit", "verify", folder)  # the signed logs still verify
