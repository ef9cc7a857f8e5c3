"""The kind registry: ``kind`` → body Struct, body schema version and upcasters (DESIGN §3).

Bodies are msgpack maps. Key ``_v`` carries the body schema version (absent means 1).
A body older than the registered version is upcast in memory by pure functions, one
step per version; the signed bytes are never rewritten.
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


_encoder: Final = msgspec.msgpack.Encoder()
_version_decoder: Final = msgspec.msgpack.Decoder(_BodyVersion)
_dict_decoder: Final = msgspec.msgpack.Decoder(dict[str, Any])


@dataclass(frozen=True)
class KindSpec:
    kind: str
    body: type[Body]
    version: int
    upcasters: Mapping[int, Upcaster]
    description: str
    decoder: msgspec.msgpack.Decoder[Any] = field(repr=False, compare=False)


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
    ) -> None:
        """Register ``kind``; ``upcasters[n]`` lifts a version-``n`` body to ``n + 1``."""
        if kind in self._specs:
            raise ValueError(f"kind {kind!r} is already registered")
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
            decoder=msgspec.msgpack.Decoder(body),
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

    def decode_body(self, kind: str, data: bytes, *, stored: bool = False) -> Body:
        """Validate and decode a body, upcasting old versions. Raises InvalidEvent.

        ``stored``: the body of a record a log already holds, which was checked against
        the rules in force when it was stored (see :func:`_shown_as_replacement`)."""
        spec = self.spec(kind)
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


KINDS: Final = KindRegistry()
"""The registry hubnode's own kinds are registered in."""
