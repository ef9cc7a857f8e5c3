"""Issue 12 item 10, the small items: ratings counted once per hub, ids escaped in links,
personal data kept off the command line, open key files, binary config, hostile HSDS
files, cut text and duplicate ids said out loud, and a UTF-8 BOM accepted."""

from __future__ import annotations

import contextlib
import copy as copy_
import json
import logging
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner, Result

from hubnode.casework import Casework
from hubnode.cli import app
from hubnode.commands import hsds
from hubnode.config import CONFIG_FILE, KEY_FILE, HubFolder
from hubnode.console.web import urlpart
from hubnode.crypto import SigningKey
from hubnode.errors import ConfigError
from hubnode.events.directory import ServiceId, ServicePublished
from hubnode.events.feedback import FeedbackSubmitted, ServiceRef
from hubnode.events.fields import LocalId
from hubnode.events.ids import hub_display
from hubnode.events.pathway import Subject
from hubnode.events.skills import ItemId
from hubnode.events.tenders import ClusterId, LotId, Period, TenderShared, Value
from hubnode.privacy.keyring import KEYRING_FILE, Keyring
from hubnode.projections.feedback import (
    FeedbackProjection,
    ServiceRating,
    service_feedback,
    service_summaries,
)
from hubnode.testing import ChainWriter
from tests.conftest import NET, build_view, shared_fixture
from tests.test_console import CSRF, PASSWORD, Clock, Desk, Net, act, open_desk

UTF8_BOM = b"\xef\xbb\xbf"


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner(env={"HUBNODE_DATA": None, "HUBNODE_STRICT": None, "COLUMNS": "250"})


def run(cli: CliRunner, *args: str | Path, input: str | bytes | None = None) -> Result:
    return cli.invoke(app, [str(a) for a in args], input=input)


def one_line_error(result: Result, code: int, says: str) -> None:
    """The command exited ``code`` with exactly one line, an error saying ``says``."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert says in lines[0], result.output


@pytest.fixture
def hub(cli: CliRunner, tmp_path: Path) -> Path:
    path = tmp_path / "hub"
    assert run(cli, "init", "--data", path, "--name", "Hub A", "--network", NET).exit_code == 0
    return path


def own_kinds(data: Path) -> list[str]:
    shown = run(CliRunner(), "log", "show", "--data", data, "--json")
    assert shown.exit_code == 0, shown.output
    return [json.loads(line)["kind"] for line in shown.stdout.splitlines()]


# -- ratings: one per rating hub ----------------------------------------------------------


def rate(writer: ChainWriter, about: ServiceRef, fid: str, stars: int) -> bytes:
    body = FeedbackSubmitted(feedback=fid, service=about, rating=stars)
    return writer.next("feedback.submitted", body)


def test_one_hubs_sixty_one_star_ratings_count_as_one_rating(tmp_path: Path) -> None:
    """Issue 12 item 10: one hub's 60 one-star ratings counted as 60 ratings; now each
    rating hub counts once, with its latest rating of the service."""
    publisher, fan, spammer = (ChainWriter(NET) for _ in range(3))
    about = ServiceRef(hub=hub_display(publisher.hub), id="advice")
    records = [rate(fan, about, "f1", 5)]
    records += [rate(spammer, about, f"s{n}", 1) for n in range(60)]
    runner = build_view(tmp_path, records, FeedbackProjection)
    assert service_summaries(runner) == {(publisher.hub, "advice"): ServiceRating(2, 3.0)}
    comments = service_feedback(runner, publisher.hub, "advice")
    assert len(comments) == 61  # every rating is still listed with its comment
    counted = [c.feedback_id for c in comments if c.counted]
    assert sorted(counted) == ["f1", "s59"]


def histories() -> tuple[list[bytes], list[bytes], bytes]:
    """Two rating hubs' chains; the second's latest event (by seq) has the earliest clock."""
    publisher, a, b = (ChainWriter(NET) for _ in range(3))
    about = ServiceRef(hub=hub_display(publisher.hub), id="advice")
    chain_a = [rate(a, about, "a1", 4), rate(a, about, "a2", 2)]
    chain_b = [rate(b, about, "b1", 1), rate(b, about, "b2", 5)]
    b.ts -= 1_000_000  # b's clock goes back: ts must not decide which rating is latest
    chain_b.append(rate(b, about, "b1", 3))  # a revision of b1, b's latest by seq
    return chain_a, chain_b, publisher.hub


def interleavings() -> Iterator[list[int]]:
    yield [0, 0, 1, 1, 1]
    yield [1, 1, 1, 0, 0]
    yield [1, 0, 1, 0, 1]


def test_a_hubs_latest_rating_by_its_own_seq_is_the_one_counted_in_any_arrival_order(
    tmp_path: Path,
) -> None:
    """Issue 12 item 10: "latest" is by the rating hub's seq, so every hub agrees on it."""
    chain_a, chain_b, publisher = histories()
    hashes = set()
    for n, order in enumerate(interleavings()):
        nexts = [iter(chain_a), iter(chain_b)]
        records: Sequence[bytes] = [next(nexts[pick]) for pick in order]
        folder = tmp_path / str(n)
        folder.mkdir()
        runner = build_view(folder, records, FeedbackProjection)
        # a's latest is a2 (2 stars), b's is its revision of b1 (3 stars): 2 hubs, 2.5.
        assert service_summaries(runner) == {(publisher, "advice"): ServiceRating(2, 2.5)}
        counted = {c.feedback_id: c.rating for c in service_feedback(runner, publisher, "advice")
                   if c.counted}  # fmt: skip
        assert counted == {"a2": 2, "b1": 3}
        hashes.add(runner.hash("feedback"))
        runner.close()
    assert len(hashes) == 1


