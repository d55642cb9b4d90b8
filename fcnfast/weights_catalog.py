"""The original weights of the FCN networks that are known to be published: where, and their
checksums as their publishers give them (no size or checksum is made up: None where none is
published).

* The release's caffemodels: the URL in each network folder's ``caffemodel-url`` file of
  fcn.berkeleyvision.org (nyud-fcn32s-color-d has none). The release publishes no checksums; the
  md5 of fcn8s-heavy-pascal is the one wkentaro/fcn's downloader checks (fcn/data.py), the sha1s
  of fcn8s/fcn32s-heavy-pascal those opencv_extra's testdata/dnn/download_models.py checks.
* pytorch-fcn's conversions of the VOC caffemodels and of the VGG16 caffemodel to PyTorch state
  dicts (URL and md5 from torchfcn/models/fcn32s.py, fcn16s.py, fcn8s.py and vgg.py).

This module is plain data; :mod:`fcnfast.fetch` downloads and converts.
"""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional

__all__ = ["KnownWeights", "KNOWN_WEIGHTS", "known_weights"]

_RELEASE = "http://dl.caffe.berkeleyvision.org/"
_DRIVE = "https://drive.google.com/uc?id="
_PYTORCH_FCN = "wkentaro/pytorch-fcn torchfcn/models/"


class KnownWeights(NamedTuple):
    """One published weights file. ``kind``: "caffemodel" (converted on arrival to an fcnfast
    checkpoint of ``model``) or "pth" (a PyTorch state dict: of ``model``, or VGG16 for
    ``fcnfast train --init`` when ``model`` is None). ``size`` in bytes, ``md5`` / ``sha1`` hex, as
    published (None: not published); ``source`` says where."""

    name: str
    kind: str
    url: str
    filename: str
    model: Optional[str]
    source: str
    md5: Optional[str] = None
    sha1: Optional[str] = None
    size: Optional[int] = None


def _caffemodel(network: str, filename: str, **checks) -> KnownWeights:
    source = f"shelhamer/fcn.berkeleyvision.org {network}/caffemodel-url"
    if checks.get("md5"):
        source += "; md5: wkentaro/fcn fcn/data.py"
    if checks.get("sha1"):
        source += "; sha1: opencv/opencv_extra testdata/dnn/download_models.py"
    return KnownWeights(network, "caffemodel", _RELEASE + filename, filename, network, source, **checks)


def _pytorch_fcn(name: str, file_id: str, filename: str, model: Optional[str], module: str, md5: str) -> KnownWeights:
    return KnownWeights(name, "pth", _DRIVE + file_id, filename, model, _PYTORCH_FCN + module, md5=md5)


#: Every known weights file by name, in the order ``fcnfast weights`` lists them.
KNOWN_WEIGHTS: Dict[str, KnownWeights] = {
    entry.name: entry
    for entry in (
        _caffemodel("voc-fcn32s", "fcn32s-heavy-pascal.caffemodel", sha1="05eb922d7829c39448f57e5ab9d8cd75d6c0be6d"),
        _caffemodel("voc-fcn16s", "fcn16s-heavy-pascal.caffemodel"),
        _caffemodel("voc-fcn8s", "fcn8s-heavy-pascal.caffemodel", md5="c03b2953ebd846c270da1a8e8f200c09",
                    sha1="c449ea74dd7d83751d1357d6a8c323fcf4038962"),
        _caffemodel("voc-fcn8s-atonce", "fcn8s-atonce-pascal.caffemodel"),
        _caffemodel("pascalcontext-fcn32s", "pascalcontext-fcn32s-heavy.caffemodel"),
        _caffemodel("pascalcontext-fcn16s", "pascalcontext-fcn16s-heavy.caffemodel"),
        _caffemodel("pascalcontext-fcn8s", "pascalcontext-fcn8s-heavy.caffemodel"),
        _caffemodel("nyud-fcn32s-color", "nyud-fcn32s-color-heavy.caffemodel"),
        _caffemodel("nyud-fcn32s-hha", "nyud-fcn32s-hha-heavy.caffemodel"),
        _caffemodel("nyud-fcn32s-color-hha", "nyud-fcn32s-color-hha-heavy.caffemodel"),
        _caffemodel("siftflow-fcn32s", "siftflow-fcn32s-heavy.caffemodel"),
        _caffemodel("siftflow-fcn16s", "siftflow-fcn16s-heavy.caffemodel"),
        _caffemodel("siftflow-fcn8s", "siftflow-fcn8s-heavy.caffemodel"),
        _pytorch_fcn("pytorch-fcn-fcn32s", "11k2Q0bvRQgQbT6-jYWeh6nmAsWlSCY3f", "fcn32s_from_caffe.pth", "voc-fcn32s",
                     "fcn32s.py", "d3eb467a80e7da0468a20dfcbc13e6c8"),
        _pytorch_fcn("pytorch-fcn-fcn16s", "1bctu58B6YH9bu6lBBSBB2rUeGlGhYLoP", "fcn16s_from_caffe.pth", "voc-fcn16s",
                     "fcn16s.py", "a2d4035f669f09483b39c9a14a0d6670"),
        _pytorch_fcn("pytorch-fcn-fcn8s", "1ieXWyoG68xqoHJPWdyrDyaIaaWlfmUxI", "fcn8s_from_caffe.pth", "voc-fcn8s",
                     "fcn8s.py", "de93e540ec79512f8770033849c8ae89"),
        _pytorch_fcn("pytorch-fcn-fcn8s-atonce", "0B9P1L--7Wd2vblE1VUIxV1o2d2M", "fcn8s-atonce_from_caffe.pth",
                     "voc-fcn8s-atonce", "fcn8s.py", "bfed4437e941fef58932891217fe6464"),
        _pytorch_fcn("pytorch-fcn-vgg16", "1adDBTGY3GcEB_47dvcibajyzi872RAs3", "vgg16_from_caffe.pth", None, "vgg.py",
                     "aa75b158f4181e7f6230029eb96c1b13"),
    )
}


def known_weights(name: str) -> KnownWeights:
    """The entry ``name`` (a model name names its caffemodel); ValueError listing the names."""
    if name not in KNOWN_WEIGHTS:
        raise ValueError(f"unknown weights {name!r}; choose from {', '.join(KNOWN_WEIGHTS)}")
    return KNOWN_WEIGHTS[name]
