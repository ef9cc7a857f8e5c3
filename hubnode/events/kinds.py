"""The kind registry: ``kind`` → body Struct, body schema version, upcasters and body
limit (DESIGN §3).

Bodies are msgpack maps. Key ``_v`` carries the body schema version (absent means 1).
A body older than the registered version is upcast in memory by pure functions, one
step per version; the signed bytes are never rewritten.

Each kind has a body limit in bytes, and a body may carry only a few keys its kind does
not have (the optional fields a newer version adds): :meth:`KindRegistry.check_body` is
the body step of ingest and append, :meth:`KindRegistry.decode_body` the read path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from hubnode.errors import InvalidEvent, Reason
from hubnode.events.fields import REFUSED_IN_LINE, REFUSED_IN_TEXT, explain


class Body(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event body. Subclasses add fields; new fields need defaults."""


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns a body dict of version ``n`` into one of version ``n + 1``. Must be pure."""


class _BodyVersion(msgspec.Struct):
    v: int = msgspec.field(default=1, name="_v")


GENERIC_MAX_BODY: Final = 64 * 1024
"""The body limit of a kind this hubnode does not know, and of a kind registered without
one: the largest limit of hubnode's own kinds, so a kind added later that is no larger
passes this step on a node that does not know it yet."""
UNKNOWN_FIELDS_MAX: Final = 8
"""Most entries a body may carry that are not fields of its kind: room for the optional
fields newer versions add (docs/protocol.md, Evolving bodies)."""
UNKNOWN_BYTES_MAX: Final = 1024
"""Most bytes those entries may take, keys included."""

_encoder: Final = msgspec.msgpack.Encoder()
_version_decoder: Final = msgspec.msgpack.Decoder(_BodyVersion)
_dict_decoder: Final = msgspec.msgpack.Decoder(dict[str, Any])
_entries_decoder: Final = msgspec.msgpack.Decoder(dict[str, msgspec.Raw])


@dataclass(frozen=True)
class KindSpec:
    kind: str
    body: type[Body]
    version: int
    upcasters: Mapping[int, Upcaster]
    description: str
    max_body: int
    """The most bytes a body of this kind may take (docs/protocol.md, Body limits)."""
    decoder: msgspec.msgpack.Decoder[Any] = field(repr=False, compare=False)
    keys: Mapping[str, int] = field(repr=False, compare=False)
    """Each key a body of this kind may have (its fields and ``_v``) → its encoded size."""


class KindRegistry:
    """Which kinds this hubnode understands. A module-level default is :data:`KINDS`."""

    def __init__(self) -> None:
        self._specs: dict[str, KindSpec] = {}

    def register(
        self,
        kind: str,
        body: type[Body],
        *,
        version: int = 1,
        upcasters: Mapping[int, Upcaster] | None = None,
        description: str = "",
        max_body: int = GENERIC_MAX_BODY,
    ) -> None:
        """Register ``kind``; ``upcasters[n]`` lifts a version-``n`` body to ``n + 1``.

        ``max_body`` bounds its bodies in bytes. Choose it to hold the kind's largest valid
        body plus :data:`UNKNOWN_BYTES_MAX`, and never lower it once events are signed:
        a node with a lower limit stops the chain of any hub that signed a larger body.
        """
        if kind in self._specs:
            raise ValueError(f"kind {kind!r} is already registered")
        if not 0 < max_body <= GENERIC_MAX_BODY:
            raise ValueError(
                f"kind {kind!r} max_body {max_body}: a body limit is 1 to {GENERIC_MAX_BODY} bytes"
            )
        steps = dict(upcasters or {})
        missing = [n for n in range(1, version) if n not in steps]
        if missing:
            raise ValueError(f"kind {kind!r} version {version} lacks upcasters from {missing}")
        self._specs[kind] = KindSpec(
            kind=kind,
            body=body,
            version=version,
            upcasters=steps,
            description=description or (body.__doc__ or "").strip().splitlines()[0],
            max_body=max_body,
            decoder=msgspec.msgpack.Decoder(body),
            keys={
                name: len(_encoder.encode(name))
                for name in ("_v", *(f.encode_name for f in msgspec.structs.fields(body)))
            },
        )

    def __contains__(self, kind: object) -> bool:
        return kind in self._specs

    def __iter__(self) -> Iterator[KindSpec]:
        return iter(sorted(self._specs.values(), key=lambda s: s.kind))

    def spec(self, kind: str) -> KindSpec:
        try:
            return self._specs[kind]
        except KeyError:
            raise InvalidEvent(
                Reason.UNKNOWN_KIND,
                f"kind {kind!r} is not registered here; "
                f"known kinds: {', '.join(sorted(self._specs))}",
            ) from None

    def encode_body(self, kind: str, body: Body) -> bytes:
        """The body map for ``kind``, with ``_v`` when the version is above 1."""
        spec = self.spec(kind)
        if type(body) is not spec.body:
            raise TypeError(
                f"kind {kind!r} takes a {spec.body.__name__}, not {type(body).__name__}"
            )
        if spec.version == 1:
            return _encoder.encode(body)
        return _encoder.encode({"_v": spec.version, **msgspec.structs.asdict(body)})

    def check_body(self, kind: str, data: bytes) -> Body:
        """The body step of ingest and append (docs/protocol.md, Verification step 11).

        The size first, before anything is decoded (against :data:`GENERIC_MAX_BODY` for a
        kind not registered here), then :meth:`decode_body`, then the content the kind does
        not know: at most :data:`UNKNOWN_FIELDS_MAX` entries in :data:`UNKNOWN_BYTES_MAX`
        bytes. Raises InvalidEvent (``body_too_large`` for either limit).
        """
        spec = self._specs.get(kind)
        limit = GENERIC_MAX_BODY if spec is None else spec.max_body
        if len(data) > limit:
            raise InvalidEvent(
                Reason.BODY_TOO_LARGE,
                f"{kind} body is {len(data):,} bytes, over the {limit:,}-byte limit "
                + (
                    "for kinds this hubnode does not know"
                    if spec is None
                    else "of its kind (docs/protocol.md, Body limits): shorten its longest "
                    "texts or lists"
                ),
            )
        if spec is None:
            spec = self.spec(kind)  # raises: not registered here
        body = self._decode(spec, data)
        # A map of at most 8 entries in at most 1 KiB cannot carry more than the allowance:
        # most bodies are decided by their first byte (a fixmap header) and their length.
        head = data[0]
        if len(data) > UNKNOWN_BYTES_MAX or head & 0xF0 != 0x80 or head & 0x0F > UNKNOWN_FIELDS_MAX:
            _check_unknown_content(spec, data)
        return body

    def decode_body(self, kind: str, data: bytes, *, stored: bool = False) -> Body:
        """Validate and decode a body, upcasting old versions. Raises InvalidEvent.

        Unknown keys are ignored, whatever their size: records from elsewhere go through
        :meth:`check_body` first. ``stored``: the body of a record a log already holds,
        which was checked against the rules in force when it was stored (see
        :func:`_shown_as_replacement`)."""
        return self._decode(self.spec(kind), data, stored=stored)

    def _decode(self, spec: KindSpec, data: bytes, *, stored: bool = False) -> Body:
        kind = spec.kind
        try:
            version = _version_decoder.decode(data).v
            if version == spec.version:
                body: Body = spec.decoder.decode(data)
                return body
            return _lifted(spec, version, _dict_decoder.decode(data))
        except msgspec.ValidationError as e:
            if stored and (old := _shown_as_replacement(spec, data)) is not None:
                return old
            raise InvalidEvent(Reason.BAD_BODY, f"{kind} body: {explain(str(e))}") from None
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:  # see envelope
            raise InvalidEvent(Reason.BAD_BODY, f"{kind} body: {e}") from None

    def body_from_json(self, kind: str, text: str | bytes) -> Body:
        """A body typed by an operator as JSON, validated against the kind's Struct."""
        spec = self.spec(kind)
        # Text saved with a UTF-8 BOM ("$(cat body.json)") is still the same JSON.
        text = (
            text.removeprefix("\ufeff")
            if isinstance(text, str)
            else text.removeprefix(b"\xef\xbb\xbf")
        )
        try:
            fields = msgspec.json.decode(text, type=dict[str, Any])
            # Peers ignore unknown fields (they may come from newer hubs); a person typing
            # one has most likely misspelt a field, so say so instead of dropping it.
            known = {f.encode_name for f in msgspec.structs.fields(spec.body)}
            unknown = sorted(set(fields) - known)
            if unknown:
                raise InvalidEvent(
                    Reason.BAD_BODY,
                    f"{kind} body: unknown field {', '.join(map(repr, unknown))}; "
                    f"its fields are {', '.join(sorted(known))}",
                )
            body: Body = msgspec.convert(fields, spec.body)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:  # see envelope
            raise InvalidEvent(Reason.BAD_BODY, f"{kind} body: {explain(str(e))}") from None
        return body


