"""Issue 12 item 5: peer-controlled text never steers the operator's terminal.

Hub names, titles and notes come from peers. Bodies refuse the characters that can move a
terminal (C0/C1 controls: ESC clears the screen or sets the window title) or make text read
other than it is (bidi overrides, zero-width characters); records stored before they did
are still read, with those characters replaced, and whatever the CLI prints is escaped.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from re import _constants as sre  # the regex parser's opcodes: see _can_hold
from re import _parser as sre_parse
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from typer.testing import CliRunner, Result

from hubnode import KINDS, EventLog, HubFolder, InvalidEvent, Reason, Status
from hubnode.casework.skills import body_of
from hubnode.cli import app
from hubnode.commands.common import print_json, shown, terminal
from hubnode.events.fields import LINE_PATTERN, REFUSED_IN_LINE, TEXT_PATTERN, explain
from hubnode.events.ids import hub_display
from hubnode.events.kinds import KindRegistry
from hubnode.events.skills import SkillOffered
from hubnode.testing import ChainWriter

from .conftest import NET, registered

EVIL = "Evil\x1b[2J\x1b]0;pwned\x07"
"""Clear the screen and set the window title: what a hostile hub names itself."""
REFUSED = {
    "ESC": "\x1b",
    "NUL": "\x00",
    "CR": "\r",
    "DEL": "\x7f",
    "C1 NEL": "\x85",
    "C1 CSI": "\x9b",
    "RLO": "\u202e",
    "LRI": "\u2066",
    "ZWSP": "\u200b",
    "ZWJ": "\u200d",
    "word joiner": "\u2060",
    "BOM": "\ufeff",
    "line separator": "\u2028",
    "arabic letter mark": "\u061c",
}
"""A sample of each group of characters text fields refuse (docs/protocol.md)."""
EVERY_REFUSED = [
    chr(c)
    for c in (
        *range(0x20), 0x7F, *range(0x80, 0xA0), 0x061C, *range(0x200B, 0x2010),
        *range(0x2028, 0x202F), *range(0x2060, 0x206A), 0xFEFF,
    )
]  # fmt: skip

SOME_HUB = hub_display(b"\x01" * 32)
"""A hub id for bodies that name one (not a small-order point: those are refused too)."""


def cli() -> CliRunner:
    return CliRunner(env={"HUBNODE_DATA": None, "COLUMNS": "250", "NO_COLOR": "1"})


def invoke(*args: str | Path, runner: CliRunner | None = None) -> Result:
    return (runner or cli()).invoke(app, [str(a) for a in args])


def raw_refused(text: str) -> list[str]:
    """The refused characters in ``text`` (newlines and tabs of the layout excepted)."""
    return [c for c in REFUSED_IN_LINE.findall(text) if c not in "\n\t"]


# -- (a) bodies refuse such text ---------------------------------------------------------


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[EventLog]:
    log = await EventLog.open(tmp_path / "log.sqlite3", net=NET)
    yield log
    await log.close()


async def test_a_hub_named_with_terminal_controls_is_rejected_as_a_bad_body(log: EventLog):
    raw = ChainWriter(NET).next("hub.registered", registered(EVIL))
    (outcome,) = await log.ingest([raw])
    assert outcome.status is Status.REJECTED
    assert outcome.reason is Reason.BAD_BODY
    assert "one line of plain text" in outcome.detail and "$.name" in outcome.detail
    assert await log.count() == 0


SINGLE_LINE = {
    "hub.registered name": ("hub.registered", registered(), "name"),
    "hub.registered contact": ("hub.registered", registered(), "contact"),
    "skill title": (
        "skill.offered",
        {"offer_id": "o1", "tags": ["gardening"], "title": "Gardening", "area": ["DL1"]},
        "title",
    ),
    "tender buyer": (
        "tender.shared",
        {
            "ocid": "ocds-abc-1",
            "title": "Care",
            "buyer": "Council",
            "value": {"amount": 1, "currency": "GBP"},
            "period": {"start": "2030-01-01", "end": "2030-02-01"},
        },
        "buyer",
    ),
    "referral outcome": (
        "referral.outcome_recorded",
        {"referral": {"hub": SOME_HUB, "id": "r1"}, "outcome": "ok", "satisfied": True},
        "outcome",
    ),
}
MULTI_LINE = {
    "hub.admitted note": ("hub.admitted", {"hub": SOME_HUB, "note": "ok"}, "note"),
    "service description": (
        "service.published",
        {
            "id": "s1",
            "organisation": "Org",
            "name": "Advice",
            "description": "Advice",
            "categories": ["advice"],
        },
        "description",
    ),
    "idea description": (
        "idea.submitted",
        {"idea": "i1", "title": "Idea", "description": "More benches"},
        "description",
    ),
}


def body_bytes(base: Any, **changes: Any) -> bytes:
    """The msgpack body ``base`` (a Struct or a dict) with ``changes``, not validated."""
    fields = msgspec.to_builtins(base) if isinstance(base, msgspec.Struct) else dict(base)
    return msgspec.msgpack.encode({**fields, **changes})


@pytest.mark.parametrize("char", REFUSED.values(), ids=REFUSED.keys())
@pytest.mark.parametrize(
    "case", [*SINGLE_LINE.values(), *MULTI_LINE.values()], ids=[*SINGLE_LINE, *MULTI_LINE]
)
def test_every_text_field_refuses_controls_bidi_and_zero_width(case: Any, char: str):
    kind, base, field = case
    good = body_bytes(base, **{field: "plain text"})
    KINDS.decode_body(kind, good)  # the rest of the body is fine
    with pytest.raises(InvalidEvent) as info:
        KINDS.decode_body(kind, body_bytes(base, **{field: f"plain{char}text"}))
    assert info.value.reason is Reason.BAD_BODY
    assert f"$.{field}" in str(info.value)


@pytest.mark.parametrize("char", ["\n", "\t"], ids=["newline", "tab"])
@pytest.mark.parametrize("case", SINGLE_LINE.values(), ids=SINGLE_LINE.keys())
def test_one_line_fields_refuse_newline_and_tab(case: Any, char: str):
    kind, base, field = case
    with pytest.raises(InvalidEvent, match="one line of plain text"):
        KINDS.decode_body(kind, body_bytes(base, **{field: f"line one{char}line two"}))


@pytest.mark.parametrize("case", MULTI_LINE.values(), ids=MULTI_LINE.keys())
def test_multi_line_fields_keep_newlines_and_tabs(case: Any):
    kind, base, field = case
    body = KINDS.decode_body(kind, body_bytes(base, **{field: "line one\n\tline two"}))
    assert getattr(body, field) == "line one\n\tline two"


def test_text_keeps_every_other_script_and_emoji():
    name = "Café Ürün — مركز 社区中心 🏠 O'Brien & Sons (DL1)"
    body = KINDS.decode_body("hub.registered", body_bytes(registered(), name=name))
    assert body.name == name  # type: ignore[attr-defined]


def test_the_two_patterns_refuse_exactly_the_documented_characters():
    line, text = re.compile(LINE_PATTERN), re.compile(TEXT_PATTERN)
    for char in map(chr, (*range(0x3000), 0xFEFF, 0xFFFD, 0x1F3E0)):
        refused = char in EVERY_REFUSED
        assert (line.search(char) is None) == refused, f"U+{ord(char):04X}"
        assert (text.search(char) is None) == (refused and char not in "\n\t"), f"U+{ord(char):04X}"


def test_schema_messages_say_the_rule_in_words():
    message = f"Expected `str` matching regex {LINE_PATTERN!r} - at `$.name`"
    assert explain(message) == (
        "Expected `str` holding one line of plain text (no tab, newline, control, bidi or "
        "zero-width character) - at `$.name`"
    )
    assert "regex" not in explain(f"Expected `str` matching regex {TEXT_PATTERN!r}")


# -- records stored before the rule -------------------------------------------------------


class OldRules(KindRegistry):
    """The kinds as a hubnode before this rule checked them: any text was taken."""

    def __init__(self) -> None:
        super().__init__()
        for spec in KINDS:
            self.register(spec.kind, spec.body, version=spec.version, upcasters=spec.upcasters)

    def decode_body(self, kind: str, data: bytes, *, stored: bool = False) -> Any:
        # A log only checks a body at ingest and stores the bytes as they came.
        return super().decode_body(kind, data, stored=True)

    def check_body(self, kind: str, data: bytes) -> Any:  # the body step of ingest
        return self.decode_body(kind, data)


def test_a_stored_body_with_refused_text_reads_with_replacement_characters():
    data = body_bytes(registered(), name=EVIL)
    with pytest.raises(InvalidEvent):
        KINDS.decode_body("hub.registered", data)
    body = KINDS.decode_body("hub.registered", data, stored=True)
    assert body.name == "Evil\ufffd[2J\ufffd]0;pwned\ufffd"  # type: ignore[attr-defined]
    assert body.roles == ("gateway",)  # type: ignore[attr-defined]


def test_a_stored_multi_line_body_keeps_its_newlines_when_it_can():
    base = MULTI_LINE["service description"][1]
    body = KINDS.decode_body(
        "service.published",
        body_bytes(base, description="one\ntwo\u202e"),
        stored=True,
    )
    assert body.description == "one\ntwo\ufffd"  # type: ignore[attr-defined]
    newline_in_name = body_bytes(registered(), name="one\ntwo")
    body = KINDS.decode_body("hub.registered", newline_in_name, stored=True)
    assert body.name == "one\ufffdtwo"  # type: ignore[attr-defined]


def test_a_stored_body_failing_another_rule_still_fails():
    data = body_bytes(registered(), name=EVIL, roles=[])
    with pytest.raises(InvalidEvent) as info:
        KINDS.decode_body("hub.registered", data, stored=True)
    assert info.value.reason is Reason.BAD_BODY


# -- the CLI prints stored peer text escaped ---------------------------------------------


def _store_as_an_old_node_did(data: Path, records: list[bytes]) -> None:
    async def run() -> None:
        folder = HubFolder.open(data)
        async with await folder.open_log(with_key=False, registry=OldRules()) as log:
            outcomes = await log.ingest(records)
        assert [o.status for o in outcomes] == [Status.ACCEPTED] * len(records), outcomes

    asyncio.run(run())


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This hub, holding records of a hostile peer stored before bodies refused such text."""
    data = tmp_path_factory.mktemp("text") / "hub"
    assert invoke("init", "--data", data, "--name", "Hub A", "--network", NET).exit_code == 0
    peer = ChainWriter(NET)
    records = [
        peer.next("hub.registered", body_bytes(registered(), name=EVIL, area="Area\u202eLD")),
        peer.next(
            "service.published",
            body_bytes(
                MULTI_LINE["service description"][1],
                name=f"Advice{EVIL}",
                organisation="Org\u200b[/x]",
                description="Line one\nLine two\x1b[31m",
            ),
        ),
        peer.next(
            "tender.shared",
            body_bytes(
                SINGLE_LINE["tender buyer"][1],
                title=f"Care{EVIL}",
                buyer="Council\x9b2J",
                lots=[{"id": "L1", "title": "Lot\x1b]8;;http://evil\x07"}],
            ),
        ),
        peer.next(
            "idea.submitted",
            body_bytes(MULTI_LINE["idea description"][1], title=f"Idea{EVIL}", area="Ward\u2066x"),
        ),
        peer.next(
            "skill.offered",
            body_bytes(
                SINGLE_LINE["skill title"][1], title=f"Digging{EVIL}", description="\x1b[5m"
            ),
        ),
    ]
    _store_as_an_old_node_did(data, records)
    request = invoke(
        "skills", "request", "--data", data, "--tag", "gardening", "--area", "DL1",
        "--title", "Need digging",
    )  # fmt: skip
    assert request.exit_code == 0, request.output
    return data


