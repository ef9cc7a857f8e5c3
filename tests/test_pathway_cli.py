"""The pathway on the command line: three hub folders, events copied between them as
gossip would, people's details sealed to the hubs they agreed to."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from hubnode.cli import app
from hubnode.commands import pathway
from tests.conftest import sync

NET = "test-net"


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner(env={"HUBNODE_DATA": None, "COLUMNS": "250", "NO_COLOR": "1"})


def run(cli: CliRunner, *args: str | Path, input: str | None = None) -> Result:
    return cli.invoke(app, [str(a) for a in args], input=input)


def ok(cli: CliRunner, *args: str | Path, input: str | None = None) -> Result:
    result = run(cli, *args, input=input)
    assert result.exit_code == 0, result.output
    return result


def refused(
    cli: CliRunner, *args: str | Path, code: int = 1, says: str, input: str | None = None
) -> Result:
    result = run(cli, *args, input=input)
    assert result.exit_code == code, result.output
    assert says in " ".join(result.output.split()), result.output
    return result


def as_json(cli: CliRunner, *args: str | Path, input: str | None = None) -> Any:
    return json.loads(ok(cli, *args, "--json", input=input).stdout)


def gossip(*hubs: Path) -> None:
    for src in hubs:
        for dst in hubs:
            if src != dst:
                sync(src, dst)


class Hubs:
    """Three registered hubs whose seal keys every hub has heard of."""

    def __init__(self, cli: CliRunner, tmp: Path) -> None:
        self.cli = cli
        self.paths: list[Path] = []
        self.ids: list[str] = []
        for name in ("a", "b", "c"):
            path = tmp / name
            self.ids.append(
                ok(cli, "init", "--data", path, "--name", name, "--network", NET).stdout.strip()
            )
            registered = {
                "name": f"Hub {name}",
                "roles": ["gateway"],
                "area": "Darlington",
                "contact": f"{name}@example.org",
            }
            append = ("log", "append", "--data", path, "--kind", "hub.registered")
            ok(cli, *append, "--json", json.dumps(registered))
            ok(cli, "referral", "list", "--data", path)  # publishes the hub's seal key
            self.paths.append(path)
        gossip(*self.paths)

    def __iter__(self) -> Iterator[Path]:
        return iter(self.paths)


@pytest.fixture
def hubs(cli: CliRunner, tmp_path: Path) -> Hubs:
    return Hubs(cli, tmp_path)


def person(name: str, **fields: str) -> str:
    """The person's details as `enquiry log --from-file -` reads them on stdin."""
    return json.dumps({"name": name, **fields})


def log_enquiry(cli: CliRunner, hub: Path, *consent: str, name: str = "Ada Lovelace") -> str:
    # fmt: off
    args = ["enquiry", "log", "--data", hub, "--from-file", "-",
            "--need", "debt", "--channel", "walk-in", "--area", "dl1", "--json"]
    # fmt: on
    for c in consent:
        args += ["--consent", c]
    logged = json.loads(ok(cli, *args, input=person(name, phone="07700 900123")).stdout)
    subject: str = logged["subject"]
    return subject


def made(result: Result) -> str:
    """The hub:…:ID a `referral create` printed."""
    return result.stdout.split()[-1]


def show(cli: CliRunner, hub: Path, ref: str) -> dict[str, Any]:
    shown: dict[str, Any] = as_json(cli, "referral", "show", "--data", hub, ref)
    return shown


# fmt: off
PUBLISH = ("--id", "debt-advice", "--org", "Darlington CAB", "--name", "Debt advice",
           "--description", "Advice on debts.", "--category", "debt")
# fmt: on


# -- the journey ------------------------------------------------------------------------


