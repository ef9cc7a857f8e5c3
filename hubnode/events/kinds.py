"""The kind registry: ``kind`` → body Struct, body schema version and upcasters (DESIGN §3).

Bodies are msgpack maps. Key ``_v`` carries the body schema version (absent means 1).
A body older than the registered version is upcast in memory by pure functions, one
step per version; the signed bytes are never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec

from hubnode.errors import InvalidEvent, Reason


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

    def decode_body(self, kind: str, data: bytes) -> Body:
        """Validate and decode a body, upcasting old versions. Raises InvalidEvent."""
        spec = self.spec(kind)
        try:
            version = _version_decoder.decode(data).v
            if version == spec.version:
                body: Body = spec.decoder.decode(data)
                return body
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
            fields = _dict_decoder.decode(data)
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
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as e:  # see envelope
            raise InvalidEvent(Reason.BAD_BODY, f"{kind} body: {e}") from None

    def body_from_json(self, kind: str, text: str | bytes) -> Body:
        """A body typed by an operator as JSON, validated against the kind's Struct."""
        spec = self.spec(kind)
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
            raise InvalidEvent(Reason.BAD_BODY, f"{kind} body: {e}") from None
        return body


KINDS: Final = KindRegistry()
"""The registry hubnode's own kinds are registered in."""
