"""Numeric arrays from MATLAB ``.mat`` files (level 5, what ``save`` writes by default), without SciPy.

The release's label files are .mat: NYUDv2's ``segmentation``, SIFT Flow's ``S``, PASCAL-Context's
``LabelMap``. A level-5 MAT-file is a 128-byte header (116 bytes of text, 8 of subsystem offset,
a version 0x0100 and the endian mark "IM" read little-endian, "MI" big-endian) followed by data
elements. Each element starts with a tag: its type and byte count as two uint32, or, when the
upper 16 bits of the first word are not zero, a "small element" of at most 4 bytes packed into
the tag itself. Elements other than small and compressed ones are padded to 8 bytes.

================= ===== ===============================================================
element type      code  content
================= ===== ===============================================================
miMATRIX          14    one variable: array flags (class in the low byte), dimensions
                        (int32), name (int8 text), the real part (any numeric type)
miCOMPRESSED      15    zlib stream holding one miMATRIX element (MATLAB 7's default)
numeric types     1-13  int8 1, uint8 2, int16 3, uint16 4, int32 5, uint32 6, single 7,
                        double 9, int64 12, uint64 13
================= ===== ===============================================================

Values are stored column by column (Fortran order) and may be stored in a narrower type than
their class (a double array of small integers as uint8); they are returned in the class's dtype.
Only real numeric variables are decoded; others (cell arrays, structs, text) are skipped unread.
MATLAB 7.3 files are HDF5 and are refused with the re-save command to use.
:func:`write_mat` writes the same format (one compressed element per variable), for the toy
datasets.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Dict, Iterator, Mapping, Tuple, Union

import numpy as np

__all__ = ["MatFileError", "read_mat_array", "write_mat"]

_HEADER = 128
_MATRIX, _COMPRESSED = 14, 15
_STORAGE = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
# Array classes (array flags' low byte) with numeric values, and their dtypes.
_CLASSES = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4", 14: "i8", 15: "u8"}
_INT8, _INT32, _UINT32 = 1, 5, 6


class MatFileError(ValueError):
    """The file is not a readable level-5 MAT-file, or lacks the variable; the message names the file."""


def _elements(buf: bytes, pos: int, order: str) -> Iterator[Tuple[int, bytes]]:
    """(type, payload) of each data element in ``buf[pos:]``."""
    while pos + 8 <= len(buf):
        word, = struct.unpack_from(order + "I", buf, pos)
        if word >> 16:  # small element: type in the low 16 bits, length in the high, data in the tag
            kind, length = word & 0xFFFF, word >> 16
            if length > 4:
                raise MatFileError(f"a small data element claims {length} bytes")
            yield kind, buf[pos + 4:pos + 4 + length]
            pos += 8
            continue
        kind, length = struct.unpack_from(order + "II", buf, pos)
        start = pos + 8
        if start + length > len(buf):
            raise MatFileError(f"a data element of {length} bytes runs past the end at byte {pos}")
        yield kind, buf[start:start + length]
        pos = start + length
        if kind != _COMPRESSED:
            pos += -length % 8


def _matrix(payload: bytes, order: str, want: str):
    """(name, array or None) of one miMATRIX payload; the values are decoded only for ``want``."""
    parts = list(_elements(payload, 0, order))
    if len(parts) < 3:
        raise MatFileError("a variable lacks its flags, dimensions or name")
    (_, flags), (dims_kind, dims), (_, name) = parts[:3]
    name = name.decode("latin-1")
    klass = struct.unpack_from(order + "I", flags, 0)[0] & 0xFF
    complex_ = bool(struct.unpack_from(order + "I", flags, 0)[0] & 0x800)
    if name != want:
        return name, None
    if klass not in _CLASSES or complex_ or len(parts) < 4:
        raise MatFileError(f"variable {want!r} is not a real numeric array (class {klass})")
    shape = np.frombuffer(dims, dtype=order + _STORAGE.get(dims_kind, "i4")).astype(int)
    kind, data = parts[3]
    if kind not in _STORAGE:
        raise MatFileError(f"variable {want!r} stores its values as type {kind}")
    values = np.frombuffer(data, dtype=order + _STORAGE[kind])
    if values.size != int(np.prod(shape)):
        raise MatFileError(f"variable {want!r} has dimensions {tuple(shape)} but {values.size} values")
    return name, values.astype(_CLASSES[klass]).reshape(tuple(shape), order="F")


def read_mat_array(path: Union[str, os.PathLike], name: str) -> np.ndarray:
    """The real numeric variable ``name`` of the MAT-file at ``path``, in MATLAB's shape and class.

    Raises FileNotFoundError for a missing file and :class:`MatFileError` naming the file when it
    is not a level-5 MAT-file (MATLAB 7.3/HDF5 included), is damaged, or has no such variable.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MAT-file not found: {path}")
    buf = path.read_bytes()
    try:
        if len(buf) < _HEADER:
            raise MatFileError("shorter than a MAT-file header")
        if buf[:19] == b"MATLAB 7.3 MAT-file" or buf[_HEADER * 4:_HEADER * 4 + 4] == b"\x89HDF":
            raise MatFileError("a MATLAB 7.3 (HDF5) file; re-save it in MATLAB with save(f, '-v7')")
        mark = buf[126:128]
        if not buf.startswith(b"MATLAB 5.0 MAT-file") or mark not in (b"IM", b"MI"):
            raise MatFileError("not a MATLAB level-5 MAT-file")
        order = "<" if mark == b"IM" else ">"
        seen = []
        for kind, payload in _elements(buf, _HEADER, order):
            if kind == _COMPRESSED:
                try:
                    payload = zlib.decompress(payload)
                except zlib.error as exc:
                    raise MatFileError(f"a compressed variable is damaged ({exc})") from None
                inner = list(_elements(payload, 0, order))
                if not inner:
                    continue
                kind, payload = inner[0]
            if kind != _MATRIX:
                continue
            found, array = _matrix(payload, order, name)
            seen.append(found)
            if array is not None:
                return array
        raise MatFileError(f"has no variable {name!r} (it has {', '.join(seen) or 'none'})")
    except (MatFileError, struct.error) as exc:
        raise MatFileError(f"cannot read {name!r} from {path}: {exc}") from None


