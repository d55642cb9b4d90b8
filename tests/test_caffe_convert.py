"""Caffemodels without Caffe: the reader (fcnfast.caffemodel) and the mapping to every network.

The tests write their caffemodels with tests/caffe_writer.py. A real network's caffemodel is
over 500 MB (fc6 alone is 4096x512x7x7), so the per-network tests shrink every learnable layer of
the network to a few channels, keeping its Caffe name, kind and blob count: they check that every
layer of every network maps by name and converts back exactly. That the full-size shapes are the
release's is test_release_networks.py's job (the same caffe_layer_shapes, on the meta device).
"""

import re

import numpy as np
import pytest
import torch
from torch import nn

from caffe_writer import length_delimited, net, string
from fcnfast.caffemodel import CaffeModelError, read_caffemodel
from fcnfast.cli import main
from fcnfast.models import MODEL_NAMES, build_model, load_weights
from fcnfast.models import caffe_convert
from fcnfast.models.caffe_convert import (
    CaffeConversionError, caffe_layer_shapes, caffemodel_state_dict, convert_caffemodel,
)
from fcnfast.nn import UpsampleCropAdd


def _arrays(rng, shapes):
    return [rng.standard_normal(s).astype(np.float32) for s in shapes]


@pytest.mark.parametrize("form", ["layer", "v1", "v0"])
@pytest.mark.parametrize("options", [{}, {"legacy": True}, {"double": True}, {"unpacked": True}],
                         ids=["shape", "legacy-4d", "double", "unpacked"])
def test_reader_takes_every_form(tmp_path, form, options):
    rng = np.random.default_rng(0)
    layers = [("conv1", "Convolution", _arrays(rng, [(4, 3, 3, 3), (4,)])),
              ("up", "Deconvolution", _arrays(rng, [(2, 2, 4, 4)]))]
    path = tmp_path / "m.caffemodel"
    path.write_bytes(net(layers, form=form, **options))
    model = read_caffemodel(path)
    assert model.field == ("layer" if form == "layer" else "layers") and model.name == "net"
    assert [layer.name for layer in model.layers] == ["data", "conv1", "up"]
    for (_, _, arrays), layer in zip(layers, model.layers[1:]):
        assert len(layer.blobs) == len(arrays)
        for array, blob in zip(arrays, layer.blobs):
            assert blob.legacy == bool(options.get("legacy"))
            assert np.array_equal(blob.data.reshape(-1).astype(np.float32), array.reshape(-1))
            assert blob.shape == ((1,) * (4 - array.ndim) + array.shape if blob.legacy else array.shape)


@pytest.mark.parametrize("content, problem", [
    (b"", "is empty"),
    (b'name: "FCN"\nlayer {\n  name: "data"\n  type: "Input"\n}\n', "text file"),
    (b"PK\x03\x04" + b"\0" * 40, "zip archive"),
    (b"\x89HDF\r\n\x1a\n" + b"\0" * 40, "HDF5"),
    (bytes(range(256)) * 4, "not a readable Caffe"),
    (string(1, "only a name"), "holds no Caffe layers"),
    (net([("conv", "Convolution", [np.ones((2, 2), np.float32)])])[:-5], "truncated"),
], ids=["empty", "prototxt", "pth", "hdf5", "garbage", "no-layers", "truncated"])
def test_reader_refuses_what_is_not_a_caffemodel(tmp_path, content, problem):
    path = tmp_path / "weights.caffemodel"
    path.write_bytes(content)
    with pytest.raises(CaffeModelError, match=re.escape(str(path)) + ".*" + problem):
        read_caffemodel(path)
    with pytest.raises(FileNotFoundError, match="caffemodel not found"):
        read_caffemodel(tmp_path / "absent.caffemodel")


def test_blob_whose_data_does_not_fill_its_shape(tmp_path):
    blob = length_delimited(7, length_delimited(1, b"\x02\x03")) + length_delimited(5, np.ones(5, "<f4").tobytes())
    layer = string(1, "conv") + string(2, "Convolution") + length_delimited(7, blob)
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(length_delimited(100, layer))
    with pytest.raises(CaffeModelError, match=r"blob 0 has shape \(2, 3\) \(6 values\) but holds 5 values"):
        read_caffemodel(path)


