"""The Protocol Buffers wire format, read only: enough to take a TensorFlow GraphDef apart.

A message is a sequence of fields, each a key varint (field number << 3 | wire type) and a value:
wire type 0 a varint, 1 eight little-endian bytes, 2 a varint length and that many bytes (a
string, a nested message or a packed repeated scalar), 5 four little-endian bytes.  Wire types 3
and 4 (groups) are obsolete and refused.  Field numbers are those of the `.proto` files of the
messages being read (numdp.io.pb_read names the ones it uses).

Malformed bytes raise ValueError; the caller names the file.
"""
from __future__ import annotations

from collections.abc import Iterator

VARINT, FIXED64, BYTES, FIXED32 = 0, 1, 2, 5


def varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """The unsigned varint at `pos` and the position after it."""
    value = shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of every field of the message `buf`, in order: an int for
    wire types 0, 1 and 5 (the raw unsigned bits), a memoryview for wire type 2."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == VARINT:
            value, pos = varint(buf, pos)
        elif wire == BYTES:
            size, pos = varint(buf, pos)
            if pos + size > end:
                raise ValueError(f"field {number}: {size} bytes announced, {end - pos} left")
            value = buf[pos:pos + size]
            pos += size
        elif wire in (FIXED64, FIXED32):
            width = 8 if wire == FIXED64 else 4
            if pos + width > end:
                raise ValueError(f"field {number}: truncated fixed-width value")
            value = int.from_bytes(buf[pos:pos + width], "little")
            pos += width
        else:
            raise ValueError(f"field {number}: unsupported wire type {wire}")
        yield number, wire, value


def first(buf: memoryview, number: int, wire: int, default=None):
    """The value of the first field `number` of wire type `wire` in the message `buf`, or `default`."""
    return next((v for f, w, v in fields(buf) if f == number and w == wire), default)


def signed(value: int) -> int:
    """A varint's bits as int64 (negative numbers are encoded as 10-byte two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def packed_varints(buf: memoryview) -> list[int]:
    """The varints of a packed repeated field."""
    out, pos = [], 0
    while pos < len(buf):
        value, pos = varint(buf, pos)
        out.append(value)
    return out
