"""The ``.hublog`` export format: a stream of wire records an auditor can replay.

Layout: the 8 bytes ``HUBLOG1\\n``, then for each record its length as a 4-byte
big-endian unsigned integer followed by the record bytes, exactly as signed. Hubs'
records come in seq order. Readers stream; nothing needs the whole file in memory.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO, Final

from hubnode.errors import HubnodeError

MAGIC: Final = b"HUBLOG1\n"
_LEN: Final = struct.Struct(">I")
MAX_FRAME: Final = 16 * 1024 * 1024
"""Largest length prefix a reader follows; far above any valid record, below harm."""


class HublogFormatError(HubnodeError):
    """The file is not a well-formed .hublog (bad magic, truncated frame, absurd length)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at byte offset {offset}")
        self.offset = offset


class HublogWriter:
    """Writes the magic on creation, then one frame per :meth:`write`."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.count = 0
        self.size = len(MAGIC)
        out.write(MAGIC)

    def write(self, raw: bytes) -> None:
        self._out.write(_LEN.pack(len(raw)))
        self._out.write(raw)
        self.count += 1
        self.size += _LEN.size + len(raw)


def read_hublog(src: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, record)`` for each frame; ``offset`` is where its length prefix starts."""
    head = src.read(len(MAGIC))
    if head != MAGIC:
        raise HublogFormatError(f"not a .hublog file (starts {head[:8]!r}, expected {MAGIC!r})", 0)
    offset = len(MAGIC)
    while True:
        prefix = src.read(_LEN.size)
        if not prefix:
            return
        if len(prefix) < _LEN.size:
            raise HublogFormatError("truncated length prefix", offset)
        (length,) = _LEN.unpack(prefix)
        if length > MAX_FRAME:
            raise HublogFormatError(f"frame length {length} is beyond {MAX_FRAME}", offset)
        raw = src.read(length)
        if len(raw) < length:
            raise HublogFormatError(f"truncated record: {len(raw)} of {length} bytes", offset)
        yield offset, raw
        offset += _LEN.size + length