def test_feedback_show_counts_each_rating_hub_once(cli: CliRunner, hub: Path) -> None:
    """Issue 12 item 10: `feedback show` said "N ratings" for N ratings from one hub."""
    service = f"{HubFolder.open(hub).config.hub_id}:advice"
    for stars in (1, 1, 1, 4):
        rated = run(cli, "feedback", "submit", "--data", hub, "--service", service,
                    "--rating", str(stars))  # fmt: skip
        assert rated.exit_code == 0, rated.output
    shown = run(cli, "feedback", "show", "--data", hub, "--service", service, "--json")
    report = json.loads(shown.stdout)
    assert (report["count"], report["average"], len(report["ratings"])) == (1, 4.0, 4)
    summary = json.loads(run(cli, "feedback", "summary", "--data", hub, "--json").stdout)
    assert [(s["count"], s["average"]) for s in summary] == [(1, 4.0)]


# -- ids in links -------------------------------------------------------------------------

HOSTILE_OCID = "ocds-evil-x/../../network"


def test_urlpart_escapes_everything_that_could_lead_a_link_elsewhere() -> None:
    assert urlpart("x/../../network") == "x%2F..%2F..%2Fnetwork"
    assert urlpart("a?b#c&d=e f") == "a%3Fb%23c%26d%3De%20f"
    assert urlpart("hub:abc:r-1") == "hub:abc:r-1"  # colons stay: hub:…:ID reads as it is


@pytest.mark.parametrize("grammar", [LocalId, ServiceId, ItemId, LotId, ClusterId, Subject])
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_ids_of_local_records_can_never_hold_a_slash_or_be_a_dot_segment(
    grammar: Any, data: st.DataObject
) -> None:
    """Issue 12 item 10: these grammars admit no ``/`` and cannot start with ``.``, so an
    id is always one harmless path segment. (They are left as they are: tightening a
    grammar would make events already signed and stored undecodable.)"""
    pattern = grammar.__metadata__[0].pattern
    value = data.draw(st.from_regex(pattern))
    assert "/" not in value and not value.startswith(".")


