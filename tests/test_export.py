"""ONNX export (fcnfast.export_onnx, `fcnfast export`): every graph the registry builds, run by ONNX
Runtime on random odd sizes, gives PyTorch's outputs; the fused heads become ConvTranspose + Slice + Add.

Each export writes the whole VGG16 (~540 MB) and takes ~10-15 s here, so each distinct graph is
exported once: networks that differ only in their class counts or in what their one trunk reads
(pascalcontext-fcn8s and voc-fcn8s, nyud-fcn32s-hha and voc-fcn32s) trace to the same graph.
"""

import pytest
import torch

import fcnfast
from fcnfast.cli import main
from fcnfast.export import export_onnx, io_names, plain_heads
from fcnfast.models import MODEL_NAMES, build_model, model_layout
from fcnfast.models.init import random_init_
from fcnfast.nn import UpsampleCropAdd

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# (batch, height, width): odd sizes, a batch of two, and the smallest image.
SHAPES = [(1, 29, 43), (2, 17, 11), (1, 1, 1)]
HEAD_OPS = {"ConvTranspose", "Slice", "Add"}


def _graph_key(name):
    layout = model_layout(name)
    return layout.heads, layout.pool_scales, layout.input_channels, len(layout.tasks)


# The first registry name of each distinct graph.
EXPORTED = [name for i, name in enumerate(MODEL_NAMES)
            if _graph_key(name) not in {_graph_key(other) for other in MODEL_NAMES[:i]}]


def test_every_kind_of_network_is_exported():
    assert {"voc-fcn32s", "voc-fcn8s-atonce", "nyud-fcn32s-color-d", "nyud-fcn32s-color-hha",
            "siftflow-fcn8s"} <= set(EXPORTED)


def _run_onnx(path, inputs):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {arg.name: x.numpy() for arg, x in zip(session.get_inputs(), inputs)}
    return [torch.from_numpy(out) for out in session.run(None, feed)]


def _check_graph(path, model):
    graph = onnx.load(str(path), load_external_data=False).graph
    ops = {node.op_type for node in graph.node}
    assert HEAD_OPS <= ops, ops
    assert all(node.domain in ("", "ai.onnx") for node in graph.node), {n.domain for n in graph.node}
    inputs, outputs = io_names(model)
    assert [i.name for i in graph.input] == [name for name, _ in inputs]
    assert [o.name for o in graph.output] == list(outputs)
    for arg, (_, channels) in zip(graph.input, inputs):
        dims = [d.dim_param or d.dim_value for d in arg.type.tensor_type.shape.dim]
        assert dims[1] == channels and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3])), dims


@pytest.mark.parametrize("name", EXPORTED)
def test_export_matches_pytorch(name, tmp_path, capsys):
    """The first model goes through the CLI (a checkpoint with its arch), the at-once one through
    optimize() (folded scales), the others straight through export_onnx."""
    classes = (5,) * len(model_layout(name).tasks)
    model = random_init_(build_model(name, num_classes=classes), seed=11).eval()
    path = tmp_path / f"{name}.onnx"
    if name == MODEL_NAMES[0]:
        checkpoint = tmp_path / "ckpt.pth"
        torch.save({"arch": name, "model_state_dict": model.state_dict()}, checkpoint)
        assert main(["export", str(checkpoint), "-o", str(path)]) == 0
        assert f"wrote {path}" in capsys.readouterr().out
    elif model.layout.at_once:
        export_onnx(fcnfast.optimize(model), path)
    else:
        export_onnx(model, path)
    _check_graph(path, model)
    gen = torch.Generator().manual_seed(5)
    for batch, height, width in SHAPES:
        inputs = [torch.randn(batch, c, height, width, generator=gen) * 60 for c in model.layout.input_channels]
        with torch.inference_mode():
            refs = model(*inputs)
        refs = refs if isinstance(refs, tuple) else (refs,)
        outs = _run_onnx(path, inputs)
        assert len(outs) == len(refs)
        for out, ref in zip(outs, refs):
            assert out.shape == ref.shape
            scale = ref.abs().max().item()
            assert (out - ref).abs().max().item() <= 1e-4 * scale + 1e-5, (name, batch, height, width)
    path.unlink()


def test_plain_heads_restores_the_fused_forward():
    with torch.device("meta"):
        model = build_model("fcn8s")
    heads = [m for m in model.modules() if isinstance(m, UpsampleCropAdd)]
    with plain_heads(model):
        assert all(h.forward == h.forward_plain for h in heads)
    assert all("forward" not in vars(h) for h in heads)


def test_forward_plain_equals_the_op():
    """forward_plain (what export traces) is the op, with and without a skip and a size."""
    head = UpsampleCropAdd(4, 4, 4, 2, offset=1, skip_offset=3)
    gen = torch.Generator().manual_seed(0)
    x, skip = torch.randn(2, 4, 5, 7, generator=gen), torch.randn(2, 4, 17, 19, generator=gen)
    for kwargs in ({}, {"skip": skip, "size": (9, 11)}):
        torch.testing.assert_close(head.forward_plain(x, **kwargs), head(x, **kwargs))


def test_export_cli_errors(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.pth"), "-o", str(tmp_path / "m.onnx")]) == 2
    assert "missing.pth" in capsys.readouterr().err
    checkpoint = tmp_path / "ckpt.pth"
    torch.save({"arch": "fcn32s", "model_state_dict": {}}, checkpoint)
    assert main(["export", str(checkpoint), "--model", "fcn8s", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "holds a voc-fcn32s model, not voc-fcn8s" in capsys.readouterr().err


def test_export_rejects_a_non_module(tmp_path):
    with pytest.raises(TypeError, match="nn.Module"):
        export_onnx("fcn8s", tmp_path / "m.onnx")
