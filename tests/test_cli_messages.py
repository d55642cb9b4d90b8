"""What the README and the commands tell a new user (issue 11 #14, #15, #16)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from fcnfast import training as T
from fcnfast.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


# ---- #14: the README's "Use it" runs as written --------------------------------------------------


def _readme_block(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_use_it_snippet_runs_as_written(tmp_path, monkeypatch):
    code = _readme_block("Use it")
    assert "load_weights" in code  # the snippet still shows loading weights, from a file it writes
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md: Use it", "exec"), namespace)
    assert tuple(namespace["scores"].shape) == (1, 21, 333, 500)
    assert (tmp_path / "fcn8s.pth").is_file()


# ---- #15: one size convention, help texts, the plot ---------------------------------------------


def test_every_command_has_a_description(capsys):
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(commands) >= {"info", "bench", "segment", "train", "evaluate", "make-toy-dataset"}
    for name, sub in commands.items():
        assert sub.description, f"fcnfast {name} --help has no description"
    with pytest.raises(SystemExit):
        main(["info", "--help"])
    assert "every backend" in capsys.readouterr().out


def test_bench_png_speedup_labels_sit_above_the_error_bars(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import matplotlib.axes

    from fcnfast.benchmark.plot import plot

    rows = []
    for kind in ("head", "end_to_end"):
        for provider, median, p90, speedup in (("reference", 10.0, 30.0, 1.0), ("fcnfast-cpp", 2.0, 9.0, 5.0)):
            rows.append(dict(status="ok", kind=kind, provider=provider, size=[500, 500], batch=1, dtype="float32",
                             median_ms_per_image=median, p10_ms_per_image=median / 2, p90_ms_per_image=p90,
                             speedup=speedup))
    report = {"results": rows, "config": {"model_class": "FCN8s"}, "environment": {"device_name": "test CPU"}}
    placed = []
    real = matplotlib.axes.Axes.annotate
    monkeypatch.setattr(matplotlib.axes.Axes, "annotate",
                        lambda self, text, xy, *a, **k: placed.append((text, xy[1])) or real(self, text, xy, *a, **k))
    assert plot(report, str(tmp_path / "bench.png")) is None
    tops = {f"{r['speedup']:.2f}x": r["p90_ms_per_image"] for r in rows}
    assert len(placed) == len(rows)
    for text, y in placed:
        assert y >= tops[text], (text, y)  # above the whisker's top, not inside it


# ---- #16: make-toy-dataset's next step learns ---------------------------------------------------


def test_make_toy_dataset_prints_a_next_step_that_learns(tmp_path, capsys, monkeypatch):
    from fcnfast.commands.make_toy_dataset import next_step

    monkeypatch.setenv("FCNFAST_CHECKPOINT_FSYNC", "0")
    data = tmp_path / "toy"
    assert main(["make-toy-dataset", str(data), "--train", "2", "--val", "1", "--size", "20", "28",
                 "--num-classes", "3"]) == 0
    out = capsys.readouterr().out
    step = next_step(data, 3)
    assert " ".join(step) in out and "--preset modern" in out
    assert "--preset modern" in " ".join(step) and "paper" in out  # and it says why not the paper preset

    def losses(preset, out_dir):
        # The printed command, cut to a few small steps (the model, preset and lr are the printed ones).
        argv = step[1:] + ["--out", str(out_dir), "--preset", preset, "--iterations", "3", "--batch-size", "2",
                           "--val-every", "0", "--log-every", "1", "--num-workers", "0", "--quiet", "--device", "cpu"]
        assert main(argv) == 0
        return [row["loss"] for row in T.read_log(out_dir)]

    modern = losses("modern", tmp_path / "modern")
    paper = losses("paper", tmp_path / "paper")
    assert modern[0] == pytest.approx(math.log(3), rel=1e-5)  # score layers start at zero
    # Falling from the first step on (deterministic on the CPU): on the default toy set the
    # printed run takes the loss from 3.04 (ln 21) to about 1.7 in 50 steps.
    assert modern[0] > modern[1] > modern[2] and modern[0] - modern[2] > 5e-4, modern
    assert paper == pytest.approx([paper[0]] * 3, rel=1e-7), paper  # lr 1e-14 changes nothing (a summed loss)