@pytest.fixture
def console_net(tmp_path: Path) -> Net:
    """Hubs a, b, c; c shares a tender whose OCDS id holds ``/../../``; a rates b's debt
    advice twice, 1 then 5 stars."""
    net = Net.create(tmp_path)

    async def rate_twice(cw: Casework) -> None:
        about = ServiceRef(hub=hub_display(net.b.hub), id="debt-advice")
        for fid, stars in (("f1", 1), ("f2", 5)):
            body = FeedbackSubmitted(feedback=fid, service=about, rating=stars)
            await cw.log.append("feedback.submitted", body)

    async def share(cw: Casework) -> None:
        body = TenderShared(
            ocid=HOSTILE_OCID,
            title="Hostile tender",
            buyer="Nobody",
            value=Value(amount=1000, currency="GBP"),
            period=Period(start=date(2030, 1, 1), end=date(2030, 3, 1)),
        )
        await cw.log.append("tender.shared", body)

    act(net.c, share)
    act(net.a, rate_twice)
    net.gossip()
    return net


@pytest.fixture
def desk(console_net: Net) -> Iterator[Desk]:
    yield from open_desk(console_net.a, Clock())


def test_the_console_counts_a_hubs_ratings_once_and_says_which_is_not_counted(
    desk: Desk, console_net: Net
) -> None:
    """Issue 12 item 10: the directory and a service's page count each rating hub once."""
    desk.signed_in("a worker")
    directory = " ".join(desk.get("/directory").text.split())
    assert "Rated 5.0 out of 5 from 1 rating." in directory
    page = desk.get(f"/directory/{hub_display(console_net.b.hub)}:debt-advice").text
    words = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert "Rated 5.0 out of 5 from 1 rating." in words
    assert words.count("(not counted: a later rating from the same hub replaces it)") == 1


def test_a_tender_id_with_dot_segments_links_to_its_own_page_not_the_network(desk: Desk) -> None:
    """Issue 12 item 10: a tender id holding ``../..`` made its link land on /network."""
    desk.signed_in("a coordinator")
    page = desk.get("/tenders").text
    [href] = re.findall(r'<a href="(/tenders/ocds-evil[^"]*)"', page)
    # Where a browser goes: the href resolved against the page, dot segments removed.
    where = urljoin("https://testserver/tenders", href)
    assert urlsplit(where).path.startswith("/tenders/ocds-evil-x%2F")
    shown = desk.get(where)
    assert shown.status_code == 200 and "Hostile tender" in shown.text
    # A form on the tender's page leads back to it, not elsewhere.
    formed = desk.post("/tenders/form", {"ocid": HOSTILE_OCID, "cluster": "a-bid"})
    assert formed.status_code == 303, formed.text
    back = urljoin("https://testserver/tenders/form", formed.headers["location"])
    assert urlsplit(back).path == urlsplit(where).path


def test_signing_in_from_a_hostile_tender_link_returns_to_that_tender(desk: Desk) -> None:
    """Issue 12 item 10: signed out, a hostile tender link's page came back after sign-in
    decoded, so its ``../..`` took the browser to /network."""
    page = urljoin("https://testserver/", "/tenders/ocds-evil-x%2F..%2F..%2Fnetwork?x=1")
    gone = desk.get(page)
    assert gone.status_code == 303
    login = gone.headers["location"]
    form = desk.client.get(login)
    token = CSRF.search(form.text)
    assert token is not None, form.text
    signed = desk.client.post(
        login,
        data={"csrf": token.group(1), "name": "a worker", "password": PASSWORD},
        follow_redirects=False,
    )
    assert signed.status_code == 303, signed.text
    back = urljoin("https://testserver/login", signed.headers["location"])
    assert (urlsplit(back).path, urlsplit(back).query) == (urlsplit(page).path, "x=1")


def test_a_tender_id_that_is_not_known_gets_a_not_found_page(desk: Desk) -> None:
    desk.signed_in("a worker")
    missing = desk.get("/tenders/ocds-evil-x%2F..%2Fsomething-else")
    assert missing.status_code == 404 and "Not found" in missing.text


# -- personal data off the command line ---------------------------------------------------