PRINTING = {
    "network": ["network"],
    "peers list": ["peers", "list"],
    "log show": ["log", "show"],
    "directory search": ["directory", "search"],
    "tender list": ["tender", "list"],
    "tender show": ["tender", "show", "ocds-abc-1"],
    "idea list": ["idea", "list"],
    "skills matches": ["skills", "matches"],
    "status": ["status"],
    "audit verify": ["audit", "verify"],
}


@pytest.mark.parametrize("args", PRINTING.values(), ids=PRINTING.keys())
def test_commands_print_stored_peer_text_without_its_controls(stored: Path, args: list[str]):
    where = ["--data", stored] if args[0] != "audit" else [stored]
    result = invoke(*args, *where)
    assert raw_refused(result.stdout) == [] and raw_refused(result.stderr) == []
    if args[0] == "audit":  # a fresh node would not take it: the auditor says so
        assert result.exit_code == 1
        assert "bad_body" in result.stdout and "one line of plain text" in result.stdout
        return
    assert result.exit_code == 0, result.output
    assert "Evil" in result.stdout or args == ["status"]


def test_peer_text_is_not_read_as_rich_markup(stored: Path):
    result = invoke("directory", "search", "--data", stored)
    assert result.exit_code == 0, result.output
    assert "Org\ufffd[/x]" in result.stdout


