"""The .hublog export format: magic, then u32 big-endian length-prefixed wire records."""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubnode.hublog import MAGIC, MAX_FRAME, HublogFormatError, HublogWriter, read_hublog

from .conftest import chain


def written(records: list[bytes]) -> tuple[bytes, HublogWriter]:
    out = io.BytesIO()
    writer = HublogWriter(out)
    for raw in records:
        writer.write(raw)
    return out.getvalue(), writer


def test_magic_is_fixed():
    assert MAGIC == b"HUBLOG1\n"


def test_layout_is_magic_then_length_prefixed_records():
    data, writer = written([b"abc", b"", b"\x00" * 300])
    assert data == (
        b"HUBLOG1\n"
        + b"\x00\x00\x00\x03abc"
        + b"\x00\x00\x00\x00"
        + b"\x00\x00\x01\x2c"
        + b"\x00" * 300
    )
    assert (writer.count, writer.size) == (3, len(data))


def test_signed_records_round_trip_with_their_offsets():
    _, records = chain(5)
    data, writer = written(records)
    read = list(read_hublog(io.BytesIO(data)))
    assert [raw for _, raw in read] == records
    offset = len(MAGIC)
    for (at, raw), original in zip(read, records, strict=True):
        assert at == offset
        assert data[at : at + 4 + len(raw)] == struct.pack(">I", len(original)) + original
        offset += 4 + len(original)
    assert offset == writer.size == len(data)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_any_frames_round_trip(records: list[bytes]):
    data, writer = written(records)
    assert [raw for _, raw in read_hublog(io.BytesIO(data))] == records
    assert writer.count == len(records) and writer.size == len(data)


def test_magic_alone_is_an_empty_log():
    assert list(read_hublog(io.BytesIO(MAGIC))) == []


@pytest.mark.parametrize("head", [b"", b"HUBLOG", b"HUBLOG2\n", b"hublog1\n", b"\x00" * 8])
def test_bad_magic_is_refused_at_offset_0(head: bytes):
    with pytest.raises(HublogFormatError) as info:
        list(read_hublog(io.BytesIO(head + b"\x00\x00\x00\x00")))
    assert info.value.offset == 0
    assert "not a .hublog" in str(info.value)


@pytest.mark.parametrize("cut", [1, 2, 3])
def test_truncated_length_prefix_is_reported_where_it_starts(cut: int):
    data, _ = written([b"first"])
    tail = len(data)
    stream = io.BytesIO(data + struct.pack(">I", 10)[:cut])
    reader = read_hublog(stream)
    assert next(reader) == (len(MAGIC), b"first")
    with pytest.raises(HublogFormatError) as info:
        next(reader)
    assert info.value.offset == tail
    assert "truncated length prefix" in str(info.value)


def test_truncated_record_is_reported_where_its_frame_starts():
    data, _ = written([b"first", b"second record"])
    second = len(MAGIC) + 4 + len(b"first")
    for cut in range(second + 4, len(data)):
        with pytest.raises(HublogFormatError) as info:
            list(read_hublog(io.BytesIO(data[:cut])))
        assert info.value.offset == second
        assert "truncated record" in str(info.value)


def test_absurd_length_is_refused_before_reading():
    class NoBigReads(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            assert size is not None and 0 <= size <= MAX_FRAME, size
            return super().read(size)

    data = MAGIC + struct.pack(">I", MAX_FRAME + 1) + b"x" * 10
    with pytest.raises(HublogFormatError) as info:
        list(read_hublog(NoBigReads(data)))
    assert info.value.offset == len(MAGIC)
    assert "beyond" in str(info.value)
    # The limit itself is allowed (the frame is then merely truncated).
    with pytest.raises(HublogFormatError, match="truncated record"):
        list(read_hublog(io.BytesIO(MAGIC + struct.pack(">I", MAX_FRAME) + b"x")))


def test_reader_streams_one_frame_at_a_time():
    data, _ = written([b"a", b"b"])
    broken = data + b"\x00\x00"  # a bad tail does not stop earlier frames being read
    reader = read_hublog(io.BytesIO(broken))
    assert [next(reader)[1], next(reader)[1]] == [b"a", b"b"]
    with pytest.raises(HublogFormatError):
        next(reader)