@pytest.mark.parametrize(
    "option", ["--name", "--phone", "--email", "--dob", "--address", "--notes"]
)
def test_enquiry_log_refuses_personal_data_given_as_an_option(
    cli: CliRunner, hub: Path, option: str
) -> None:
    """Issue 12 item 10: `enquiry log --name … --phone …` put personal data in
    /proc/PID/cmdline and the shell's history."""
    result = run(cli, "enquiry", "log", "--data", hub, option, "Quenby Xylofax",
                 "--need", "debt", "--channel", "walk-in")  # fmt: skip
    one_line_error(result, 2, f"{option}: personal data on the command line is visible")
    assert "--from-file" in result.output and "Quenby" not in result.output
    assert "enquiry.logged" not in own_kinds(hub)


def test_enquiry_log_reads_the_details_from_a_file_or_stdin_with_or_without_a_bom(
    cli: CliRunner, hub: Path, tmp_path: Path
) -> None:
    """Issue 12 item 10: the details come from --from-file (a JSON object), BOM or not."""
    details = {"name": "Quenby Xylofax", "phone": "07700 900123", "dob": "1990-01-31"}
    file = tmp_path / "person.json"
    file.write_bytes(UTF8_BOM + json.dumps(details).encode())
    log = ("enquiry", "log", "--data", hub, "--need", "debt", "--channel", "walk-in", "--json")
    subjects = []
    for source, stdin in ((file, None), ("-", json.dumps({"name": "Ada"}).encode())):
        logged = run(cli, *log, "--from-file", source, input=stdin)
        assert logged.exit_code == 0, logged.output
        subjects.append(json.loads(logged.stdout)["subject"])
    shown = json.loads(run(cli, "person", "show", "--data", hub, subjects[0], "--json").stdout)
    [person] = shown["details"]
    assert (person["name"], person["phone"], person["dob"]) == tuple(details.values())
    refused = run(cli, *log, "--from-file", "-", input='{"nmae": "Ada"}')
    one_line_error(refused, 2, "unknown field 'nmae'")


def test_enquiry_log_help_says_why_the_details_are_not_options(cli: CliRunner) -> None:
    shown = " ".join(run(cli, "enquiry", "log", "--help").output.split())
    assert "visible to other users in /proc" in shown and "--from-file" in shown


NOTE_COMMANDS = {
    "referral create": ["referral", "create", "--subject", "s-" + "a" * 20, "--category", "debt"],
    "followup record": ["followup", "record", "r-1a2b3c4d5e", "--satisfied", "no"],
    "advocacy open": ["advocacy", "open", "r-1a2b3c4d5e"],
    "advocacy close": ["advocacy", "close", "c-1a2b3c4d5e", "--outcome", "resolved"],
}


@pytest.mark.parametrize("command", list(NOTE_COMMANDS))
def test_a_sealed_note_given_as_an_option_is_refused(
    cli: CliRunner, hub: Path, command: str
) -> None:
    """Issue 12 item 10: a sealed note about a person, given with --note, sat in /proc and
    the shell's history like the enquiry's details."""
    first, second, *rest = NOTE_COMMANDS[command]
    result = run(cli, first, second, "--data", hub, *rest, "--note", "Quenby owes rent")
    one_line_error(result, 2, "--note: notes about a person on the command line are visible")
    assert "--note-file" in result.output and "Quenby" not in result.output
    assert run(cli, first, second, "--help").output.count("--note-file") >= 1


def test_a_note_file_that_is_not_text_gets_one_line(cli: CliRunner, hub: Path) -> None:
    first, second, *rest = NOTE_COMMANDS["advocacy open"]
    bad = hub / "note.bin"
    bad.write_bytes(b"\xff\xfe\x00bad")
    result = run(cli, first, second, "--data", hub, *rest, "--note-file", bad)
    one_line_error(result, 2, "--note-file")
    huge = hub / "note.txt"
    huge.write_text("x" * 5000)
    result = run(cli, first, second, "--data", hub, *rest, "--note-file", huge)
    one_line_error(result, 2, "--note-file")