@pytest.mark.parametrize("args", [["network"], ["log", "show"], ["tender", "show", "ocds-abc-1"]])
def test_json_output_holds_no_raw_controls(stored: Path, args: list[str]):
    result = invoke(*args, "--data", stored, "--json")
    assert result.exit_code == 0, result.output
    assert raw_refused(result.stdout) == []
    assert "Evil\ufffd[2J" in result.stdout


def test_json_escapes_every_refused_character_and_still_decodes_to_it(capfdbinary: Any):
    value = {"name": "".join(EVERY_REFUSED) + "ok \u00e9"}
    print_json(value)
    printed = capfdbinary.readouterr().out
    assert raw_refused(printed.decode()) == []
    assert json.loads(printed) == value


def test_a_name_in_the_config_is_printed_escaped(tmp_path: Path):
    data = tmp_path / "hub"
    assert invoke("init", "--data", data, "--name", "Hub", "--network", NET).exit_code == 0
    folder = HubFolder.open(data)
    peer = ChainWriter(NET).hub
    folder.add_trusted(peer, "Evil\x1b[2J\nfake line\u202e")  # as a hand-edited file may hold
    result = invoke("peers", "list", "--data", data)
    assert result.exit_code == 0, result.output
    assert raw_refused(result.stdout) == []
    assert "Evil\\x1b[2J\\nfake line\\u202e" in result.stdout


