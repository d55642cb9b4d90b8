"""Reading Caffe's binary ``.caffemodel`` files without Caffe: each layer's name, type and blobs.

A caffemodel is one serialised ``caffe.NetParameter`` (caffe.proto). Only these fields are read
(:mod:`fcnfast.protowire` walks the bytes; everything else is skipped):

=================== ===== ======================================================================
message             field meaning
=================== ===== ======================================================================
NetParameter        1     name (string)
NetParameter        100   layer: repeated LayerParameter (Caffe since 2015)
NetParameter        2     layers: repeated V1LayerParameter (older files)
LayerParameter      1, 2  name, type (strings)
LayerParameter      7     blobs: repeated BlobProto
V1LayerParameter    4, 5  name (string), type (enum LayerType)
V1LayerParameter    6     blobs: repeated BlobProto
V1LayerParameter    1     layer: V0LayerParameter (name = 1, type = 2, blobs = 50), the oldest form
BlobProto           7     shape: BlobShape, whose field 1 is dim (repeated int64)
BlobProto           1-4   num, channels, height, width: the 4-D shape before BlobShape existed
BlobProto           5     data (repeated float, packed)
BlobProto           8     double_data (repeated double, packed)
=================== ===== ======================================================================

A blob keeps the shape it was stored with; :attr:`CaffeBlob.legacy` says it came from the 4-D
fields (a bias of 21 is then 1 x 1 x 1 x 21), so the converter compares such shapes without their
leading ones.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, NamedTuple, Optional, Tuple, Union

import numpy as np

from .protowire import FIXED32, FIXED64, LENGTH_DELIMITED, VARINT, WireError, fields, read_varint

__all__ = ["CaffeBlob", "CaffeLayer", "CaffeNet", "CaffeModelError", "read_caffemodel"]

# NetParameter / LayerParameter / V1LayerParameter / V0LayerParameter / BlobProto / BlobShape fields.
_NET_NAME, _NET_LAYER, _NET_LAYERS = 1, 100, 2
_LAYER_NAME, _LAYER_TYPE, _LAYER_BLOBS = 1, 2, 7
_V1_NAME, _V1_TYPE, _V1_BLOBS, _V1_V0 = 4, 5, 6, 1
_V0_NAME, _V0_TYPE, _V0_BLOBS = 1, 2, 50
_BLOB_SHAPE, _BLOB_DATA, _BLOB_DOUBLE = 7, 5, 8
_BLOB_LEGACY = (1, 2, 3, 4)  # num, channels, height, width
_SHAPE_DIM = 1
# V1LayerParameter.LayerType values of the layers that carry blobs, for messages.
_V1_TYPES = {4: "Convolution", 39: "Deconvolution", 14: "InnerProduct"}

# What other files a user may pass by mistake start with.
_SIGNATURES = (
    (b"PK\x03\x04", "a zip archive (a PyTorch .pth checkpoint?)"),
    (b"\x80\x02", "a Python pickle (an old PyTorch checkpoint?)"),
    (b"\x89HDF", "an HDF5 file (Caffe's HDF5 snapshot format is not read; save a binary caffemodel)"),
    (b"\x93NUMPY", "a NumPy .npy array"),
)


class CaffeModelError(ValueError):
    """The file is not a readable binary caffemodel; the message names the file and the problem."""


class CaffeBlob(NamedTuple):
    """One parameter blob: its values (float32 or float64) in its stored ``shape``; ``legacy``
    when the shape came from the old num/channels/height/width fields."""

    data: np.ndarray
    shape: Tuple[int, ...]
    legacy: bool


class CaffeLayer(NamedTuple):
    name: str
    type: str
    blobs: Tuple[CaffeBlob, ...]


class CaffeNet(NamedTuple):
    """A caffemodel's ``name``, its layers in file order, and which field held them ("layer" or
    "layers", the older one)."""

    name: str
    layers: Tuple[CaffeLayer, ...]
    field: str


def _string(value, where: str) -> str:
    if not isinstance(value, memoryview):
        raise WireError(f"{where} is not a string")
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WireError(f"{where} is not UTF-8 text") from exc


def _numbers(values: List, packed_dtype: str, fixed_wire: int, field: str) -> np.ndarray:
    """The repeated numbers of one field: packed chunks and single fixed-width values, in order."""
    chunks = []
    for wire, value in values:
        if wire == LENGTH_DELIMITED:
            if len(value) % np.dtype(packed_dtype).itemsize:
                raise WireError(f"packed {field} of {len(value)} bytes is not a whole number of values")
            chunks.append(np.frombuffer(value, dtype=packed_dtype))
        elif wire == fixed_wire:
            raw = value.to_bytes(np.dtype(packed_dtype).itemsize, "little")
            chunks.append(np.frombuffer(raw, dtype=packed_dtype))
        else:
            raise WireError(f"{field} has wire type {wire}")
    if not chunks:
        return np.zeros(0, dtype=packed_dtype)
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def _varints(values: List, field: str) -> List[int]:
    out: List[int] = []
    for wire, value in values:
        if wire == VARINT:
            out.append(value)
        elif wire == LENGTH_DELIMITED:
            pos = 0
            while pos < len(value):
                number, pos = read_varint(value, pos, len(value))
                out.append(number)
        else:
            raise WireError(f"{field} has wire type {wire}")
    # int64 fields store negative numbers as 10-byte two's complement varints.
    return [v - (1 << 64) if v >= 1 << 63 else v for v in out]


def _blob(buf: memoryview, layer: str, index: int) -> CaffeBlob:
    found = {}
    for number, wire, value in fields(buf):
        found.setdefault(number, []).append((wire, value))
    where = f"layer {layer!r} blob {index}"
    floats = _numbers(found.get(_BLOB_DATA, []), "<f4", FIXED32, f"{where} data")
    doubles = _numbers(found.get(_BLOB_DOUBLE, []), "<f8", FIXED64, f"{where} double_data")
    if floats.size and doubles.size:
        raise WireError(f"{where} holds both float and double data")
    data = doubles if doubles.size else floats
    if _BLOB_SHAPE in found:
        dims: List[int] = []
        for wire, shape in found[_BLOB_SHAPE]:
            if wire != LENGTH_DELIMITED:
                raise WireError(f"{where} shape has wire type {wire}")
            dims += _varints([(w, v) for n, w, v in fields(shape) if n == _SHAPE_DIM], f"{where} shape")
        shape, legacy = tuple(dims), False
    else:
        legacy_dims = [_varints(found.get(n, []), f"{where} legacy dims") for n in _BLOB_LEGACY]
        shape, legacy = tuple(d[-1] if d else 0 for d in legacy_dims), True
    if any(d < 0 for d in shape):
        raise WireError(f"{where} has a negative dimension in {shape}")
    if int(np.prod(shape, dtype=np.int64)) != data.size:
        raise WireError(f"{where} has shape {shape} ({int(np.prod(shape))} values) but holds {data.size} values")
    return CaffeBlob(data.reshape(shape), shape, legacy)


def _layer(buf: memoryview, v1: bool) -> CaffeLayer:
    """One LayerParameter (``v1=False``) or V1LayerParameter (with its V0 form inside)."""
    if v1:
        name_field, type_field, blobs_field = _V1_NAME, _V1_TYPE, _V1_BLOBS
    else:
        name_field, type_field, blobs_field = _LAYER_NAME, _LAYER_TYPE, _LAYER_BLOBS
    name: Optional[str] = None
    kind = ""
    blob_bufs: List[memoryview] = []
    for number, wire, value in fields(buf):
        if number == name_field:
            name = _string(value, "a layer name")
        elif number == type_field:
            kind = _V1_TYPES.get(value, f"V1 type {value}") if v1 and wire == VARINT else _string(value, "a layer type")
        elif number == blobs_field and wire == LENGTH_DELIMITED:
            blob_bufs.append(value)
        elif v1 and number == _V1_V0 and wire == LENGTH_DELIMITED:
            for n0, w0, v0 in fields(value):
                if n0 == _V0_NAME and name is None:
                    name = _string(v0, "a layer name")
                elif n0 == _V0_TYPE and not kind:
                    kind = _string(v0, "a layer type")
                elif n0 == _V0_BLOBS and w0 == LENGTH_DELIMITED:
                    blob_bufs.append(v0)
    name = name if name is not None else ""
    return CaffeLayer(name, kind, tuple(_blob(b, name, i) for i, b in enumerate(blob_bufs)))


def _sniff(head: bytes, path: Path) -> None:
    for signature, what in _SIGNATURES:
        if head.startswith(signature):
            raise CaffeModelError(f"{path} is {what}, not a Caffe .caffemodel")
    text = head.lstrip()
    if text[:1].isalpha() and all(32 <= b < 127 or b in b"\t\r\n" for b in head[:256]):
        raise CaffeModelError(
            f"{path} is a text file (a .prototxt network definition?), not a binary .caffemodel; the weights "
            f"are the .caffemodel the release's caffemodel-url points at"
        )


def read_caffemodel(path: Union[str, os.PathLike]) -> CaffeNet:
    """Every layer of the caffemodel at ``path`` with its blobs (arrays in their stored shapes,
    read-only views of the file's bytes).

    Raises FileNotFoundError for a missing file and :class:`CaffeModelError` naming the file for
    anything that is not a binary caffemodel: an empty file, another format (a .prototxt, a
    PyTorch checkpoint, HDF5), truncated or malformed bytes, a file with no layers.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"caffemodel not found: {path}")
    raw = path.read_bytes()
    if not raw:
        raise CaffeModelError(f"{path} is empty, not a Caffe .caffemodel")
    _sniff(raw[:512], path)
    buf = memoryview(raw)
    name, layers, kinds = "", [], set()
    try:
        for number, wire, value in fields(buf):
            if number == _NET_NAME and wire == LENGTH_DELIMITED:
                name = _string(value, "the net name")
            elif number in (_NET_LAYER, _NET_LAYERS):
                if wire != LENGTH_DELIMITED:
                    raise WireError(f"field {number} (layers) has wire type {wire}")
                layers.append(_layer(value, v1=number == _NET_LAYERS))
                kinds.add("layer" if number == _NET_LAYER else "layers")
    except WireError as exc:
        raise CaffeModelError(f"{path} is not a readable Caffe .caffemodel (truncated or another format): {exc}") from None
    if not layers:
        raise CaffeModelError(f"{path} holds no Caffe layers: not a .caffemodel (or an empty network)")
    return CaffeNet(name, tuple(layers), "layer" if kinds == {"layer"} else "layers" if kinds == {"layers"} else "both")

