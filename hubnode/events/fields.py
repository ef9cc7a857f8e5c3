"""Field types and checks shared by the body Structs of every area."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Final

import msgspec

_WEAK_HUB_IDS: Final = (
    # The 48 keys no hub can have (hubnode.crypto.weak_key_reason), base32-spelt; the
    # tests check this list against that function, key by key and one character off.
    r"a[ae]a{47}[ac]aa"  # y = 0 (order 4) and y = 1 (the identity), either sign bit
    r"|(?:5[tx37]|[67][dhlptx37])7{47}[57]7q"  # y >= p - 1: (0, -1) and y >= p, either sign
    r"|e3ujld6cwit3arod6se7f34y6dk57laf2pddgonrhabiq3kt7[qs]cq"  # two points of order 8
    r"|y4lwu4b5jxme7or4bn3a2edhb4vcau72fq44zrsoy76xpevma[np]5a"  # and the other two
)

HUB_ID_PATTERN: Final = rf"^(?!hub:(?:{_WEAK_HUB_IDS})\Z)hub:[a-z2-7]{{51}}[aq]\Z"
"""The display form of a hub id, exactly: 32 bytes are 256 bits, so the 52nd base32
character carries one bit and four zero bits — only ``a`` or ``q`` can end a real id. A
looser pattern would let one key travel under several spellings. The lookahead refuses
the small-order points and non-canonical encodings, as :func:`~hubnode.events.ids.parse_hub`
does: they are no hub's key (anyone can sign as a small-order one), so no body names one."""

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