def test_enquiry_referral_outcome_followup_and_advocacy_across_three_hubs(
    cli: CliRunner, hubs: Hubs
) -> None:
    a, b, c = hubs
    a_id, b_id, _ = hubs.ids
    ok(cli, "service", "publish", "--data", b, *PUBLISH)
    gossip(a, b, c)
    subject = log_enquiry(cli, a, b_id)
    create = ("referral", "create", "--data", a, "--subject", subject)
    made_json = as_json(
        cli,
        *create,
        "--service",
        f"{b_id}:debt-advice",
        "--note-file",
        "-",
        input="prefers mornings",
    )
    ref = made_json["ref"]
    assert ref == f"{a_id}:{made_json['referral']}"
    gossip(a, b, c)
    assert show(cli, b, ref)["note"] == "prefers mornings"
    assert show(cli, c, ref)["note"] == "[sealed]"  # not in the person's consent
    assert show(cli, b, ref)["next"] == ["accepted", "rejected"]
    refused(cli, "referral", "accept", "--data", c, ref, says="neither the referring hub")
    for step in ("accept", "start"):
        ok(cli, "referral", step, "--data", b, ref)
    ok(
        cli,
        "referral",
        "complete",
        "--data",
        b,
        ref,
        "--outcome",
        "plan agreed",
        "--satisfied",
        "no",
    )
    gossip(a, b, c)
    shown = show(cli, a, ref)
    assert (shown["status"], shown["receiving"]) == ("completed", b_id)
    assert shown["outcome"] == "plan agreed"
    assert [s["what"] for s in shown["timeline"]][:3] == ["accepted", "in-progress", "completed"]

    later = (dt.date.today() + dt.timedelta(days=15)).isoformat()
    [due] = as_json(cli, "followup", "due", "--data", a, "--as-of", later)
    assert (due["ref"], due["why"]) == (ref, "follow-up")
    record = ("followup", "record", "--data", a, ref, "--satisfied", "no")
    worried = "still worried about bailiffs"
    recorded = as_json(cli, *record, "--note-file", "-", "--advocacy", input=worried)
    assert as_json(cli, "followup", "due", "--data", a, "--as-of", later) == []
    [case] = as_json(cli, "advocacy", "list", "--data", a)
    assert (case["case"], case["referral"], case["outcome"]) == (recorded["case"], ref, None)
    close = ("advocacy", "close", "--data", a, case["case"], "--outcome", "resolved")
    ok(cli, *close, "--note-file", "-", input="creditor agreed to wait\n")
    assert as_json(cli, "advocacy", "list", "--data", a) == []
    [closed] = as_json(cli, "advocacy", "list", "--data", a, "--all")
    assert (closed["outcome"], closed["close_note"]) == ("resolved", "creditor agreed to wait")
    gossip(a, b, c)
    [seen_by_c] = as_json(cli, "advocacy", "list", "--data", c, "--all")
    assert seen_by_c["close_note"] == "[sealed]"
    refused(cli, "advocacy", "open", "--data", c, ref, says="this hub cannot open advocacy on")
    opened = as_json(
        cli,
        "advocacy",
        "open",
        "--data",
        b,
        ref,
        "--note-file",
        "-",
        input="will call the creditor",
    )
    gossip(a, b, c)
    [by_b] = as_json(cli, "advocacy", "list", "--data", a, "--hub", hubs.ids[1])
    assert (by_b["case"], by_b["note"]) == (opened["case"], "will call the creditor")

    report = as_json(cli, "pathway", "report", "--data", a)
    assert report["hub"] == a_id
    assert (report["enquiries"], report["by_channel"]["walk-in"]) == (1, 1)
    assert report["by_need"] == {"debt": 1}
    assert report["by_status"]["completed"] == 1
    assert report["outcome_satisfied"] == {"yes": 0, "no": 1, "none": 0}
    assert (report["responded"], report["followup_rate"]) == (1, 1.0)
    text = ok(cli, "pathway", "report", "--data", a).stdout
    assert "follow-up   1 of 1" in text


def test_the_person_is_only_ever_a_pseudonym_in_output_and_in_the_log(
    cli: CliRunner, hubs: Hubs
) -> None:
    a, b, _ = hubs
    name = "Þórunn Quux-Planted"
    log = ("enquiry", "log", "--data", a, "--from-file", "-", "--need", "debt")
    logged = ok(cli, *log, "--channel", "phone", "--consent", hubs.ids[1], input=person(name))
    assert name not in logged.output and "s-" in logged.output
    gossip(a, b)
    for hub in (a, b):
        for f in hub.glob("log.sqlite3*"):
            assert name.encode() not in f.read_bytes()


# -- refusals ---------------------------------------------------------------------------