def test_the_terminal_escapes_whatever_it_prints():
    # Views built by an older hubnode may hold the raw text: the console escapes it.
    console = terminal()
    with console.capture() as captured:
        console.print(f"{EVIL} \u202eabc [/x] [link=http://evil]x[/link]\nnext")
    text = captured.get()
    assert raw_refused(text) == []
    assert "Evil\\x1b[2J\\x1b]0;pwned\\x07 \\u202eabc [/x] [link=http://evil]x[/link]\nnext" in text


def test_a_description_typed_in_a_browser_keeps_its_lines():
    # Browsers send a textarea's line breaks as CRLF; CR alone is refused, CRLF is a newline.
    base = dict(SINGLE_LINE["skill title"][1])
    offer = body_of(SkillOffered, {**base, "area": ["DL1"], "description": "one\r\ntwo"})
    assert offer.description == "one\ntwo"


def test_shown_escapes_visibly():
    assert shown("a\x1bb\u202ec\nd\te\x85") == "a\\x1bb\\u202ec\\nd\\te\\x85"
    assert shown("a\nb\tc\x1b", lines=True) == "a\nb\tc\\x1b"
    assert shown("Café 🏠") == "Café 🏠"


# -- (b) every str field of every body has a grammar that refuses them -------------------


def _str_fields(info: mi.Type, where: str) -> Iterator[tuple[str, mi.StrType]]:
    """Every str type reachable in ``info``, through nested Structs, unions and arrays."""
    if isinstance(info, mi.StrType):
        yield where, info
    elif isinstance(info, mi.StructType):
        for f in info.fields:
            yield from _str_fields(f.type, f"{where}.{f.encode_name}")
    elif isinstance(info, mi.UnionType):
        for t in info.types:
            yield from _str_fields(t, where)
    elif isinstance(info, mi.Metadata):
        yield from _str_fields(info.type, where)
    elif isinstance(info, (mi.VarTupleType, mi.ListType, mi.SetType, mi.FrozenSetType)):
        yield from _str_fields(info.item_type, f"{where}[]")
    elif isinstance(info, mi.TupleType):
        for t in info.item_types:
            yield from _str_fields(t, f"{where}[]")
    elif isinstance(info, mi.DictType):
        yield from _str_fields(info.key_type, f"{where}{{key}}")
        yield from _str_fields(info.value_type, f"{where}{{}}")