def _lifted(spec: KindSpec, version: int, fields: dict[str, Any]) -> Body:
    """The body map ``fields`` of body version ``version``, upcast and validated."""
    kind = spec.kind
    if version > spec.version:
        raise InvalidEvent(
            Reason.BODY_VERSION,
            f"{kind} body version {version}; this hubnode reads versions 1 to "
            f"{spec.version} — upgrade hubnode to read it",
        )
    if version < 1:
        raise InvalidEvent(
            Reason.BODY_VERSION, f"{kind} body version {version}: versions start at 1"
        )
    for step in range(version, spec.version):
        try:
            fields = spec.upcasters[step](fields)
        except Exception as e:  # old bodies come from peers: a crash here is theirs
            raise InvalidEvent(
                Reason.BAD_BODY, f"{kind} body version {step} cannot be upcast: {e!r}"
            ) from None
    fields.pop("_v", None)
    converted: Body = msgspec.convert(fields, spec.body)
    return converted


def _shown_as_replacement(spec: KindSpec, data: bytes) -> Body | None:
    """A stored body that fails only the text rule, read with each refused character
    replaced by U+FFFD; None if it fails otherwise.

    Bodies did not always refuse control, bidi and zero-width characters (docs/protocol.md,
    "Human text"), and a log keeps the records it stored before: their bytes, signatures
    and ids never change. Reading them with those characters replaced keeps them readable,
    and every reader safe from them, without a second, looser set of body types. Newlines
    and tabs are replaced only if the body still fails with them (multi-line fields allow
    them)."""
    try:
        fields = _dict_decoder.decode(data)
        version = int(fields.get("_v", 1))
        for refused in (REFUSED_IN_TEXT, REFUSED_IN_LINE):
            try:
                return _lifted(spec, version, _replaced(fields, refused))
            except (msgspec.ValidationError, InvalidEvent):
                continue
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError, TypeError, ValueError):
        pass
    return None