def test_a_referral_to_a_hub_outside_the_consent_is_refused_saying_how_to_fix_it(
    cli: CliRunner, hubs: Hubs
) -> None:
    a, _, _ = hubs
    _, b_id, c_id = hubs.ids
    subject = log_enquiry(cli, a, b_id)
    create = ("referral", "create", "--data", a, "--subject", subject)
    refused(cli, *create, "--to-hub", c_id, says=f"consent does not name {c_id}")
    fix = f"hubnode consent record --subject {subject} --consent {b_id} --consent {c_id}"
    refused(cli, *create, "--to-hub", c_id, says=fix)
    consent = ("consent", "record", "--data", a, "--subject", subject)
    ok(cli, *consent, "--consent", b_id, "--consent", c_id)
    ok(cli, *create, "--to-hub", c_id)
    ok(cli, *consent, "--consent", b_id, "--purpose", "follow-up")
    refused(cli, *create, "--to-hub", b_id, says="--purpose follow-up --purpose referral")
    ok(cli, *consent, "--consent", b_id)
    ok(cli, "consent", "withdraw", "--data", a, "--subject", subject)
    refused(cli, *create, "--category", "debt", says="names no other hub")
    refused(cli, *create, "--to-hub", b_id, "--category", "debt", code=2, says="exactly one")
    other = ("referral", "create", "--data", a, "--subject", "s-" + "q" * 20, "--to-hub", b_id)
    refused(cli, *other, says="this hub logged no enquiry for")


def test_a_service_with_no_capacity_needs_anyway(cli: CliRunner, hubs: Hubs) -> None:
    a, b, _ = hubs
    b_id = hubs.ids[1]
    ok(cli, "service", "publish", "--data", b, *PUBLISH)
    ok(
        cli,
        "capacity",
        "report",
        "--data",
        b,
        "--id",
        "debt-advice",
        "--status",
        "no-capacity",
        "--as-of",
        "2030-01-02",
    )
    gossip(a, b)
    subject = log_enquiry(cli, a, b_id)
    refer = (
        "referral",
        "create",
        "--data",
        a,
        "--subject",
        subject,
        "--service",
        f"{b_id}:debt-advice",
    )
    refused(
        cli, *refer, code=2, says="reported no capacity on 2030-01-02; refer anyway with --anyway"
    )
    assert as_json(cli, "referral", "list", "--data", a) == []
    result = ok(cli, *refer, "--anyway")
    assert "warning" in result.output
    refused(
        cli,
        "referral",
        "create",
        "--data",
        a,
        "--subject",
        subject,
        "--service",
        f"{b_id}:nothing",
        says="is not in this hub's directory",
    )


def test_moves_outside_the_table_are_refused_naming_from_to_and_role(
    cli: CliRunner, hubs: Hubs
) -> None:
    a, b, _ = hubs
    subject = log_enquiry(cli, a, hubs.ids[1])
    ref = made(
        ok(cli, "referral", "create", "--data", a, "--subject", subject, "--to-hub", hubs.ids[1])
    )
    gossip(a, b)
    wrong_party = (
        "only the receiving hub may move a referral from requested to accepted; "
        "this hub is the referring hub"
    )
    refused(cli, "referral", "accept", "--data", a, ref, says=wrong_party)
    not_in_table = "cannot move from requested to completed"
    refused(cli, "referral", "complete", "--data", b, ref, says=not_in_table)
    refused(cli, "referral", "complete", "--data", b, ref, says="(asked by the receiving hub)")
    refused(cli, "referral", "reject", "--data", b, ref, code=2, says="needs a reason")
    ok(cli, "referral", "reject", "--data", b, ref, "--reason", "outside our area")
    gossip(a, b)
    cancel = ("referral", "cancel", "--data", a, ref, "--reason", "x")
    refused(cli, *cancel, says="cannot move from rejected to cancelled")
    ok(cli, "referral", "void", "--data", a, ref)
    assert show(cli, a, ref)["status"] == "entered-in-error"


