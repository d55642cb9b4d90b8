"""A tiny writer of binary caffemodels for the tests: the protobuf wire format by hand.

Field numbers are caffe.proto's (see fcnfast/caffemodel.py). Options cover what files in the
wild hold: the ``layer`` field (LayerParameter) or the older ``layers`` (V1LayerParameter, type
an enum) or its V0 form nested inside, blob shapes as BlobShape or as the old num/channels/
height/width, float data packed or one field per value, and double data.
"""

import struct

import numpy as np


def varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 two's complement, as protobuf encodes negative numbers
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def key(field: int, wire: int) -> bytes:
    return varint(field << 3 | wire)


def length_delimited(field: int, payload: bytes) -> bytes:
    return key(field, 2) + varint(len(payload)) + payload


def string(field: int, text: str) -> bytes:
    return length_delimited(field, text.encode())


def blob(array: np.ndarray, *, legacy: bool = False, double: bool = False, unpacked: bool = False) -> bytes:
    array = np.asarray(array)
    out = b""
    if legacy:
        dims = (1,) * (4 - array.ndim) + array.shape
        out += b"".join(key(n, 0) + varint(d) for n, d in zip((1, 2, 3, 4), dims))
    else:
        out += length_delimited(7, length_delimited(1, b"".join(varint(d) for d in array.shape)))
    flat = array.reshape(-1)
    if double:
        out += length_delimited(8, flat.astype("<f8").tobytes())
    elif unpacked:
        out += b"".join(key(5, 5) + struct.pack("<f", v) for v in flat.astype(np.float32))
    else:
        out += length_delimited(5, flat.astype("<f4").tobytes())
    return out


def layer(name: str, kind: str, blobs=(), *, form: str = "layer", **blob_options) -> bytes:
    """One layer message: ``form`` "layer" (LayerParameter), "v1" (V1LayerParameter) or "v0"
    (a V1LayerParameter holding only its V0LayerParameter)."""
    encoded = [blob(b, **blob_options) for b in blobs]
    if form == "layer":
        return string(1, name) + string(2, kind) + b"".join(length_delimited(7, b) for b in encoded)
    if form == "v1":
        enum = {"Convolution": 4, "Deconvolution": 39}.get(kind, 0)
        return string(4, name) + key(5, 0) + varint(enum) + b"".join(length_delimited(6, b) for b in encoded)
    v0 = string(1, name) + string(2, kind.lower()) + b"".join(length_delimited(50, b) for b in encoded)
    return length_delimited(1, v0)


def net(layers, *, name: str = "net", form: str = "layer", **blob_options) -> bytes:
    """A NetParameter of ``layers`` ((name, type, [arrays]) triples) plus a data layer without blobs."""
    field = 100 if form == "layer" else 2
    body = [layer("data", "Python", form=form)] + [layer(n, k, b, form=form, **blob_options) for n, k, b in layers]
    return string(1, name) + b"".join(length_delimited(field, m) for m in body)
