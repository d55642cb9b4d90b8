"""Derive tests/release/layers.json from a clone of the FCN reference release (run by hand).

    python tests/release/extract_layers.py PATH/TO/fcn.berkeleyvision.org > tests/release/layers.json

For each network folder it reads the prototxt fcnfast's layout names (``ModelLayout.prototxt``)
and records what the tests compare the models with: the blob shapes of every learnable layer
(Convolution: out x in x k x k and out; Deconvolution: in x out x k x k; Scale: one value per input
channel, with its constant filler value), the pad and stride of every (de)convolution, the offset
of every Crop and the coeff of every Eltwise.
Input channels are traced through the graph from the data layer's tops.
"""

import json
import re
import sys
from pathlib import Path

# Channels of the data layers' tops (the release's Python data layers load these).
TOP_CHANNELS = {"data": 3, "color": 3, "hha": 3, "depth": 1}


def layers(text):
    for block in re.findall(r"^layer \{\n(.*?)^\}", text, re.S | re.M):
        get = lambda key: re.findall(rf"^\s*{key}: \"?([^\"\n]+)\"?", block, re.M)  # noqa: E731
        yield block, get("name")[0], get("type")[0], get("bottom"), get("top")


def extract(text, data_channels):
    channels, blobs, crops, coeffs, scales, geometry = {}, {}, {}, {}, {}, {}
    for block, name, kind, bottoms, tops in layers(text):

        def num(key, default=None):
            found = re.findall(rf"{key}: (\d+)", block)
            return int(found[0]) if found else default

        cin = [channels.get(b) for b in bottoms]
        if kind == "Python":
            out = [data_channels.get(t) for t in tops]
        elif kind == "Concat":
            out = [sum(cin)]
        elif kind in ("Convolution", "Deconvolution"):
            k, n = num("kernel_size"), num("num_output")
            bias = "bias_term: false" not in block
            shape = [n, cin[0], k, k] if kind == "Convolution" else [cin[0], n, k, k]
            blobs[name] = [shape] + ([[n]] if bias else [])
            geometry[name] = {"pad": num("pad", 0), "stride": num("stride", 1)}
            out = [n]
        elif kind == "Scale":
            blobs[name] = [[cin[0]]]
            scales[name] = float(re.findall(r"value: ([\d.e-]+)", block)[0])
            out = cin[:1]
        elif kind == "Crop":
            crops[name] = num("offset")
            out = cin[:1]
        elif kind == "Eltwise":
            coeffs[name] = [float(c) for c in re.findall(r"coeff: ([\d.]+)", block)] or [1.0] * len(bottoms)
            out = cin[:1]
        else:
            out = cin[:1] * len(tops)
        channels.update(zip(tops, out))
    return {"blobs": blobs, "geometry": geometry, "crops": crops, "eltwise_coeffs": coeffs, "scales": scales}


def main(root):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from fcnfast.models.layout import LAYOUTS

    out = {name: {"prototxt": lay.prototxt, **extract((Path(root) / lay.prototxt).read_text(), TOP_CHANNELS)}
           for name, lay in LAYOUTS.items()}
    # One line per network and section: diffs stay readable, the file small.
    lines = [
        f" {json.dumps(name)}: {{\n" + ",\n".join(f"  {json.dumps(key)}: {json.dumps(value, sort_keys=True)}"
                                             for key, value in sorted(sections.items())) + "\n }"
        for name, sections in sorted(out.items())
    ]
    print("{\n" + ",\n".join(lines) + "\n}")


if __name__ == "__main__":
    main(sys.argv[1])