def _replaced(value: Any, refused: re.Pattern[str]) -> Any:
    """``value`` (a decoded map, list or scalar) with ``refused`` characters as U+FFFD."""
    if isinstance(value, str):
        return refused.sub("\ufffd", value)
    if isinstance(value, dict):
        return {k: _replaced(v, refused) for k, v in value.items()}
    if isinstance(value, list):
        return [_replaced(v, refused) for v in value]
    return value


def _map_header(data: bytes) -> tuple[int, int]:
    """(entries, header bytes) of the msgpack map that ``data`` holds."""
    first = data[0]
    if first & 0xF0 == 0x80:
        return first & 0x0F, 1
    if first == 0xDE:
        return int.from_bytes(data[1:3]), 3
    return int.from_bytes(data[1:5]), 5  # 0xDF, the only other map header


def _check_unknown_content(spec: KindSpec, data: bytes) -> None:
    """Raise unless ``data`` (a body that decoded for ``spec``) carries no more than the
    allowance of entries that are not its kind's fields.

    Unknown content is every byte of the body not taken by its map header or by the entry
    (key and value) holding a field's value: unknown keys and, since the decoder keeps a
    repeated key's last value, the earlier entries of a repeated key. Keys are counted at
    their canonical size.
    """
    entries, header = _map_header(data)
    if entries <= UNKNOWN_FIELDS_MAX and len(data) <= UNKNOWN_BYTES_MAX:
        return  # too small to hold more than the allowance, whatever it holds (map16 header)
    try:
        found = _entries_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:  # see envelope
        raise InvalidEvent(Reason.BAD_BODY, f"{spec.kind} body: {e}") from None
    if "_v" in found and _version_decoder.decode(data).v != spec.version:
        return  # an older version's fields are the upcasters' business, not this Struct's
    known = found.keys() & spec.keys.keys()
    if len(known) == entries:
        return  # every entry holds a field: the common case, decided without counting
    extra_entries = entries - len(known)
    extra_bytes = len(data) - header - sum(spec.keys[k] + len(found[k]) for k in known)
    if extra_entries > UNKNOWN_FIELDS_MAX or extra_bytes > UNKNOWN_BYTES_MAX:
        unknown = sorted(found.keys() - known)
        named = ", ".join(repr(k[:30]) for k in unknown[:3]) + (", …" if len(unknown) > 3 else "")
        if len(found) < entries:
            named += (", " if named else "") + "a repeated key"
        raise InvalidEvent(
            Reason.BODY_TOO_LARGE,
            f"{spec.kind} body carries {extra_entries} field{'s' * (extra_entries != 1)} "
            f"this hubnode does not know ({named}) in {extra_bytes:,} bytes; a body may carry "
            f"at most {UNKNOWN_FIELDS_MAX} in {UNKNOWN_BYTES_MAX:,} bytes (room for the "
            "optional fields of a newer version)",
        )


KINDS: Final = KindRegistry()
"""The registry hubnode's own kinds are registered in."""