# -- key files open to other users --------------------------------------------------------


def test_a_key_file_open_to_others_is_warned_about_once_and_refused_when_strict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12 item 10: a key file at mode 0644 was used without a warning."""
    path = tmp_path / "hub.pem"
    key = SigningKey.generate()
    key.save(path)
    with caplog.at_level(logging.WARNING, logger="hubnode.keys"):
        assert SigningKey.load(path).public == key.public
        assert caplog.records == []  # 0600: nothing to say
        path.chmod(0o644)
        SigningKey.load(path)
        SigningKey.load(path)
    [warning] = caplog.records
    assert str(path) in warning.getMessage() and "mode 0644" in warning.getMessage()
    assert f"chmod 600 {path}" in warning.getMessage()
    with pytest.raises(ConfigError, match="chmod 600"):
        SigningKey.load(path, strict=True)


def test_run_strict_refuses_to_start_with_an_open_key_file(cli: CliRunner, hub: Path) -> None:
    """Issue 12 item 10: `hubnode run --strict` (or HUBNODE_STRICT=1 for any command that
    signs) refuses a key file other users may read, in one line."""
    (hub / KEY_FILE).chmod(0o640)
    one_line_error(run(cli, "run", "--data", hub, "--strict"), 1, "mode 0640")
    body = json.dumps({"name": "Hub A", "roles": ["gateway"], "area": "D", "contact": "a@b.org"})
    append = ("log", "append", "--data", hub, "--kind", "hub.registered", "--json", body)
    strict = cli.invoke(app, list(map(str, append)), env={"HUBNODE_STRICT": "1"})
    one_line_error(strict, 1, f"chmod 600 {hub / KEY_FILE}")
    assert own_kinds(hub) == []


def test_a_keyring_open_to_others_is_refused_when_strict(hub: Path) -> None:
    """Issue 12 item 10: the keyring (seal keys, people's data keys) is checked alike."""
    folder = HubFolder.open(hub)
    Keyring.open(folder).close()
    (hub / KEYRING_FILE).chmod(0o604)
    Keyring.open(folder).close()  # a warning only
    folder.strict_keys = True
    with pytest.raises(ConfigError, match=re.escape(f"chmod 600 {hub / KEYRING_FILE}")):
        Keyring.open(folder)


# -- a config file that is not text -------------------------------------------------------

NOT_TEXT = {
    "random bytes": random.Random(12).randbytes(300),
    "utf-16": 'name = "Hub A"\n'.encode("utf-16"),
    "nul bytes": b"\x00\x01\x02\x03",
}


@pytest.mark.parametrize("content", NOT_TEXT.values(), ids=list(NOT_TEXT))
def test_a_binary_config_gets_one_line_naming_the_file(
    cli: CliRunner, hub: Path, content: bytes
) -> None:
    """Issue 12 item 10: a binary hubnode.toml gave a traceback."""
    (hub / CONFIG_FILE).write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(str(hub / CONFIG_FILE))):
        HubFolder.open(hub)
    one_line_error(run(cli, "id", "--data", hub), 1, str(hub / CONFIG_FILE))


def test_a_config_saved_with_a_bom_is_read(cli: CliRunner, hub: Path) -> None:
    """Issue 12 item 10: a UTF-8 BOM at the start of hubnode.toml was refused."""
    config = hub / CONFIG_FILE
    config.write_bytes(UTF8_BOM + config.read_bytes())
    assert HubFolder.open(hub).config.name == "Hub A"


# -- hostile HSDS files -------------------------------------------------------------------


def service(**fields: Any) -> dict[str, Any]:
    """An HSDS service record hubnode can publish, with ``fields`` on top."""
    record = {"id": "advice", "name": "Advice", "description": "Help with forms."}
    record["attributes"] = [{"taxonomy_term": {"code": "advice"}}]
    return {**record, **fields}


def _write(tmp: Path, content: bytes) -> Path:
    path = tmp / "services.json"
    path.write_bytes(content)
    return path