def _element(kind: int, payload: bytes) -> bytes:
    return struct.pack("<II", kind, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def write_mat(path: Union[str, os.PathLike], variables: Mapping[str, np.ndarray]) -> None:
    """Write ``variables`` (name -> real numeric array of a MATLAB class's dtype) to ``path`` as a
    little-endian level-5 MAT-file, each variable a compressed element, as MATLAB's ``save`` does."""
    classes: Dict[str, int] = {dtype: code for code, dtype in _CLASSES.items()}
    storage: Dict[str, int] = {dtype: code for code, dtype in _STORAGE.items()}
    header = b"MATLAB 5.0 MAT-file, written by fcnfast".ljust(116, b" ") + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    body = b""
    for name, array in variables.items():
        array = np.asarray(array)
        dtype = array.dtype.newbyteorder("=").str[1:]
        if dtype not in classes:
            raise TypeError(f"write_mat: {name!r} has dtype {array.dtype}, not a MATLAB numeric class")
        shape = array.shape if array.ndim >= 2 else (1,) * (2 - array.ndim) + array.shape
        matrix = (
            _element(_UINT32, struct.pack("<II", classes[dtype], 0))
            + _element(_INT32, np.asarray(shape, dtype="<i4").tobytes())
            + _element(_INT8, name.encode("latin-1"))
            + _element(storage[dtype], np.asarray(array, dtype="<" + dtype).tobytes(order="F"))
        )
        compressed = zlib.compress(_element(_MATRIX, matrix))
        body += struct.pack("<II", _COMPRESSED, len(compressed)) + compressed
    Path(path).write_bytes(header + body)
