"""Field types and checks shared by the body Structs of every area."""

from __future__ import annotations

import re
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


# -- human text -------------------------------------------------------------------------
# Peers' text reaches operators' terminals and staff's browsers. Bodies refuse the
# characters that can steer a terminal (C0/C1 controls: ESC starts clear-screen and
# set-title sequences) or make text read other than it is (bidi overrides and isolates,
# zero-width characters). docs/protocol.md, "Human text", lists them.

REFUSED_CHARS: Final = (
    r"\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
)
"""The character-class body of what no text field holds: C0 controls but tab and newline,
DEL, C1 controls, the Arabic letter mark, zero-width space/joiners and the LRM/RLM marks,
line and paragraph separators, bidi embeddings and overrides, the word joiner, invisible
operators and bidi isolates, and the zero-width no-break space (BOM)."""

LINE_PATTERN: Final = rf"^[^\t\n{REFUSED_CHARS}]*\Z"
"""One line of plain text: none of :data:`REFUSED_CHARS`, and no tab or newline."""
TEXT_PATTERN: Final = rf"^[^{REFUSED_CHARS}]*\Z"
"""Plain text that may run over several lines: newline and tab are its only controls."""

REFUSED_IN_LINE: Final = re.compile(rf"[\t\n{REFUSED_CHARS}]")
"""Finds a character a one-line field refuses (to report or escape it)."""
REFUSED_IN_TEXT: Final = re.compile(rf"[{REFUSED_CHARS}]")
"""Finds a character a multi-line field refuses."""

Url = Annotated[
    str,
    msgspec.Meta(pattern=rf"^https?://[^\s{REFUSED_CHARS}]{{1,2000}}\Z", description="http(s) URL"),
]
"""A web address: no white space and none of :data:`REFUSED_CHARS`."""


def line(*, max_length: int, min_length: int = 0, description: str | None = None) -> msgspec.Meta:
    """The constraints of a one-line text field (a name, title, area, contact, reason):
    ``Annotated[str, line(max_length=120)]``."""
    return msgspec.Meta(
        min_length=min_length, max_length=max_length, pattern=LINE_PATTERN, description=description
    )


def text(*, max_length: int, min_length: int = 0, description: str | None = None) -> msgspec.Meta:
    """The constraints of a text field that may hold several lines (a description, a note,
    a comment): like :func:`line`, but newline and tab are allowed."""
    return msgspec.Meta(
        min_length=min_length, max_length=max_length, pattern=TEXT_PATTERN, description=description
    )


LINE_RULE: Final = "one line of plain text (no tab, newline, control, bidi or zero-width character)"
TEXT_RULE: Final = "plain text (no control, bidi or zero-width character; newline and tab are fine)"
_EXPLAINED: Final = {
    f"matching regex {HUB_ID_PATTERN!r}": "holding a hub id: hub: and the 52 base32 "
    "characters of a key a hub can have (docs/protocol.md, Identity)",
    f"matching regex {LINE_PATTERN!r}": f"holding {LINE_RULE}",
    f"matching regex {TEXT_PATTERN!r}": f"holding {TEXT_RULE}",
}


def explain(message: str) -> str:
    """A validation message with the text patterns said in words, for people to read."""
    for pattern, words in _EXPLAINED.items():
        message = message.replace(pattern, words)
    return message


def first_refused(value: str, *, lines: bool = False) -> str | None:
    """``U+001B at position 5``: the first character of ``value`` a text field refuses
    (``lines``: one that allows newline and tab), or None."""
    found = (REFUSED_IN_TEXT if lines else REFUSED_IN_LINE).search(value)
    if found is None:
        return None
    return f"U+{ord(found.group()):04X} at position {found.start() + 1}"