def test_two_hubs_claiming_one_open_referral_end_up_with_the_same_receiver_everywhere(
    cli: CliRunner, hubs: Hubs
) -> None:
    a, b, c = hubs
    subject = log_enquiry(cli, a, hubs.ids[1], hubs.ids[2])
    ref = made(
        ok(cli, "referral", "create", "--data", a, "--subject", subject, "--category", "debt")
    )
    gossip(a, b, c)
    assert [r["ref"] for r in as_json(cli, "referral", "list", "--data", b, "--claimable")] == [ref]
    refused(cli, "referral", "claim", "--data", a, ref, says="this hub made it")
    ok(cli, "referral", "claim", "--data", b, ref)
    ok(cli, "referral", "claim", "--data", c, ref)  # before either has heard of the other
    gossip(a, b, c)
    receivers = {show(cli, hub, ref)["receiving"] for hub in hubs}
    assert len(receivers) == 1 and receivers <= {hubs.ids[1], hubs.ids[2]}
    loser = c if receivers == {hubs.ids[1]} else b
    [lost] = [s for s in show(cli, loser, ref)["timeline"] if s["state"] == "ignored"]
    assert "lower event id wins" in lost["why"]
    hashes = {ok(cli, "projections", "hash", "--data", hub, "--json").stdout for hub in hubs}
    assert len({json.dumps(json.loads(h)["pathway"]) for h in hashes}) == 1


# -- enquiry input ----------------------------------------------------------------------


def test_enquiry_log_needs_the_fields_when_nobody_can_be_asked(cli: CliRunner, hubs: Hubs) -> None:
    log = ("enquiry", "log", "--data", hubs.paths[0], "--need", "debt")
    refused(cli, *log, "--channel", "web", code=2, says="the person's details are needed")
    stdin = ("--from-file", "-")
    refused(cli, *log, *stdin, "--channel", "web", input="{}", code=2, says="name is needed")
    fax = "--channel 'fax': use one of walk-in, phone, web, paper"
    refused(cli, *log, *stdin, "--channel", "fax", input=person("Jo"), code=2, says=fax)
    refused(cli, *log, *stdin, "--channel", "web", input=person("Jo", dob="31/01/1990"), code=2,
            says="YYYY-MM-DD")  # fmt: skip


def test_enquiry_log_asks_for_missing_fields_on_a_terminal(
    cli: CliRunner, hubs: Hubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pathway, "interactive", lambda: True)
    a = hubs.paths[0]
    # The name, then phone, email, date of birth, address and notes (Enter: none), then
    # the need and the channel.
    answers = "Jo Bloggs\n07700 900123\n\n\n\n\nhousing\nphone\n"
    result = ok(cli, "enquiry", "log", "--data", a, "--json", input=answers)
    logged = json.loads(result.stdout.splitlines()[-1])
    assert logged["subject"].startswith("s-")
    shown = ok(cli, "log", "show", "--data", a, "--kind", "enquiry.logged", "--json")
    [enquiry] = [json.loads(line) for line in shown.stdout.splitlines()]
    assert (enquiry["body"]["channel"], enquiry["body"]["needs"]) == ("phone", ["housing"])


# -- follow-up due ----------------------------------------------------------------------


def test_followup_due_lists_unanswered_referrals_by_the_date_asked_about(
    cli: CliRunner, hubs: Hubs
) -> None:
    a, b, _ = hubs
    subject = log_enquiry(cli, a, hubs.ids[1])
    ref = made(
        ok(cli, "referral", "create", "--data", a, "--subject", subject, "--to-hub", hubs.ids[1])
    )
    today = dt.date.today()
    soon = (today + dt.timedelta(days=2)).isoformat()
    assert as_json(cli, "followup", "due", "--data", a, "--as-of", soon) == []
    late = (today + dt.timedelta(days=4)).isoformat()
    [due] = as_json(cli, "followup", "due", "--data", a, "--as-of", late)
    assert (due["ref"], due["why"]) == (ref, "unanswered")
    due_at = ("followup", "due", "--data", a, "--as-of", late)
    assert as_json(cli, *due_at, "--answer-days", "10") == []
    text = ok(cli, "followup", "due", "--data", a, "--as-of", late).stdout
    assert "an answer from the receiving hub" in text
    gossip(a, b)
    ok(cli, "referral", "accept", "--data", b, ref)
    gossip(a, b)
    assert as_json(cli, "followup", "due", "--data", a, "--as-of", late) == []
    refused(cli, "followup", "due", "--data", a, "--as-of", "next week", code=2, says="--as-of")
