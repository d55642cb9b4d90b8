"""ONNX export (fcnfast.export_onnx, `fcnfast export`): every registered model, run by ONNX Runtime
on random odd sizes, gives PyTorch's outputs; the fused heads become ConvTranspose + Slice + Add.

Each export writes the whole VGG16 (~540 MB) and takes ~10-15 s here, so each model is exported once.
"""

import pytest
import torch

import fcnfast
from fcnfast.cli import main
from fcnfast.export import INPUT_NAME, export_onnx, plain_heads
from fcnfast.models import MODEL_NAMES, build_model
from fcnfast.models.init import random_init_
from fcnfast.nn import UpsampleCropAdd

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# (batch, height, width): odd sizes, a batch of two, and the smallest image.
SHAPES = [(1, 29, 43), (2, 17, 11), (1, 1, 1)]
HEAD_OPS = {"ConvTranspose", "Slice", "Add"}


def _run_onnx(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {INPUT_NAME: x.numpy()})[0])


def _check_graph(path):
    graph = onnx.load(str(path), load_external_data=False).graph
    ops = {node.op_type for node in graph.node}
    assert HEAD_OPS <= ops, ops
    assert all(node.domain in ("", "ai.onnx") for node in graph.node), {n.domain for n in graph.node}
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3])), dims


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_export_matches_pytorch(name, tmp_path, capsys):
    """The first model goes through the CLI (a checkpoint with its arch), the at-once one through
    optimize() (folded scales), the others straight through export_onnx."""
    model = random_init_(build_model(name, num_classes=5), seed=11).eval()
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
    _check_graph(path)
    gen = torch.Generator().manual_seed(5)
    for batch, height, width in SHAPES:
        x = torch.randn(batch, 3, height, width, generator=gen) * 60
        with torch.inference_mode():
            ref = model(x)
        out = _run_onnx(path, x)
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
    assert "trained as fcn32s" in capsys.readouterr().err


def test_export_rejects_a_non_module(tmp_path):
    with pytest.raises(TypeError, match="nn.Module"):
        export_onnx("fcn8s", tmp_path / "m.onnx")
