"""Training and evaluating the release's two-headed and two-input networks on toy datasets.

One SIFT Flow run (train one step, validate, evaluate the checkpoint) shows the two heads trained
on the sum of their losses and scored separately; the two-stream NYUDv2 network is evaluated in
memory (its checkpoint would be 1 GB). Tiny images keep the VGG trunks to a few seconds.
"""

import json
import math
import os

import pytest
import torch

from fcnfast import training as T
from fcnfast.cli import main
from fcnfast.datasets import make_toy_nyud, make_toy_siftflow, open_dataset
from fcnfast.evaluation import eval_loader, evaluate, run_model
from fcnfast.models import build_model


@pytest.fixture(autouse=True)
def _no_checkpoint_fsync(monkeypatch):
    monkeypatch.setenv("FCNFAST_CHECKPOINT_FSYNC", "0")


@pytest.fixture(scope="module")
def siftflow_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sf")
    data = make_toy_siftflow(root / "data", num_train=1, num_val=1, size=(20, 20), seed=3)["root"]
    out = root / "run"
    argv = ["train", "--data", str(data), "--out", str(out), "--model", "siftflow-fcn32s", "--preset", "modern",
            "--iterations", "1", "--batch-size", "1", "--val-every", "1", "--log-every", "1", "--num-workers", "0",
            "--dropout", "0", "--quiet"]

    os.environ.setdefault("FCNFAST_CHECKPOINT_FSYNC", "0")
    assert main(argv) == 0
    return data, out


def test_two_heads_train_on_the_sum_of_their_losses(siftflow_run):
    data, out = siftflow_run
    first = T.read_log(out)[0]
    # The score layers start at zero: each head's pixel-averaged loss is log(its classes).
    assert first["loss"] == pytest.approx(math.log(33) + math.log(3), rel=1e-5)
    record = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert set(record["tasks"]) == {"semantic", "geometric"} and len(record["tasks"]["geometric"]["iu"]) == 3
    ckpt = T.read_checkpoint(out / "checkpoint.pth")
    assert ckpt["arch"] == "siftflow-fcn32s" and ckpt["num_classes"] == [33, 3]
    assert ckpt["config"]["dataset"] == "siftflow" and ckpt["config"]["val_split"] == "test"
    assert {"score_fr_sem.weight", "score_fr_geo.weight", "upscore_geo.weight"} <= set(ckpt["model_state_dict"])


def test_evaluate_reports_each_head_separately(siftflow_run, capsys):
    data, out = siftflow_run
    assert main(["evaluate", "--data", str(data), "--checkpoint", str(out / "checkpoint.pth"), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "siftflow-fcn32s on" in text and "(siftflow [test])" in text
    assert "semantic (33 classes)" in text and "geometric (3 classes)" in text
    assert "  horizontal" in text and "  awning" in text
    assert text.count("(no published numbers)") == 2  # the paper reports its FCN-16s only
    assert main(["evaluate", "--data", str(data), "--checkpoint", str(out / "checkpoint.pth"), "--json",
                 "--model", "siftflow-fcn32s"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["tasks"]) == {"semantic", "geometric"} and result["num_classes"] == [33, 3]
    assert result["mean_iu"] == result["tasks"]["semantic"]["mean_iu"]


def test_evaluate_names_data_the_model_cannot_read(siftflow_run, capsys):
    data, out = siftflow_run
    assert main(["evaluate", "--data", str(data), "--checkpoint", str(out / "checkpoint.pth"), "--dataset", "voc"]) == 2
    assert "siftflow-fcn32s needs geometric that the voc dataset does not have" in capsys.readouterr().err


def test_paper_numbers_stand_beside_the_network_they_were_published_for():
    from fcnfast.evaluation import _with_paper

    metrics = {"tasks": {"semantic": {}, "geometric": {}}}
    scores = _with_paper("siftflow-fcn16s", "siftflow", (33, 3), metrics)["tasks"]
    assert scores["semantic"]["paper"]["mean_iu"] == 39.5 and scores["geometric"]["paper"]["pixel_acc"] == 94.3
    assert _with_paper("siftflow-fcn16s", "siftflow", (5, 3), metrics)["tasks"]["semantic"]["paper"] is None
    nyud = _with_paper("nyud-fcn32s-color-hha", "nyud", (40,), {"tasks": {"semantic": {}}})
    assert nyud["tasks"]["semantic"]["paper"]["pixel_acc"] == 64.3


def test_two_stream_network_reads_colour_and_hha(tmp_path):
    data = make_toy_nyud(tmp_path / "nyud", num_train=1, num_val=1, size=(16, 20), seed=1)["root"]
    ds = open_dataset("nyud", data, "test", modalities=("color", "hha"))
    torch.manual_seed(0)
    model = build_model("nyud-fcn32s-color-hha").eval()
    image, _ = ds[0]
    with torch.no_grad():
        (scores,) = run_model(model, image[None])
        direct = model(image[None, :3], image[None, 3:])
    assert torch.equal(scores, direct) and scores.shape == (1, 40, 16, 20)
    metrics = evaluate(model, eval_loader(ds), 40)
    assert metrics["pixels"] > 0 and set(metrics["tasks"]) == {"semantic"}
