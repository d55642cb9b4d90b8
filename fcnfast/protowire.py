"""A small reader of the protocol buffers wire format: just enough to walk Caffe's messages.

A serialised message is a sequence of fields. Each field starts with a varint key,
``field_number << 3 | wire_type``, followed by its value:

========= ============================== ==========================================
wire type value                          used by (in caffe.proto)
========= ============================== ==========================================
0         varint (7 bits a byte, low     int32/int64/uint64/bool/enum
          group first, high bit = more)
1         8 bytes, little-endian         double
2         varint length, then that many  string, bytes, sub-messages, packed
          bytes                          repeated numbers
5         4 bytes, little-endian         float
3, 4      start/end of a group           (deprecated; Caffe uses none: refused)
========= ============================== ==========================================

A repeated number may arrive packed (one wire-type-2 field holding the values back to back) or
one field per value; readers must take both. Fields of one message may come in any order, and an
unknown field is skipped. See https://protobuf.dev/programming-guides/encoding/.

:func:`fields` walks the fields of one message without copying: a length-delimited value is a
``memoryview`` slice of the input (a 500 MB caffemodel is read once, its float arrays in place).
"""

from __future__ import annotations

from typing import Iterator, Tuple, Union

__all__ = ["WireError", "fields", "read_varint", "VARINT", "FIXED64", "LENGTH_DELIMITED", "FIXED32"]

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10  # a 64-bit value needs at most 10 groups of 7 bits

Field = Tuple[int, int, Union[int, memoryview]]


class WireError(ValueError):
    """The bytes are not a well-formed protocol buffers message (truncated, or not protobuf at all)."""


def read_varint(buf: memoryview, pos: int, end: int) -> Tuple[int, int]:
    """(value, position after it) of the varint at ``pos``."""
    value = shift = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos >= end:
            raise WireError(f"a varint runs past the end of its message at byte {pos}")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise WireError(f"a varint at byte {pos - _MAX_VARINT_BYTES} is longer than 10 bytes")


def fields(buf: memoryview, start: int = 0, end: int = -1) -> Iterator[Field]:
    """``(field_number, wire_type, value)`` of each field of the message in ``buf[start:end]``
    (``end=-1``: to the end). ``value`` is an int for wire types 0, 1 and 5 (the raw bits of a
    fixed-width number) and a memoryview for wire type 2. Raises WireError on malformed input."""
    end = len(buf) if end < 0 else end
    pos = start
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {pos}: not a protobuf message")
        if wire == VARINT:
            value, pos = read_varint(buf, pos, end)
        elif wire in (FIXED64, FIXED32):
            width = 8 if wire == FIXED64 else 4
            if pos + width > end:
                raise WireError(f"field {number} runs past the end of its message at byte {pos}")
            value = int.from_bytes(buf[pos:pos + width], "little")
            pos += width
        elif wire == LENGTH_DELIMITED:
            length, pos = read_varint(buf, pos, end)
            if pos + length > end:
                raise WireError(f"field {number} claims {length} bytes at byte {pos}, past the end of its message")
            value = buf[pos:pos + length]
            pos += length
        else:
            raise WireError(f"field {number} has wire type {wire} at byte {pos} (groups or garbage)")
        yield number, wire, value
