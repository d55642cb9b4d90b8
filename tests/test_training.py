"""``fcnfast train`` / ``fcnfast evaluate`` end to end on a tiny toy dataset, plus the training library's pieces.

The models are the real FCN classes: even at 20x28 inputs conv1 runs at ~218x226 (pad 100), so one
step of batch 2 costs seconds on a CPU. The end-to-end tests therefore share one 4-iteration
reference run (``base_run``) and compare every other run against it:

- resumed after a real SIGKILL              -> identical losses and weights
- 2 processes (torchrun, gloo) x batch 1   -> same losses, metrics and weights as 1 x batch 2
- backend="reference" instead of auto (C++) -> same losses
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fcnfast
from fcnfast import training as T
from fcnfast.cli import main
from fcnfast.data import make_toy_dataset, voc_colormap

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = 3
SIZE = (20, 28)
ITERATIONS = 4


def run_args(data, out, *, batch_size=2, iterations=ITERATIONS, extra=()):
    """Modern preset, fcn32s, no dropout (so process counts are comparable), log every step.
    On the CPU, also on a GPU machine: bit-exact resume and the gloo DDP comparison are CPU facts
    (cuDNN's backward is not bitwise deterministic, and NCCL cannot put two ranks on one GPU)."""
    return [
        "train", "--data", str(data), "--out", str(out), "--model", "fcn32s", "--preset", "modern",
        "--num-classes", str(NUM_CLASSES), "--batch-size", str(batch_size), "--iterations", str(iterations),
        "--lr", "0.02", "--dropout", "0", "--val-every", "2", "--checkpoint-every", "2", "--log-every", "1",
        "--num-workers", "0", "--seed", "0", "--quiet", "--device", "cpu", *extra,
    ]


@pytest.fixture(autouse=True, scope="module")
def _no_checkpoint_fsync():
    # Checkpoints stay atomic; skipping the fsync of each 1 GB file saves seconds per write.
    old = os.environ.get("FCNFAST_CHECKPOINT_FSYNC")
    os.environ["FCNFAST_CHECKPOINT_FSYNC"] = "0"
    yield
    if old is None:
        os.environ.pop("FCNFAST_CHECKPOINT_FSYNC", None)
    else:
        os.environ["FCNFAST_CHECKPOINT_FSYNC"] = old


def subprocess_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def losses(out):
    return [(r["iteration"], r["loss"]) for r in T.read_log(out)]


def load_state(path):
    return T.read_checkpoint(path)["model_state_dict"]


def assert_states_close(a, b, rtol, atol):
    for name in ("conv1_1.weight", "conv5_3.bias", "fc7.weight", "score_fr.weight", "score_fr.bias"):
        torch.testing.assert_close(a[name], b[name], rtol=rtol, atol=atol, msg=lambda m: f"{name}: {m}")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "voc"
    make_toy_dataset(root, num_train=4, num_val=2, size=SIZE, num_classes=NUM_CLASSES, seed=0)
    return root


@pytest.fixture(scope="module")
def base_run(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "base"
    t0 = time.perf_counter()
    assert main(run_args(toy, out)) == 0
    print(f"base run: {time.perf_counter() - t0:.1f} s")
    return out


# ----------------------------------------------------------------------------------------------
# (a) training lowers the loss and writes checkpoints and logs
# ----------------------------------------------------------------------------------------------


def test_train_lowers_loss_and_writes_checkpoint_and_log(base_run):
    rows = T.read_log(base_run)
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    loss = [r["loss"] for r in rows]
    assert loss[0] == pytest.approx(math.log(NUM_CLASSES), rel=1e-6)  # score layers start at zero
    assert loss[-1] < loss[0] - 0.005, loss
    # poly schedule on the weights' lr: lr * (1 - t/T)^0.9 for 0-based step t
    assert [r["lr"] for r in rows] == pytest.approx([0.02 * (1 - t / ITERATIONS) ** 0.9 for t in range(4)])
    val_rows = [r for r in rows if r["mean_iu"] is not None]
    assert [r["iteration"] for r in val_rows] == [2, 4]
    for r in val_rows:
        assert all(0.0 <= r[k] <= 1.0 for k in T.METRIC_NAMES)

    ckpt = torch.load(base_run / "checkpoint.pth", map_location="cpu", weights_only=True, mmap=True)
    assert ckpt["iteration"] == ITERATIONS and ckpt["arch"] == "voc-fcn32s" and ckpt["num_classes"] == NUM_CLASSES
    assert {"model_state_dict", "optim_state_dict", "best_mean_iu", "config"} <= set(ckpt)
    assert ckpt["config"]["preset"] == "modern" and ckpt["config"]["lr"] == 0.02
    json.dumps(ckpt["config"])  # JSON-safe
    assert ckpt["best_mean_iu"] == max(r["mean_iu"] for r in val_rows)
    optimised = sum(len(g["params"]) for g in ckpt["optim_state_dict"]["param_groups"])
    assert optimised == len(ckpt["model_state_dict"]) - 1  # all but the frozen upscore.weight
    best = torch.load(base_run / "best.pth", map_location="cpu", weights_only=True, mmap=True)
    assert best["iteration"] == ckpt["best_iteration"] and best["best_mean_iu"] == ckpt["best_mean_iu"]
    assert not list(base_run.glob(".*.tmp"))
    jsonl = [json.loads(l) for l in (base_run / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in jsonl] == [1, 2, 3, 4] and len(jsonl[1]["iu"]) == NUM_CLASSES
    cfg = json.loads((base_run / "config.json").read_text())
    assert cfg["world_size"] == 1 and cfg["global_batch"] == 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("amp", [None, "bf16"])
def test_train_on_cuda_lowers_the_loss(toy, tmp_path, amp):
    """The same run on the GPU (fused heads on triton, their backward kernels, AMP)."""
    out = tmp_path / f"cuda-{amp}"
    args = run_args(toy, out)
    args[args.index("--device") + 1] = "cuda"
    assert main(args + (["--amp", amp] if amp else [])) == 0
    loss = [r["loss"] for r in T.read_log(out)]
    assert len(loss) == ITERATIONS and all(math.isfinite(v) for v in loss)
    assert loss[-1] < loss[0], loss
    assert (out / "checkpoint.pth").exists()


# ----------------------------------------------------------------------------------------------
# (b) a run killed after its first checkpoint resumes exactly
# ----------------------------------------------------------------------------------------------


def test_killed_run_resumes_with_identical_losses(toy, base_run, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "fcnfast", *run_args(toy, out)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 400
        while not (out / "checkpoint.pth").exists():
            if proc.poll() is not None:
                pytest.fail(f"training exited early ({proc.returncode}): {proc.stdout.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint appeared")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # mid-way through iteration 3
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed = T.read_checkpoint(out / "checkpoint.pth")
    assert killed["iteration"] == 2
    assert (out / ".lock").exists()  # the killed run could not release its lock: the resume finds it stale

    # Everything not given again comes from the checkpoint's config; the checkpoint is read once.
    import fcnfast.training.run_checkpoint as run_checkpoint

    reads = []
    real_read = run_checkpoint.read_checkpoint
    monkeypatch.setattr(run_checkpoint, "read_checkpoint", lambda *a, **k: reads.append(a) or real_read(*a, **k))
    assert main(["train", "--data", str(toy), "--out", str(out), "--resume", "--quiet", "--num-workers", "0"]) == 0
    assert len(reads) == 1, reads
    final = T.read_checkpoint(out / "checkpoint.pth")
    assert final["iteration"] == ITERATIONS
    got, want = losses(out), losses(base_run)
    assert [i for i, _ in got] == [1, 2, 3, 4]
    np.testing.assert_allclose([l for _, l in got], [l for _, l in want], rtol=1e-6, atol=0)
    assert_states_close(load_state(out / "checkpoint.pth"), load_state(base_run / "checkpoint.pth"), rtol=1e-6, atol=1e-9)
    assert not list(out.glob(".*.tmp")) and not (out / ".lock").exists()
    # elapsed_s continues from the checkpoint's training time instead of restarting at 0.
    elapsed = [r["elapsed_s"] for r in T.read_log(out)]
    assert elapsed[1] == pytest.approx(killed["elapsed_s"], abs=1e-3)
    assert elapsed[1] < elapsed[2] < elapsed[3] <= final["elapsed_s"] + 1e-3, elapsed


# ----------------------------------------------------------------------------------------------
# (c) 2 processes x batch 1 (torchrun, gloo) == 1 process x batch 2
# ----------------------------------------------------------------------------------------------


def test_ddp_two_processes_match_one_process_with_the_global_batch(toy, base_run, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "fcnfast", *run_args(toy, out, batch_size=1, extra=("--checkpoint-every", "0", "--val-every", "4"))]
    result = subprocess.run(cmd, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["world_size"] == 2 and cfg["global_batch"] == 2 and cfg["batch_size"] == 1
    got, want = T.read_log(out), T.read_log(base_run)
    assert [r["iteration"] for r in got] == [1, 2, 3, 4]
    np.testing.assert_allclose([r["loss"] for r in got], [r["loss"] for r in want], rtol=2e-5)
    # Validation is sharded over the ranks and summed into one confusion matrix.
    assert [r["mean_iu"] is not None for r in got] == [False, False, False, True]
    for k in T.METRIC_NAMES:
        assert got[-1][k] == pytest.approx(want[-1][k], abs=1e-6), k
    assert_states_close(load_state(out / "checkpoint.pth"), load_state(base_run / "checkpoint.pth"), rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# (d) fused heads (auto -> C++) and the reference backend train alike
# ----------------------------------------------------------------------------------------------


def test_fused_and_reference_backends_give_the_same_losses(toy, base_run, tmp_path):
    ok, reason = fcnfast.backends.supports("cpp", "cpu", torch.float32)
    if not ok:
        pytest.skip(f"auto is the reference backend here (C++ backend unavailable: {reason})")
    out = tmp_path / "reference"
    assert main(run_args(toy, out, iterations=2, extra=("--backend", "reference", "--val-every", "0"))) == 0
    ref = losses(out)
    # Steps 1-2 of a 2-iteration poly run equal those of a 4-iteration one (factor 1 at step 0).
    np.testing.assert_allclose([l for _, l in ref], [l for _, l in losses(base_run)[:2]], rtol=1e-5)
    assert ref[1][1] < ref[0][1]  # the second loss already depends on the head's backward


# ----------------------------------------------------------------------------------------------
# (e) evaluate
# ----------------------------------------------------------------------------------------------


def test_evaluate_prints_metrics_and_writes_palette_pngs(toy, base_run, tmp_path, capsys):
    preds = tmp_path / "pred"
    assert main(["evaluate", "--data", str(toy), "--checkpoint", str(base_run / "checkpoint.pth"),
                 "--predictions", str(preds), "--quiet"]) == 0
    text = capsys.readouterr().out
    for label in ("pixel acc", "mean acc", "mean IU", "fwIU", "per-class IU", "class0", "class2", "fcn32s"):
        assert label in text, text
    ckpt = T.read_checkpoint(base_run / "checkpoint.pth")
    mean_iu_line = next(l for l in text.splitlines() if l.startswith("mean IU"))
    assert float(mean_iu_line.split()[2]) == pytest.approx(100 * ckpt["metrics"]["mean_iu"], abs=0.006)

    ids = (toy / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert sorted(p.stem for p in preds.glob("*.png")) == sorted(ids)
    for name in ids:
        with Image.open(preds / f"{name}.png") as im:
            assert im.mode == "P" and im.size == (SIZE[1], SIZE[0])
            assert np.array_equal(np.asarray(im.getpalette(), np.uint8).reshape(-1, 3)[:NUM_CLASSES],
                                  voc_colormap()[:NUM_CLASSES])
            assert np.asarray(im).max() < NUM_CLASSES

    assert main(["evaluate", "--data", str(toy), "--checkpoint", str(base_run / "checkpoint.pth"),
                 "--json", "--quiet"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["mean_iu"] == pytest.approx(ckpt["metrics"]["mean_iu"]) and set(data["iu"]) == {"class0", "class1", "class2"}


# ----------------------------------------------------------------------------------------------
# (f) errors users hit
# ----------------------------------------------------------------------------------------------


def _fails(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    for needle in needles:
        assert needle in err, err
    return err


def test_train_errors_are_clear(toy, tmp_path, capsys):
    _fails(capsys, run_args(tmp_path / "missing", tmp_path / "r0"), "data directory not found", "missing")
    _fails(capsys, ["train", "--data", str(toy), "--out", str(tmp_path / "r1"), "--resume"],
           "no checkpoint to resume", "without --resume")
    corrupt = tmp_path / "r2"
    corrupt.mkdir()
    (corrupt / "checkpoint.pth").write_bytes(b"this is not a checkpoint" * 100)
    _fails(capsys, ["train", "--data", str(toy), "--out", str(corrupt), "--resume"], "not a PyTorch checkpoint",
           "checkpoint.pth")
    _fails(capsys, run_args(toy, corrupt), "already holds a run", "--resume")
    _fails(capsys, run_args(toy, tmp_path / "r3", iterations=0), "iterations must be")
    _fails(capsys, run_args(toy, tmp_path / "r4", extra=("--val-split", "nosuch")), "nosuch", "--val-every 0")


def test_truncated_checkpoint_is_reported(base_run, toy, tmp_path, capsys):
    out = tmp_path / "trunc"
    out.mkdir()
    with open(base_run / "checkpoint.pth", "rb") as f:
        (out / "checkpoint.pth").write_bytes(f.read(1 << 20))
    _fails(capsys, ["train", "--data", str(toy), "--out", str(out), "--resume"], "corrupt")
    _fails(capsys, ["evaluate", "--data", str(toy), "--checkpoint", str(out / "checkpoint.pth")], "corrupt")


def test_evaluate_errors_are_clear(toy, base_run, tmp_path, capsys):
    ckpt = str(base_run / "checkpoint.pth")
    _fails(capsys, ["evaluate", "--data", str(toy), "--checkpoint", str(tmp_path / "none.pth")], "checkpoint not found")
    _fails(capsys, ["evaluate", "--data", str(toy), "--checkpoint", ckpt, "--model", "fcn8s"], "holds a voc-fcn32s model")
    _fails(capsys, ["evaluate", "--data", str(tmp_path / "nodata"), "--checkpoint", ckpt], "data directory not found")
    # A plain state dict of another architecture: load_weights names the problem.
    plain = tmp_path / "plain.pth"
    torch.save({"conv1_1.weight": torch.zeros(64, 3, 3, 3), "score_fr.weight": torch.zeros(NUM_CLASSES, 4096, 1, 1)}, plain)
    _fails(capsys, ["evaluate", "--data", str(toy), "--checkpoint", str(plain), "--model", "fcn8s"],
           "does not fit FCN8s", "missing keys")


# ----------------------------------------------------------------------------------------------
# Library pieces (cheap)
# ----------------------------------------------------------------------------------------------


# The release's solvers: base_lr of solver.prototxt, iterations and test interval of solve.py.
RELEASE_SOLVERS = {
    "fcn32s": (1e-10, 100_000, 4000), "fcn16s": (1e-12, 100_000, 4000), "fcn8s": (1e-14, 100_000, 4000),
    "fcn8s-atonce": (1e-10, 300_000, 4000), "pascalcontext-fcn32s": (1e-10, 400_000, 8000),
    "pascalcontext-fcn16s": (1e-12, 400_000, 8000), "pascalcontext-fcn8s": (1e-14, 400_000, 8000),
    "nyud-fcn32s-color": (1e-10, 100_000, 2000), "nyud-fcn32s-hha": (1e-10, 100_000, 2000),
    "nyud-fcn32s-color-d": (1e-10, 100_000, 2000), "nyud-fcn32s-color-hha": (1e-12, 100_000, 2000),
    "siftflow-fcn32s": (1e-10, 100_000, 2000), "siftflow-fcn16s": (1e-12, 100_000, 2000),
    "siftflow-fcn8s": (1e-12, 100_000, 2000),
}


@pytest.mark.parametrize("model", RELEASE_SOLVERS)
def test_paper_preset(model):
    cfg = T.TrainConfig(data="d", model=model, preset="paper")
    assert (cfg.lr, cfg.iterations, cfg.val_every) == RELEASE_SOLVERS[model]
    assert (cfg.momentum, cfg.weight_decay, cfg.batch_size) == (0.99, 5e-4, 1)
    assert (cfg.lr_policy, cfg.loss_normalization, cfg.bias_lr_mult, cfg.bias_weight_decay) == ("fixed", "image", 2.0, 0.0)


def test_the_dataset_fills_classes_and_splits():
    cfg = T.TrainConfig(data="d", model="siftflow-fcn16s")
    assert (cfg.dataset, cfg.num_classes, cfg.train_split, cfg.val_split) == ("siftflow", [33, 3], "trainval", "test")
    cfg = T.TrainConfig(data="d", model="nyud-fcn32s-color-hha")
    assert (cfg.dataset, cfg.num_classes, cfg.train_split, cfg.val_split) == ("nyud", 40, "trainval", "test")
    cfg = T.TrainConfig(data="d", model="voc-fcn8s", dataset="siftflow")  # one head: SIFT Flow's semantic labels
    assert (cfg.num_classes, cfg.val_split) == (33, "test")
    with pytest.raises(T.TrainingError, match="siftflow-fcn8s needs geometric that the voc dataset does not have"):
        T.TrainConfig(data="d", model="siftflow-fcn8s", dataset="voc")
    with pytest.raises(T.TrainingError, match=r"num_classes of siftflow-fcn8s must be 2 integers \(semantic, geometric\)"):
        T.TrainConfig(data="d", model="siftflow-fcn8s", num_classes=33)
    with pytest.raises(T.TrainingError, match="unknown dataset 'coco'"):
        T.TrainConfig(data="d", dataset="coco")


def test_modern_preset_and_overrides():
    cfg = T.TrainConfig(data="d", model="fcn8s", preset="modern")
    assert (cfg.lr, cfg.momentum, cfg.lr_policy, cfg.loss_normalization) == (1e-3, 0.9, "poly", "pixel")
    assert cfg.batch_size > 1
    cfg = T.TrainConfig(data="d", preset="modern", lr=0.01, batch_size=3, momentum=0.5)
    assert (cfg.lr, cfg.batch_size, cfg.momentum) == (0.01, 3, 0.5)
    assert T.TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(T.TrainingError, match="unknown model"):
        T.TrainConfig(data="d", model="fcn4s")
    with pytest.raises(T.TrainingError, match="batch_size"):
        T.TrainConfig(data="d", batch_size=0)
    assert T.lr_factor("poly", 0, 10) == 1.0 and T.lr_factor("poly", 5, 10) == pytest.approx(0.5 ** 0.9)
    assert T.lr_factor("fixed", 5, 10) == 1.0


def test_param_groups_biases_double_lr_no_decay_frozen_upsampling():
    with torch.device("meta"):
        model = fcnfast.FCN8s(num_classes=NUM_CLASSES)
    weights, biases = T.param_groups(model, 1e-3, 5e-4)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].endswith("weight") for p in weights["params"])
    assert all(names[id(p)].endswith("bias") for p in biases["params"])
    assert (weights["lr"], weights["weight_decay"]) == (1e-3, 5e-4)
    assert (biases["lr"], biases["weight_decay"]) == (2e-3, 0.0)
    in_groups = {names[id(p)] for g in (weights, biases) for p in g["params"]}
    assert not in_groups & {"upscore2.weight", "upscore_pool4.weight", "upscore8.weight"}
    assert "score_pool3.bias" in in_groups and len(in_groups) == sum(p.requires_grad for p in model.parameters())


def test_batch_sampler_ranks_partition_the_global_batch_and_resume_mid_epoch():
    n, B, W, iters = 7, 2, 3, 9
    single = list(T.IterationBatchSampler(n, B * W, start=0, stop=iters, seed=5))
    ranks = [list(T.IterationBatchSampler(n, B, start=0, stop=iters, rank=r, world_size=W, seed=5)) for r in range(W)]
    for t in range(iters):
        assert sum((ranks[r][t] for r in range(W)), []) == single[t]
    resumed = list(T.IterationBatchSampler(n, B * W, start=4, stop=iters, seed=5))
    assert resumed == single[4:]
    stream = [i for batch in single for i, _ in batch]
    for e in range(len(stream) // n):  # each epoch is a permutation
        assert sorted(stream[e * n:(e + 1) * n]) == list(range(n))
    other_seed = [i for b in T.IterationBatchSampler(n, B * W, start=0, stop=iters, seed=6) for i, _ in b]
    assert other_seed != stream


def test_augmentation_depends_only_on_sample_position(toy):
    from fcnfast.data import RandomFlipScale, VOCSegmentation
    from fcnfast.training.sampling import TrainSamples

    ds = TrainSamples(VOCSegmentation(toy, "train", num_classes=NUM_CLASSES), RandomFlipScale(scales=(0.5, 1.5)), seed=1)
    a = [ds[(i % 4, i)] for i in range(6)]
    torch.manual_seed(123)  # global RNG state must not matter
    b = [ds[(i % 4, i)] for i in reversed(range(6))][::-1]
    for (ia, la), (ib, lb) in zip(a, b):
        assert torch.equal(ia, ib) and torch.equal(la, lb)
    assert len({tuple(x[1].shape) for x in a}) > 1  # it does rescale


def test_heads_run_in_float32_under_autocast():
    head = fcnfast.UpsampleCropAdd(NUM_CLASSES, NUM_CLASSES, 4, 2, skip_offset=5)
    x = torch.randn(1, NUM_CLASSES, 5, 6, dtype=torch.bfloat16)
    skip = torch.randn(1, NUM_CLASSES, 22, 24, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="dtype"):
        head(x, skip=skip)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = head(x, skip=skip)
    assert y.dtype == torch.float32
    expected = fcnfast.upsample_crop_add(x.float(), head.weight, 2, skip=skip.float(), skip_offset=5, backend="reference")
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("normalization", ["pixel", "image", "none"])
def test_scaled_rank_losses_average_to_the_global_gradient(normalization):
    """What DDP does with each rank's scale_loss (average the gradients) equals one process
    computing the loss over the whole global batch."""
    torch.manual_seed(0)
    W, B = 3, 2
    logits = torch.randn(W * B, NUM_CLASSES, 5, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, NUM_CLASSES, (W * B, 5, 4))
    labels[labels == 0] = 255  # ignored pixels: counts differ per rank
    labels[1] = 255

    def pixel_sum(x, y):
        return torch.nn.functional.cross_entropy(x, y, ignore_index=255, reduction="sum")

    sums = [pixel_sum(logits[r * B:(r + 1) * B], labels[r * B:(r + 1) * B]) for r in range(W)]
    counts = [(labels[r * B:(r + 1) * B] != 255).sum().double() for r in range(W)]
    g_sum, g_count = sum(s.detach() for s in sums), sum(counts)
    grads, values = [], []
    for r in range(W):
        loss, value = T.scale_loss(sums[r], g_sum, g_count, world_size=W, normalization=normalization, global_batch=W * B)
        grads.append(torch.autograd.grad(loss, logits, retain_graph=True)[0])
        values.append(value)
    ddp_grad = sum(grads) / W

    one_sum = pixel_sum(logits, labels)
    one_loss, one_value = T.scale_loss(one_sum, one_sum.detach(), (labels != 255).sum().double(), world_size=1,
                                       normalization=normalization, global_batch=W * B)
    torch.testing.assert_close(ddp_grad, torch.autograd.grad(one_loss, logits)[0])
    for v in values:
        torch.testing.assert_close(v, one_value)
    if normalization == "pixel":
        ref = torch.nn.functional.cross_entropy(logits, labels, ignore_index=255)
        torch.testing.assert_close(one_value, ref.detach())
    if normalization == "image":  # Caffe's normalize: false: per-image sums averaged over the batch
        torch.testing.assert_close(one_value, one_sum.detach() / (W * B))
