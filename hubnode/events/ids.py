"""Display forms of hub ids and event ids (DESIGN §2)."""

from __future__ import annotations

import base64
import binascii
from functools import lru_cache

from hubnode.crypto import weak_key_reason

HUB_PREFIX = "hub:"
_HUB_B32_LEN = 52  # base32 of 32 bytes, without padding


@lru_cache(maxsize=4096)  # a network has few hubs; projections and logs ask constantly
def hub_display(hub: bytes) -> str:
    """``hub:`` + lower-case, unpadded base32 of the 32-byte root key."""
    return HUB_PREFIX + base64.b32encode(hub).decode("ascii").rstrip("=").lower()


@lru_cache(maxsize=4096)
def parse_hub(text: str) -> bytes:
    """The 32-byte hub id in ``text`` (``hub:…``); ValueError saying what is wrong.

    A key no hub can have (:func:`hubnode.crypto.weak_key_reason`: small order or a
    non-canonical encoding) is refused like a malformed id; the ``HubId`` field of every
    body refuses the same keys, so a parsed body field always parses here.
    """
    value = text.strip()
    if not value.startswith(HUB_PREFIX):
        raise ValueError(f"{text!r} is not a hub id: hub ids start with {HUB_PREFIX!r}")
    b32 = value[len(HUB_PREFIX) :]
    if len(b32) != _HUB_B32_LEN:
        raise ValueError(
            f"{text!r} is not a hub id: expected {_HUB_B32_LEN} base32 characters "
            f"after {HUB_PREFIX!r}, got {len(b32)}"
        )
    try:
        raw = base64.b32decode(b32.upper() + "====")
    except binascii.Error as e:
        raise ValueError(f"{text!r} is not a hub id: {e}") from None
    if hub_display(raw) != HUB_PREFIX + b32.lower():
        raise ValueError(f"{text!r} is not a hub id: non-canonical base32")
    weak = weak_key_reason(raw)
    if weak is not None:
        raise ValueError(
            f"{text!r} cannot be a hub id: {weak}; no hub has this key, "
            "so ask the hub for the id `hubnode id` prints"
        )
    return raw


def short_hub(hub: bytes) -> str:
    """A short form for tables and log lines (not unique; never parse it)."""
    return hub_display(hub)[:14]


def short_id(event_id: bytes) -> str:
    return event_id.hex()[:12]
