"""fcnfast.benchmark's pieces on their own (no FCN forward): config, providers, report, the
compile worker's entry point, the environment probe, and make_table on the committed results."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fcnfast import backends
from fcnfast.benchmark import (DTYPES, BenchConfig, dtype_skip_reason, format_ms, format_table, parse_size,
                               providers_for, size_label)
from fcnfast.benchmark.costs import model_flops, peak_tensor_bytes
from fcnfast.benchmark.providers import INTERPRETER_SKIP, onnxruntime_skip_reason
from fcnfast.cli import main
from fcnfast.environment import probe

ROOT = Path(__file__).resolve().parents[1]


def test_sizes_are_height_by_width():
    assert parse_size("375x500") == (375, 500) and parse_size("500") == (500, 500)
    assert size_label((375, 500)) == "375x500"
    with pytest.raises(ValueError, match="height x width"):
        parse_size("12x")


@pytest.mark.parametrize("ms, text", [(3730.0, "3.73 s"), (66.8, "66.8 ms"), (0.387, "0.387 ms"), (0.0042, "4.2 µs")])
def test_format_ms(ms, text):
    assert format_ms(ms) == text


def test_bench_help_and_error_list_the_same_dtypes(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    dtype_help = capsys.readouterr().out.split("\n  --dtype", 1)[1].split("\n  --runs", 1)[0]
    with pytest.raises(ValueError) as err:
        BenchConfig(dtypes=["int8"], device="cpu").resolved()
    for name in DTYPES:
        assert name in dtype_help and name in str(err.value)


def test_providers_on_cpu_say_why_one_is_left_out():
    runs_here = [p for p, _ in providers_for("cpu")]
    assert runs_here[:5] == ["reference", "fcnfast-cpp", "fcnfast-optimize", "compile", "compile-freezing"]
    assert runs_here[5:] == ([] if onnxruntime_skip_reason("cpu") else ["onnxruntime"])
    assert "CPU" in onnxruntime_skip_reason("cuda")
    listed = dict(providers_for("cpu", ["fcnfast-cuda", "fcnfast-triton"]))
    assert set(listed) == {"reference", "fcnfast-cuda", "fcnfast-triton"}  # the baseline always runs
    assert listed["reference"] is None and "cuda" in listed["fcnfast-cuda"]
    if backends.triton_interpreted():  # tests run Triton interpreted on a machine without a GPU
        assert listed["fcnfast-triton"] == INTERPRETER_SKIP


def test_dtype_limits_come_from_the_backend():
    assert dtype_skip_reason("fcnfast-cpp", torch.float16, "cpu") == backends.supports("cpp", "cpu", torch.float16)[1]
    assert dtype_skip_reason("fcnfast-cpp", torch.float32, "cpu") is None
    for provider in ("reference", "fcnfast-optimize", "compile", "compile-freezing"):
        assert dtype_skip_reason(provider, torch.bfloat16, "cpu") is None
    assert "float32" in dtype_skip_reason("onnxruntime", torch.float16, "cpu")


def test_model_flops_counts_every_conv_and_head_window():
    flops = model_flops("fcn8s", (500, 500))
    assert round(flops["end_to_end"] / 1e9, 1) == 362.8  # FCN-8s at 500x500, the floor
    # upscore8 alone: 21 x 21 channels x 2x2 taps over the 500x500 window, twice per multiply-add
    assert flops["head"] > 2 * 21 * 21 * 4 * 500 * 500
    assert flops["head"] < flops["end_to_end"] / 100


def test_peak_tensor_bytes_sees_what_a_call_holds_at_once():
    def call():
        a = torch.empty(1000, 1000)  # 4 MB
        b = torch.empty(2000, 1000)  # 8 MB, while a lives
        del a, b
        return torch.empty(500, 1000)  # 2 MB, after both are freed

    assert peak_tensor_bytes(call, "cpu") == 12_000_000


def test_compile_worker_entry_point_rejects_other_arguments():
    done = subprocess.run([sys.executable, "-m", "fcnfast.benchmark"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--compile-worker" in done.stderr


def test_probe_serves_info_and_bench():
    env = probe("cpu")
    for key in ("device", "device_name", "python", "torch", "triton", "fcnfast", "git_commit", "cpu_count",
                "extensions", "backends", "auto_backend_float32"):
        assert key in env, key
    assert set(env["backends"]) == set(backends.BACKENDS)
    report = {"environment": env, "config": {"model_class": "FCN8s", "num_classes": 21, "weights": "random",
                                             "runs": 1, "warmup": 0, "head_runs": 1, "head_warmup": 0},
              "results": [dict(size=[375, 500], batch=1, dtype="float32", kind="head", provider="reference",
                               status="ok", median_ms_per_image=2.0, p10_ms_per_image=1.0, p90_ms_per_image=3.0,
                               speedup=1.0, max_abs_diff=0.0)], "wall_s": 1.0}
    table = format_table(report)
    assert "== 375x500, batch 1, float32 ==" in table and "2.0 ms" in table


def test_make_table_reproduces_the_readme_results(tmp_path):
    """The README's results block is make_table's output for the command the README names."""
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"\npython (benchmarks/make_table.py .*?) --readme README.md\n", readme).group(1)
    out = tmp_path / "table.md"
    # bash: the command's {a,b} and * expand as they do for a reader who pastes it
    done = subprocess.run(["bash", "-c", f'"$PYTHON" {command} -o "$OUT"'], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable, "OUT": str(out)})
    assert done.returncode == 0, done.stderr
    begin, end = "<!-- results:begin -->\n", "<!-- results:end -->"
    assert out.read_text() == readme.split(begin, 1)[1].split(end, 1)[0]


def test_config_takes_the_models_class_count_and_refuses_what_bench_cannot_feed():
    """The workload is one 3-channel batch in and one score map out: the class count defaults to the
    model's, and two-input, 4-channel or two-headed networks are refused by name before any work."""
    assert BenchConfig(model="pascalcontext-fcn8s", device="cpu").resolved().num_classes == 60
    assert BenchConfig(device="cpu").resolved().num_classes == 21
    for name, what in [("siftflow-fcn8s", "gives 2 output"), ("nyud-fcn32s-color-hha", "3-channel and 3-channel"),
                       ("nyud-fcn32s-color-d", "4-channel input")]:
        with pytest.raises(ValueError, match=f"{name} takes .*{what}"):
            BenchConfig(model=name, device="cpu").resolved()


def test_bench_cli_refuses_a_two_headed_network_on_one_line(tmp_path, capsys):
    assert main(["bench", "--model", "siftflow-fcn32s", "--device", "cpu", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "one 3-channel input and one output" in err and "Traceback" not in err
