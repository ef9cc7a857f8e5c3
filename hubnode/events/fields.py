"""Field types and checks shared by the body Structs of every area."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Final

import msgspec

HUB_ID_PATTERN: Final = r"^hub:[a-z2-7]{51}[aq]\Z"
"""The display form of a hub id, exactly: 32 bytes are 256 bits, so the 52nd base32
character carries one bit and four zero bits — only ``a`` or ``q`` can end a real id. A
looser pattern would let one key travel under several spellings."""

HubId = Annotated[str, msgspec.Meta(pattern=HUB_ID_PATTERN, description="hub:… id")]

LocalId = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z",
        description="an id chosen by the submitting hub: letters, digits, . _ -",
    ),
]
"""An id a hub gives to one of its own records; (hub, id) names it network-wide.

It holds no ``/`` and cannot start with ``.``, so it is never ``.`` or ``..`` and always
one path segment of a link (which still escapes it: ``hubnode.console.web.urlpart``).
``..`` inside one (``v1..2``) is allowed and harmless; refusing it now would make events
already signed and stored with such an id fail to decode."""


def unique(what: str, values: Sequence[str]) -> None:
    """Raise ValueError (a body validation error) if ``values`` repeat."""
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must not repeat: {list(values)}")