HOSTILE: dict[str, tuple[bytes, str]] = {
    "deep arrays": (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    "deep objects": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested too deeply"),
    "not utf-8": (b'{"id": "\xff\xfe"}', "not UTF-8"),
    "not json": (b'{"id": ', "not JSON"),
    "a number": (b"7", "expected an HSDS service"),
    "a list of numbers": (b"[1, 2]", "service 1: expected a JSON object, not a number"),
    "a page of strings": (b'{"contents": ["x"]}', "service 1: expected a JSON object"),
    "a list for a code": (
        json.dumps(service(attributes=[{"taxonomy_term": {"code": ["advice"]}}])).encode(),
        "no category hubnode knows",
    ),
    "a number for an id": (json.dumps(service(id=7)).encode(), "$.id"),
    "a list for a name": (json.dumps(service(name=["x"])).encode(), "$.name"),
    "an object for an amount": (
        json.dumps(service(cost_options=[{"amount": {"a": 1}}])).encode(),
        "$.costs[0].amount",
    ),
    "a million items": (json.dumps([{}] * 1_000_000).encode(), "more than the 10,000"),
}


@pytest.mark.parametrize("content,says", HOSTILE.values(), ids=list(HOSTILE))
def test_a_hostile_hsds_file_gets_one_line_and_exit_2(
    cli: CliRunner, hub: Path, tmp_path: Path, content: bytes, says: str
) -> None:
    """Issue 12 item 10: hostile HSDS files gave a TypeError or RecursionError traceback
    with exit 1, where the README promises one line and exit 2."""
    result = run(cli, "directory", "import", "--data", hub, _write(tmp_path, content))
    one_line_error(result, 2, says)
    assert own_kinds(hub) == []


def test_an_hsds_file_larger_than_the_limit_is_not_read(
    cli: CliRunner, hub: Path, tmp_path: Path
) -> None:
    """Issue 12 item 10: an import read the whole file, however large."""
    path = tmp_path / "huge.json"
    with path.open("wb") as f:
        f.truncate(hsds.MAX_IMPORT_BYTES + 1)  # sparse: costs no disk
    one_line_error(run(cli, "directory", "import", "--data", hub, path), 2, "larger than 64 MB")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)
HSDS_KEYS = ["id", "name", "description", "organization", "eligibility_description", "url",
             "email", "attributes", "cost_options", "languages", "schedules", "service_areas",
             "service_at_locations", "contacts", "phones"]  # fmt: skip
HSDS_MEMBER_KEYS = ["taxonomy_term", "amount", "option", "currency", "code", "byday", "opens_at",
                    "closes_at", "freq", "name", "description", "location", "addresses",
                    "address_1", "postal_code", "phones", "number", "email", "department",
                    "schedules"]  # fmt: skip
MEMBER = st.dictionaries(st.sampled_from(HSDS_MEMBER_KEYS), JSON_VALUES, max_size=5)
NESTED = st.dictionaries(
    st.sampled_from(HSDS_MEMBER_KEYS),
    JSON_VALUES | MEMBER | st.lists(MEMBER, max_size=2),
    max_size=5,
)
RECORDS = st.dictionaries(
    st.sampled_from(HSDS_KEYS), JSON_VALUES | NESTED | st.lists(NESTED, max_size=3)
)


@settings(max_examples=100, deadline=None)
@given(RECORDS)
def test_any_json_record_maps_to_fields_or_a_validation_error(record: dict[str, Any]) -> None:
    """Issue 12 item 10: whatever JSON stands where a record's field is expected (a list
    for an object, a number for a string, ...), the mapping raises nothing and the body's
    own checks name what is wrong."""
    fields, _ = hsds.fields_from_hsds(record, organisation="Hub A", categories=["advice"])
    with contextlib.suppress(msgspec.ValidationError):
        msgspec.convert(fields, ServicePublished)


WRONG_TYPES: list[object] = [None, 7, "x", ["x"], [{}], {"a": [1]}]