def _shrunk(name):
    """Network ``name`` on the meta device with every learnable layer a few channels wide (same
    names, kinds and blob counts), so its caffemodel is a few kB."""
    with torch.device("meta"):
        model = build_model(name)
        for layer in caffe_convert._parameter_layers(model):
            module = getattr(model, layer)
            if isinstance(module, UpsampleCropAdd):
                setattr(model, layer, UpsampleCropAdd(2, 2, 4, 2))
            else:
                setattr(model, layer, nn.Conv2d(3, 2, module.kernel_size))
    return model


def _caffemodel_of(model, rng, *, scale=None, **options):
    shapes = caffe_layer_shapes(model)
    layers = []
    for layer, blob_shapes in shapes.items():
        if layer.startswith("scale_"):
            value = scale if scale is not None else float(getattr(model, layer.replace("scale_", "") + "_scale"))
            layers.append((layer, "Scale", [np.full(blob_shapes[0], value, np.float32)]))
        else:
            kind = "Deconvolution" if isinstance(getattr(model, layer), UpsampleCropAdd) else "Convolution"
            layers.append((layer, kind, _arrays(rng, blob_shapes)))
    return layers, net(layers, **options)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_network_converts_back_exactly(tmp_path, name):
    model = _shrunk(name)
    layers, data = _caffemodel_of(model, np.random.default_rng(len(name)))
    path = tmp_path / f"{name}.caffemodel"
    path.write_bytes(data)
    state = caffemodel_state_dict(path, model)
    assert set(state) == set(model.state_dict())
    for layer, _, arrays in layers:
        if layer.startswith("scale_"):
            continue
        keys = [f"{layer}.weight", f"{layer}.bias"][: len(arrays)]
        for key, array in zip(keys, arrays):
            assert state[key].dtype == torch.float32 and np.array_equal(state[key].numpy(), array), key
    real = model.to_empty(device="cpu")
    nn.Module.load_state_dict(real, state, strict=True)


def test_old_layers_field_and_legacy_shapes_convert_too(tmp_path):
    model = _shrunk("siftflow-fcn16s")
    layers, data = _caffemodel_of(model, np.random.default_rng(7), form="v1", legacy=True)
    path = tmp_path / "old.caffemodel"
    path.write_bytes(data)
    state = caffemodel_state_dict(path, model)
    bias = next(arrays[1] for layer, _, arrays in layers if layer == "score_fr_geo")
    assert torch.equal(state["score_fr_geo.bias"], torch.from_numpy(bias))


def test_at_once_scale_layers_are_checked_not_loaded(tmp_path):
    model = _shrunk("voc-fcn8s-atonce")
    assert caffe_layer_shapes(model)["scale_pool4"] == [(512,)] and caffe_layer_shapes(model)["scale_pool3"] == [(256,)]
    path = tmp_path / "atonce.caffemodel"
    path.write_bytes(_caffemodel_of(model, np.random.default_rng(1))[1])
    assert "scale_pool4.weight" not in caffemodel_state_dict(path, model)
    path.write_bytes(_caffemodel_of(model, np.random.default_rng(1), scale=0.02)[1])
    with pytest.raises(CaffeConversionError, match=r"scale_pool4 scales by 0\.02, but voc-fcn8s-atonce scales by 0\.01"):
        caffemodel_state_dict(path, model)
    assert "scale_pool4" not in caffe_layer_shapes(_shrunk("voc-fcn8s"))