_CATEGORIES = {
    sre.CATEGORY_DIGIT: r"\d",
    sre.CATEGORY_NOT_DIGIT: r"\D",
    sre.CATEGORY_SPACE: r"\s",
    sre.CATEGORY_NOT_SPACE: r"\S",
    sre.CATEGORY_WORD: r"\w",
    sre.CATEGORY_NOT_WORD: r"\W",
}


def _can_hold(items: Any, char: str) -> bool:
    """Whether a match of the parsed regex ``items`` can contain ``char`` anywhere: some
    character test in it accepts ``char``. Sound for the id grammars bodies use."""
    for op, av in items:
        if op == sre.LITERAL and chr(av) == char:
            return True
        if op == sre.NOT_LITERAL and chr(av) != char:
            return True
        if op == sre.ANY and char != "\n":
            return True
        if op == sre.IN and _in_class(av, char):
            return True
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT) and _can_hold(av[2], char):
            return True
        if op == sre.SUBPATTERN and _can_hold(av[3], char):
            return True
        if op == sre.BRANCH and any(_can_hold(b, char) for b in av[1]):
            return True
        assert op in (
            sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN, sre.MAX_REPEAT, sre.MIN_REPEAT,
            sre.POSSESSIVE_REPEAT, sre.SUBPATTERN, sre.BRANCH, sre.AT,
            sre.ASSERT_NOT,  # a negative lookahead only refuses matches: it adds no character
        ), f"teach _can_hold the regex operator {op}"  # fmt: skip
    return False


def _in_class(items: Any, char: str) -> bool:
    negated = bool(items) and items[0][0] == sre.NEGATE
    hit = False
    for op, av in items:
        if op == sre.LITERAL:
            hit = hit or chr(av) == char
        elif op == sre.RANGE:
            hit = hit or av[0] <= ord(char) <= av[1]
        elif op == sre.CATEGORY:
            hit = hit or re.fullmatch(_CATEGORIES[av], char) is not None
        else:
            assert op == sre.NEGATE, f"teach _in_class the class item {op}"
    return hit != negated


def test_can_hold_reads_patterns_right():
    assert _can_hold(sre_parse.parse(r"^\S+\Z"), "\x1b")
    assert _can_hold(sre_parse.parse(r"^[^\s]+\Z"), "\u202e")
    assert not _can_hold(sre_parse.parse(r"^[a-z0-9._-]+\Z"), "\x1b")
    assert not _can_hold(sre_parse.parse(LINE_PATTERN), "\n")
    assert _can_hold(sre_parse.parse(TEXT_PATTERN), "\n")
    assert _can_hold(sre_parse.parse(r"^(a|b\x1b)\Z"), "\x1b")