def paths(value: object, at: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """The path of every value inside ``value`` (a JSON document), depth first."""
    members: Iterable[tuple[str | int, object]] = ()
    if isinstance(value, dict):
        members = value.items()
    elif isinstance(value, list):
        members = enumerate(value)
    for key, member in members:
        yield (*at, key)
        yield from paths(member, (*at, key))


def replaced(document: Any, path: tuple[str | int, ...], value: object) -> Any:
    copy = copy_.deepcopy(document)
    parent = copy
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return copy


def test_every_field_of_the_official_example_may_hold_any_wrong_type() -> None:
    """Issue 12 item 10: a list where an object or a string is expected (or any other
    wrong type), anywhere in a record, gave a TypeError traceback."""
    example = json.loads(shared_fixture("hsds-3.0", "examples", "service_full.json").read_text())
    for path in paths(example):
        for wrong in WRONG_TYPES:
            record = replaced(example, path, wrong)
            fields, _ = hsds.fields_from_hsds(record, organisation="Hub A", categories=["advice"])
            with contextlib.suppress(msgspec.ValidationError):
                msgspec.convert(fields, ServicePublished)


# -- cut text and duplicate ids -----------------------------------------------------------


def published_services(data: Path) -> list[dict[str, Any]]:
    shown = run(CliRunner(), "log", "show", "--data", data, "--kind", "service.published", "--json")
    return [json.loads(line)["body"] for line in shown.stdout.splitlines()]


def test_text_cut_on_import_is_said_naming_the_service_field_and_length(
    cli: CliRunner, hub: Path, tmp_path: Path
) -> None:
    """Issue 12 item 10: a 50 MB description was cut silently to 5,000 characters."""
    long = "word " * 1_200  # 6,000 characters
    path = _write(tmp_path, json.dumps([service(description=long)]).encode())
    result = run(cli, "directory", "import", "--data", hub, path)
    assert result.exit_code == 0, result.output
    warning = f"warning: {path} service 1 (advice): description cut from 5,999 to 5,000 characters"
    assert warning in result.output
    [body] = published_services(hub)
    assert len(body["description"]) <= 5000


def test_a_repeated_id_in_an_import_is_published_once_with_a_warning(
    cli: CliRunner, hub: Path, tmp_path: Path
) -> None:
    """Issue 12 item 10: duplicate ids were published twice without a warning."""
    records = [service(name="First"), service(id="other"), service(name="Second")]
    path = _write(tmp_path, json.dumps(records).encode())
    result = run(cli, "directory", "import", "--data", hub, path)
    assert result.exit_code == 0, result.output
    assert f"{path} service 3 (advice): same id as service 1; published once" in result.output
    assert [(b["id"], b["name"]) for b in published_services(hub)] == [
        ("advice", "First"),
        ("other", "Advice"),
    ]


# -- a UTF-8 BOM --------------------------------------------------------------------------


def test_an_hsds_file_and_a_json_body_saved_with_a_bom_are_read(
    cli: CliRunner, hub: Path, tmp_path: Path
) -> None:
    """Issue 12 item 10: a UTF-8 BOM was refused ("Unexpected UTF-8 BOM")."""
    path = _write(tmp_path, UTF8_BOM + json.dumps(service()).encode())
    imported = run(cli, "directory", "import", "--data", hub, path)
    assert imported.exit_code == 0, imported.output
    body = {"id": "forms", "organisation": "Hub A", "name": "Forms", "description": "Help.",
            "categories": ["advice"]}  # fmt: skip
    pasted = "\ufeff" + json.dumps(body)  # what "$(cat body.json)" gives for such a file
    published = run(cli, "service", "publish", "--data", hub, "--json", pasted)
    assert published.exit_code == 0, published.output
    assert [b["id"] for b in published_services(hub)] == ["advice", "forms"]
    profile = "\ufeff" + json.dumps({"area": "Darlington and Durham"})
    appended = run(cli, "log", "append", "--data", hub, "--kind", "hub.profile_updated",
                   "--json", profile)  # fmt: skip
    assert appended.exit_code == 0, appended.output