def test_misfits_are_all_named(tmp_path):
    model = _shrunk("voc-fcn16s")
    layers, _ = _caffemodel_of(model, np.random.default_rng(2))
    layers = [entry for entry in layers if entry[0] != "score_pool4"]  # missing
    layers.append(("extra_conv", "Convolution", [np.zeros((1, 1, 1, 1), np.float32)]))  # unexpected
    layers = [(n, k, b[:1]) if n == "fc7" else (n, k, b) for n, k, b in layers]  # a blob short
    layers = [(n, k, [np.zeros((5, 3, 3, 3), np.float32), b[1]]) if n == "conv1_1" else (n, k, b) for n, k, b in layers]
    path = tmp_path / "wrong.caffemodel"
    path.write_bytes(net(layers))
    with pytest.raises(CaffeConversionError) as info:
        caffemodel_state_dict(path, model)
    text = str(info.value)
    assert str(path) in text and "does not fit voc-fcn16s" in text
    assert "missing layers: score_pool4" in text and "unexpected layers: extra_conv" in text
    assert "fc7 has 1 blob(s), voc-fcn16s's fc7 takes 2" in text and "conv1_1 blob 0 5x3x3x3 != 2x3x3x3" in text


def test_another_class_count_gets_a_hint(tmp_path):
    model = _shrunk("voc-fcn32s")
    layers, _ = _caffemodel_of(model, np.random.default_rng(3))
    layers = [(n, k, [np.zeros((60, 3, 1, 1), np.float32), np.zeros(60, np.float32)]) if n == "score_fr" else (n, k, b)
              for n, k, b in layers]
    path = tmp_path / "context.caffemodel"
    path.write_bytes(net(layers))
    model.task_classes = (2,)
    with pytest.raises(CaffeConversionError, match="its score_fr scores 60 classes, voc-fcn32s 2: pass the network"):
        caffemodel_state_dict(path, model)


def test_convert_caffe_command(tmp_path, capsys, monkeypatch):
    """The command end to end on a shrunk siftflow-fcn8s (conversion builds the network through
    caffe_convert.build_model, which the test swaps for the shrunk one)."""
    model = _shrunk("siftflow-fcn8s")
    layers, data = _caffemodel_of(model, np.random.default_rng(4))
    src, out = tmp_path / "siftflow-fcn8s-heavy.caffemodel", tmp_path / "out" / "sf.pth"
    src.write_bytes(data)
    out.parent.mkdir()
    monkeypatch.setattr(caffe_convert, "build_model", lambda name, num_classes=None, backend=None: _shrunk(name))
    assert main(["convert-caffe", str(src), "--model", "SiftFlow_FCN8s", "-o", str(out)]) == 0
    assert f"-> {out} (siftflow-fcn8s)" in capsys.readouterr().out
    ckpt = torch.load(out, weights_only=True)
    assert (ckpt["arch"], ckpt["num_classes"], ckpt["converted_from"]) == ("siftflow-fcn8s", [33, 3], src.name)
    target = _shrunk("siftflow-fcn8s").to_empty(device="cpu")
    load_weights(target, out)
    upscore = next(arrays[0] for layer, _, arrays in layers if layer == "upscore8_geo")
    assert np.array_equal(target.upscore8_geo.weight.detach().numpy(), upscore)


@pytest.mark.parametrize("argv, message", [
    (["{tmp}/nope.caffemodel", "--model", "voc-fcn8s"], "caffemodel not found"),
    (["{tmp}/text.prototxt", "--model", "voc-fcn8s"], "is a text file"),
    (["{tmp}/tiny.caffemodel", "--model", "voc-fcn8s"], "does not fit voc-fcn8s: missing layers: conv1_1"),
], ids=["missing", "prototxt", "wrong-network"])
def test_convert_caffe_command_errors_are_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "text.prototxt").write_text('name: "FCN8s"\nlayer { name: "data" }\n')
    (tmp_path / "tiny.caffemodel").write_bytes(net([("conv", "Convolution", [np.ones((1, 1, 1, 1), np.float32)])]))
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main(["convert-caffe", *argv, "-o", str(tmp_path / "o.pth")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fcnfast convert-caffe: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o.pth").exists()
    with pytest.raises(SystemExit) as exc:
        main(["convert-caffe", argv[0], "--model", "fcn4s", "-o", "x.pth"])
    assert exc.value.code == 2 and "unknown model 'fcn4s'" in capsys.readouterr().err
