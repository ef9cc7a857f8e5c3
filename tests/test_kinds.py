"""The kind registry: body validation, body schema versions and upcasting (DESIGN §3)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from hubnode import KINDS, Body, InvalidEvent, KindRegistry, Reason, SigningKey
from hubnode.events.ids import hub_display
from hubnode.events.network import HubAdmitted, HubProfileUpdated, HubRegistered

from .conftest import registered

HUB_ID = hub_display(SigningKey.from_seed(b"\x01" * 32).public)


def body_reason(kind: str, fields: Any, registry: KindRegistry = KINDS) -> Reason:
    with pytest.raises(InvalidEvent) as info:
        registry.decode_body(kind, msgspec.msgpack.encode(fields))
    return info.value.reason


# -- the network kinds ------------------------------------------------------------------------


def test_network_kinds_are_registered():
    assert {"hub.registered", "hub.admitted", "hub.profile_updated"} <= {s.kind for s in KINDS}
    assert "hub.registered" in KINDS
    assert "no.such_kind" not in KINDS


def test_registry_lists_kinds_sorted_with_a_description():
    specs = list(KINDS)
    assert [s.kind for s in specs] == sorted(s.kind for s in specs)
    assert all(s.description for s in specs)


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("hub.registered", registered()),
        (
            "hub.registered",
            HubRegistered(name="A", roles=("gateway", "advocacy"), area="x", contact="y"),
        ),
        ("hub.admitted", HubAdmitted(hub=HUB_ID)),
        ("hub.admitted", HubAdmitted(hub=HUB_ID, name="Beta", note="met them")),
        ("hub.profile_updated", HubProfileUpdated(name="Renamed")),
        ("hub.profile_updated", HubProfileUpdated(roles=("follow-up",), contact="c")),
    ],
)
def test_bodies_round_trip_through_their_kind(kind: str, body: Body):
    data = KINDS.encode_body(kind, body)
    assert isinstance(msgspec.msgpack.decode(data), dict)  # bodies are maps
    assert KINDS.decode_body(kind, data) == body


def test_unknown_kind_is_refused_naming_the_known_ones():
    with pytest.raises(InvalidEvent) as info:
        KINDS.decode_body("no.such_kind", msgspec.msgpack.encode({}))
    assert info.value.reason is Reason.UNKNOWN_KIND
    assert "hub.registered" in info.value.detail
    with pytest.raises(InvalidEvent) as info:
        KINDS.encode_body("no.such_kind", registered())
    assert info.value.reason is Reason.UNKNOWN_KIND


GOOD = {"name": "Hub", "roles": ["gateway"], "area": "Darlington", "contact": "a@b.org"}


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("hub.registered", {k: v for k, v in GOOD.items() if k != "contact"}),
        ("hub.registered", {**GOOD, "name": ""}),
        ("hub.registered", {**GOOD, "name": "x" * 121}),
        ("hub.registered", {**GOOD, "name": 7}),
        ("hub.registered", {**GOOD, "roles": "gateway"}),
        ("hub.registered", {**GOOD, "roles": ["mayor"]}),
        ("hub.registered", {**GOOD, "roles": []}),
        ("hub.registered", [GOOD["name"], GOOD["roles"], GOOD["area"], GOOD["contact"]]),
        ("hub.registered", "not a map"),
        ("hub.admitted", {"hub": "hub:xyz"}),
        ("hub.admitted", {"hub": HUB_ID.upper()}),
        ("hub.admitted", {"hub": HUB_ID, "note": "n" * 2001}),
        ("hub.admitted", {}),
        ("hub.profile_updated", {"area": ""}),
        ("hub.profile_updated", {"roles": ["gateway"] * 6}),
        ("hub.profile_updated", {"roles": ["gateway", "gateway"]}),
        ("hub.profile_updated", {}),
    ],
    ids=[
        "missing field",
        "empty name",
        "long name",
        "name not str",
        "roles not list",
        "bad role",
        "no roles",
        "array not map",
        "str not map",
        "bad hub id",
        "upper-case hub id",
        "long note",
        "admitted no hub",
        "empty area",
        "too many roles",
        "repeated role",
        "update changing nothing",
    ],
)
def test_bodies_failing_their_struct_are_bad(kind: str, fields: Any):
    assert body_reason(kind, fields) is Reason.BAD_BODY


def test_body_that_is_not_msgpack_is_bad():
    with pytest.raises(InvalidEvent) as info:
        KINDS.decode_body("hub.registered", b"\xc1")
    assert info.value.reason is Reason.BAD_BODY


def test_body_with_invalid_utf8_is_bad_not_a_crash():
    data = msgspec.msgpack.encode({**GOOD, "name": "XY"}).replace(b"\xa2XY", b"\xa2\xffY")
    with pytest.raises(InvalidEvent) as info:
        KINDS.decode_body("hub.registered", data)
    assert info.value.reason is Reason.BAD_BODY


@pytest.mark.parametrize("key", ["name", "extra", "_v"])
def test_deeply_nested_body_is_bad_not_a_crash(key: str):
    deep = b"\x91" * 5000 + b"\xc0"
    data = b"\x81" + msgspec.msgpack.encode(key) + deep
    with pytest.raises(InvalidEvent) as info:
        KINDS.decode_body("hub.registered", data)
    assert info.value.reason is Reason.BAD_BODY


def test_deeply_nested_old_body_is_bad_when_upcasting():
    registry = KindRegistry()
    registry.register("test.note", Note, version=2, upcasters={1: v1_to_v2})
    with pytest.raises(InvalidEvent) as info:
        registry.decode_body("test.note", b"\x81\xa4text" + b"\x91" * 5000 + b"\xc0")
    assert info.value.reason is Reason.BAD_BODY


def test_unknown_body_fields_are_ignored_so_fields_can_be_added():
    assert KINDS.decode_body("hub.registered", msgspec.msgpack.encode({**GOOD, "new": 1})) == (
        HubRegistered(name="Hub", roles=("gateway",), area="Darlington", contact="a@b.org")
    )


def test_body_version_newer_than_supported_is_refused():
    assert body_reason("hub.registered", {**GOOD, "_v": 2}) is Reason.BODY_VERSION


@pytest.mark.parametrize("version", [0, -1])
def test_body_version_below_1_is_refused(version: int):
    assert body_reason("hub.registered", {**GOOD, "_v": version}) is Reason.BODY_VERSION


def test_body_version_that_is_not_an_int_is_bad():
    assert body_reason("hub.registered", {**GOOD, "_v": "1"}) is Reason.BAD_BODY


def test_explicit_version_1_reads_like_no_version():
    assert KINDS.decode_body("hub.registered", msgspec.msgpack.encode({**GOOD, "_v": 1})) == (
        KINDS.decode_body("hub.registered", msgspec.msgpack.encode(GOOD))
    )


def test_encode_body_refuses_another_kinds_struct():
    with pytest.raises(TypeError):
        KINDS.encode_body("hub.admitted", registered())


# -- body_from_json ---------------------------------------------------------------------------


def test_body_from_json_validates_against_the_struct():
    body = KINDS.body_from_json("hub.admitted", f'{{"hub": "{HUB_ID}", "note": "ok"}}')
    assert body == HubAdmitted(hub=HUB_ID, note="ok")
    assert KINDS.body_from_json("hub.profile_updated", b'{"area": "A"}') == HubProfileUpdated(
        area="A"
    )


@pytest.mark.parametrize("text", ['{"hub": "hub:nope"}', "{", "[]", '{"name": "x"}'])
def test_body_from_json_refuses_bad_bodies(text: str):
    with pytest.raises(InvalidEvent) as info:
        KINDS.body_from_json("hub.admitted", text)
    assert info.value.reason is Reason.BAD_BODY


def test_body_from_json_refuses_unknown_kinds():
    with pytest.raises(InvalidEvent) as info:
        KINDS.body_from_json("no.such_kind", "{}")
    assert info.value.reason is Reason.UNKNOWN_KIND


# -- versions and upcasters, in a fresh registry ----------------------------------------------


class Note(Body, frozen=True, kw_only=True):
    """A test note: v1 had ``text``; v2 renamed it ``title``; v3 added ``tags``."""

    title: str
    tags: tuple[str, ...] = ()


def v1_to_v2(fields: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in fields.items() if k != "text"}
    out["title"] = fields["text"]
    return out


def v2_to_v3(fields: dict[str, Any]) -> dict[str, Any]:
    return {**fields, "tags": ["upcast"]}


def test_v1_body_is_upcast_and_current_version_decodes_directly():
    registry = KindRegistry()
    registry.register("test.note", Note, version=2, upcasters={1: v1_to_v2})
    v1 = msgspec.msgpack.encode({"text": "hello"})
    assert registry.decode_body("test.note", v1) == Note(title="hello")
    v2 = msgspec.msgpack.encode({"_v": 2, "title": "direct"})
    assert registry.decode_body("test.note", v2) == Note(title="direct")


def test_encode_body_writes_the_current_version():
    registry = KindRegistry()
    registry.register("test.note", Note, version=2, upcasters={1: v1_to_v2})
    data = registry.encode_body("test.note", Note(title="t"))
    assert msgspec.msgpack.decode(data) == {"_v": 2, "title": "t", "tags": []}
    assert registry.decode_body("test.note", data) == Note(title="t")


def test_upcasters_chain_one_version_at_a_time():
    registry = KindRegistry()
    registry.register("test.note", Note, version=3, upcasters={1: v1_to_v2, 2: v2_to_v3})
    v1 = msgspec.msgpack.encode({"text": "old"})
    v2 = msgspec.msgpack.encode({"_v": 2, "title": "mid"})
    assert registry.decode_body("test.note", v1) == Note(title="old", tags=("upcast",))
    assert registry.decode_body("test.note", v2) == Note(title="mid", tags=("upcast",))
    assert body_reason("test.note", {"_v": 4, "title": "x"}, registry) is Reason.BODY_VERSION


def test_upcast_body_failing_the_struct_is_bad():
    registry = KindRegistry()
    registry.register("test.note", Note, version=2, upcasters={1: lambda f: {"title": 5}})
    assert body_reason("test.note", {"text": "x"}, registry) is Reason.BAD_BODY


def test_upcaster_failing_on_a_malformed_old_body_is_bad_body_not_a_crash():
    # A v2-shaped body without _v is a v1 body: the upcaster looks for "text" and raises.
    registry = KindRegistry()
    registry.register("test.note", Note, version=2, upcasters={1: v1_to_v2})
    assert body_reason("test.note", {"title": "no text"}, registry) is Reason.BAD_BODY


def test_upcasting_does_not_touch_the_signed_bytes():
    registry = KindRegistry()
    registry.register("test.note", Note, version=2, upcasters={1: v1_to_v2})
    v1 = msgspec.msgpack.encode({"text": "hello"})
    before = bytes(v1)
    registry.decode_body("test.note", v1)
    assert v1 == before


def test_registering_a_version_without_every_upcaster_is_refused():
    registry = KindRegistry()
    with pytest.raises(ValueError, match="upcasters"):
        registry.register("test.note", Note, version=3, upcasters={1: v1_to_v2})


def test_registering_a_kind_twice_is_refused():
    registry = KindRegistry()
    registry.register("test.note", Note)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("test.note", Note)


def test_a_fresh_registry_does_not_know_the_network_kinds():
    registry = KindRegistry()
    registry.register("test.note", Note)
    assert "hub.registered" not in registry
    assert "test.note" not in KINDS


def test_a_hub_id_has_exactly_one_spelling_in_every_body() -> None:
    # 32 bytes fill 51 base32 characters and one bit of the 52nd: only "a" or "q" can end a
    # real id. Any other ending would let one key travel under several spellings.
    import base64
    import os

    from hubnode.events.fields import HubId
    from hubnode.events.ids import hub_display

    ends = {hub_display(os.urandom(32))[-1] for _ in range(200)}
    assert ends == {"a", "q"}
    good = hub_display(base64.b32decode("B" * 56)[:32])  # not "A": all zeros has order 4
    assert msgspec.convert(good, HubId) == good
    for bad in (good[:-1] + "b", good.upper(), good + "\n"):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, HubId)