@pytest.mark.parametrize("spec", list(KINDS), ids=[s.kind for s in KINDS])
def test_every_str_field_is_an_id_grammar_or_text(spec: Any):
    """A field added later cannot forget the rule: each str in a body (nested Structs,
    unions and arrays included) is text (:func:`~hubnode.events.fields.line` or
    :func:`~hubnode.events.fields.text`) or has a grammar that cannot hold a refused
    character."""
    found = list(_str_fields(mi.type_info(spec.body), spec.kind))
    for where, info in found:
        assert info.pattern is not None, (
            f"{where} takes any str: give it line(), text() or a grammar"
        )
        if info.pattern in (LINE_PATTERN, TEXT_PATTERN):
            assert info.max_length is not None, f"{where}: text needs a max_length"
            continue
        parsed = sre_parse.parse(info.pattern)
        held = [f"U+{ord(c):04X}" for c in EVERY_REFUSED if _can_hold(parsed, c)]
        assert not held, f"{where}: grammar {info.pattern!r} lets through {', '.join(held)}"


# -- (c) the CLI refuses such text in options ---------------------------------------------


@pytest.mark.parametrize("char", REFUSED.values(), ids=REFUSED.keys())
def test_init_refuses_a_name_with_such_characters(tmp_path: Path, char: str):
    data = tmp_path / "hub"
    result = invoke("init", "--data", data, "--name", f"Hub{char}A", "--network", NET)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--name" in result.stderr and f"U+{ord(char):04X}" in result.stderr
    assert raw_refused(result.stderr) == []
    assert not (data / "keys").exists()


def test_init_refuses_a_name_over_two_lines(tmp_path: Path):
    result = invoke("init", "--data", tmp_path / "h", "--name", "Hub\nA", "--network", NET)
    assert result.exit_code == 2
    assert "one line of plain text" in result.stderr


@pytest.fixture
def hub(tmp_path: Path) -> Path:
    data = tmp_path / "hub"
    assert invoke("init", "--data", data, "--name", "Hub A", "--network", NET).exit_code == 0
    return data


def test_peers_add_refuses_such_a_name(hub: Path):
    peer = ChainWriter(NET).hub
    from hubnode.events.ids import hub_display

    result = invoke("peers", "add", "--data", hub, hub_display(peer), "--name", "P\u202eQ")
    assert result.exit_code == 2, result.output
    assert "U+202E" in result.stderr
    assert HubFolder.open(hub).config.trust == ()


def test_staff_add_refuses_such_a_name(hub: Path):
    result = cli().invoke(
        app,
        ["staff", "add", "--data", str(hub), "--name", "ann\x1b[8m", "--role", "admin",
         "--password-stdin"],
        input="correct horse battery staple\n",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "U+001B" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["skills", "offer", "--tag", "gardening", "--area", "DL1", "--title", "Dig\u200bging"],
        ["skills", "offer", "--tag", "gardening", "--area", "DL1", "--title", "Dig\nging"],
        [
            "tender", "share", "--title", "Care", "--buyer", "Council\x1b[2J", "--amount", "10",
            "--end", "2030-01-01",
        ],
        ["idea", "submit", "--title", "Benches", "--description", "More\x85benches"],
    ],
    ids=["zero width title", "two-line title", "ESC in buyer", "C1 in description"],
)  # fmt: skip
def test_body_options_with_such_text_are_refused_in_words(hub: Path, args: list[str]):
    result = invoke(*args, "--data", hub)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "plain text" in result.stderr and "regex" not in result.stderr
    assert invoke("log", "show", "--data", hub).stdout == ""


def test_a_multi_line_description_option_is_fine(hub: Path):
    result = invoke(
        "idea", "submit", "--data", hub, "--title", "Benches", "--description", "More\nbenches"
    )
    assert result.exit_code == 0, result.output


def test_the_staff_console_shows_refused_characters_as_replacements(net: Any):
    """Issue 12 item 5, in the browser: views built before the rule, and a hand-edited
    config, may hold an RLO or a zero-width character; HTML escaping leaves them in, so
    every value a page shows has them replaced."""
    from tests.test_console import Clock, open_desk

    config = net.a.path / "hubnode.toml"
    config.write_text(config.read_text().replace('name = "Hub A"', 'name = "Hub\u202eA\u200b"'))
    net.folders["a"] = HubFolder.open(net.a.path)
    for desk in open_desk(net.a, Clock()):
        page = desk.signed_in("a worker").get("/").text
        assert "\u202e" not in page and "\u200b" not in page
        assert "Hub\ufffdA\ufffd" in page
