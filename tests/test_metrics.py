"""fcnfast.metrics: the paper's confusion-matrix metrics (docs/design.md §9)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fcnfast.metrics import ConfusionMatrix, metrics_from_hist

HAS_CUDA = torch.cuda.is_available()

# Hand example, 4 classes; class 3 never appears (neither in gt nor in pred).
# Counted pixels (gt, pred): (0,0) (0,0) (0,1) (1,1) (1,2) (2,2); the rest have targets
# 255 (VOC ignore), 7 (>= n) or -1 and drop out whatever the prediction is.
GT = np.array([[0, 0, 0, 1, 255, 7], [1, 2, 255, -1, 255, 255]], dtype=np.int64)
PRED = np.array([[0, 0, 1, 1, 3, 0], [2, 2, 1, 2, 0, 3]], dtype=np.int64)
#        pred:  0  1  2  3
HIST = [[2, 1, 0, 0],  # gt 0
        [0, 1, 1, 0],  # gt 1
        [0, 0, 1, 0],  # gt 2
        [0, 0, 0, 0]]  # gt 3  # fmt: skip
# diag = [2, 1, 1, 0]; gt counts (rows) = [3, 2, 1, 0]; pred counts (cols) = [2, 2, 2, 0]; total 6
PIXEL_ACC = 4 / 6
ACC = [2 / 3, 1 / 2, 1 / 1, math.nan]
MEAN_ACC = (2 / 3 + 1 / 2 + 1) / 3  # = 13/18, class 3 excluded
IU = [2 / (3 + 2 - 2), 1 / (2 + 2 - 1), 1 / (1 + 2 - 1), math.nan]  # 2/3, 1/3, 1/2, NaN
MEAN_IU = (2 / 3 + 1 / 3 + 1 / 2) / 3  # = 1/2
FW_IU = (3 / 6) * (2 / 3) + (2 / 6) * (1 / 3) + (1 / 6) * (1 / 2)  # = 19/36


def _check_hand_example(res):
    assert res["pixel_acc"] == pytest.approx(PIXEL_ACC)
    assert res["mean_acc"] == pytest.approx(13 / 18) == MEAN_ACC
    assert res["mean_iu"] == pytest.approx(0.5) == MEAN_IU
    assert res["fw_iu"] == pytest.approx(19 / 36) == FW_IU
    np.testing.assert_allclose(res["iu"], IU, equal_nan=True)
    np.testing.assert_allclose(res["acc"], ACC, equal_nan=True)
    for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
        assert isinstance(res[key], float)


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda a: a, id="numpy-int64"),
        pytest.param(lambda a: a.astype(np.int32), id="numpy-int32"),
        pytest.param(torch.from_numpy, id="torch-int64"),
        pytest.param(lambda a: torch.from_numpy(a).int(), id="torch-int32"),
        pytest.param(lambda a: torch.from_numpy(a).short(), id="torch-int16"),
    ],
)
def test_hand_example(convert):
    cm = ConfusionMatrix(4)
    cm.update(convert(PRED), convert(GT))
    assert cm.hist.dtype == torch.int64
    assert cm.hist.tolist() == HIST
    _check_hand_example(cm.compute())


def test_hand_example_uint8_and_mixed_inputs():
    # uint8 targets cannot hold -1: map it to 254 (also >= n, so still ignored). gt*n+pred must
    # not overflow in uint8 either.
    gt = np.where(GT < 0, 254, GT).astype(np.uint8)
    cm = ConfusionMatrix(4)
    cm.update(torch.from_numpy(PRED).to(torch.uint8), gt)  # tensor pred, numpy target
    assert cm.hist.tolist() == HIST
    _check_hand_example(cm.compute())


def test_accumulates_over_updates_any_leading_dims():
    cm = ConfusionMatrix(4)
    cm.update(PRED[0], GT[0])  # 1-D
    cm.update(torch.from_numpy(PRED[1:]).reshape(1, 1, 1, 6), torch.from_numpy(GT[1:]).reshape(1, 1, 1, 6))
    assert cm.hist.tolist() == HIST
    _check_hand_example(cm.compute())
    # A second pass doubles the counts but not the metrics.
    cm.update(PRED, GT)
    assert cm.hist.tolist() == (2 * np.array(HIST)).tolist()
    _check_hand_example(cm.compute())
    cm.reset()
    assert cm.hist.sum() == 0
    cm.update(PRED, GT)
    assert cm.hist.tolist() == HIST


def test_class_only_predicted_counts_as_zero_iu():
    # Class 1 is predicted but absent from the ground truth: IU = 0 (and it pulls mean IU
    # down), accuracy undefined (NaN, excluded from mean acc). Class 2 absent: NaN in both.
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 0, 1, 0]), np.array([0, 0, 0, 0]))
    res = cm.compute()
    np.testing.assert_allclose(res["iu"], [3 / 4, 0.0, math.nan], equal_nan=True)
    np.testing.assert_allclose(res["acc"], [3 / 4, math.nan, math.nan], equal_nan=True)
    assert res["mean_iu"] == pytest.approx(3 / 8)
    assert res["mean_acc"] == pytest.approx(3 / 4)
    assert res["pixel_acc"] == pytest.approx(3 / 4)
    assert res["fw_iu"] == pytest.approx(3 / 4)  # only class 0 has freq > 0


def test_empty_matrix_gives_nan_without_warnings(recwarn):
    cm = ConfusionMatrix(3)
    cm.update(np.zeros((0, 5), np.int64), np.zeros((0, 5), np.int64))
    cm.update(np.array([1, 2]), np.array([255, 255]))  # all ignored
    res = cm.compute()
    assert all(math.isnan(res[k]) for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"))
    assert np.isnan(res["iu"]).all()
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_merge_and_all_reduce_without_distributed():
    a, b = ConfusionMatrix(4), ConfusionMatrix(4)
    a.update(PRED[0], GT[0])
    b.update(PRED[1], GT[1])
    assert a.merge(b) is a
    assert a.hist.tolist() == HIST
    assert a.all_reduce() is a  # torch.distributed not initialised: a no-op
    assert a.hist.tolist() == HIST
    with pytest.raises(ValueError, match="num_classes differ"):
        a.merge(ConfusionMatrix(5))


def test_all_reduce_single_process_gloo(tmp_path):
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or dist.is_initialized():
        pytest.skip("torch.distributed unavailable or already initialised")
    store = dist.FileStore(str(tmp_path / "store"), 1)
    try:
        dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    except Exception as exc:  # pragma: no cover - sandbox without loopback networking
        pytest.skip(f"gloo unavailable: {exc}")
    try:
        cm = ConfusionMatrix(4).update(PRED, GT)
        cm.all_reduce()
        assert cm.hist.tolist() == HIST  # world size 1: the sum is itself
    finally:
        dist.destroy_process_group()


def test_errors():
    cm = ConfusionMatrix(4)
    with pytest.raises(ValueError, match=r"same shape.*\(2, 3\).*\(3, 2\)"):
        cm.update(np.zeros((2, 3), np.int64), np.zeros((3, 2), np.int64))
    with pytest.raises(TypeError, match="pred.*float32"):
        cm.update(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="target.*float64"):
        cm.update(np.zeros((2, 3), np.int64), np.zeros((2, 3)))
    with pytest.raises(TypeError, match="pred.*bool"):
        cm.update(torch.zeros(2, dtype=torch.bool), torch.zeros(2, dtype=torch.long))
    with pytest.raises(TypeError, match="list"):
        cm.update([0, 1], [0, 1])
    with pytest.raises(ValueError, match=r"predictions must lie in \[0, 4\).*\[0, 4\]"):
        cm.update(np.array([0, 4]), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\[-1, 0\]"):
        cm.update(np.array([-1, 0]), np.array([255, 0]))  # even where the target is ignored
    assert cm.hist.sum() == 0  # failed updates add nothing
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)
    with pytest.raises(TypeError, match="num_classes"):
        ConfusionMatrix(2.0)
    with pytest.raises(ValueError, match="square"):
        metrics_from_hist(np.zeros((2, 3)))


# ---------------------------------------------------------------------------------------------
# Against an independent numpy implementation (np.add.at, no bincount, no shared code).
# ---------------------------------------------------------------------------------------------


def _numpy_reference(preds, gts, n):
    hist = np.zeros((n, n), dtype=np.int64)
    for p, g in zip(preds, gts):
        p, g = np.asarray(p).ravel(), np.asarray(g).ravel()
        keep = (g >= 0) & (g < n)
        np.add.at(hist, (g[keep], p[keep]), 1)
    h = hist.astype(np.float64)
    tp, rows, cols, tot = np.diag(h), h.sum(1), h.sum(0), h.sum()
    acc = np.array([tp[i] / rows[i] if rows[i] else np.nan for i in range(n)])
    iu = np.array([tp[i] / (rows[i] + cols[i] - tp[i]) if rows[i] + cols[i] else np.nan for i in range(n)])
    fw = sum(rows[i] / tot * iu[i] for i in range(n) if rows[i] > 0) if tot else np.nan
    mean = lambda v: np.mean(v[~np.isnan(v)]) if (~np.isnan(v)).any() else np.nan  # noqa: E731
    return hist, {
        "pixel_acc": tp.sum() / tot if tot else np.nan,
        "mean_acc": mean(acc),
        "mean_iu": mean(iu),
        "fw_iu": fw,
        "iu": iu,
        "acc": acc,
    }


@st.composite
def _batches(draw):
    n = draw(st.integers(1, 7))
    shapes = st.tuples(st.integers(0, 5), st.integers(1, 9))
    out = []
    for _ in range(draw(st.integers(1, 3))):
        h, w = draw(shapes)
        seed = draw(st.integers(0, 2**32 - 1))
        rng = np.random.default_rng(seed)
        pred = rng.integers(0, n, size=(h, w))
        # Mostly valid targets; some ignore (255), negative or >= n values; biased toward pred.
        gt = np.where(rng.random((h, w)) < 0.5, pred, rng.integers(0, n, size=(h, w)))
        gt = np.where(rng.random((h, w)) < 0.15, rng.choice([255, -1, n, n + 3], size=(h, w)), gt)
        out.append((pred, gt))
    return n, out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_batches(), st.sampled_from(["numpy", "torch", "torch-int32"]))
def test_matches_numpy_reference(data, kind):
    n, batches = data
    cm = ConfusionMatrix(n)
    for pred, gt in batches:
        if kind == "numpy":
            cm.update(pred, gt)
        elif kind == "torch":
            cm.update(torch.from_numpy(pred), torch.from_numpy(gt))
        else:
            cm.update(torch.from_numpy(pred).int(), torch.from_numpy(gt).int())
    hist, ref = _numpy_reference([b[0] for b in batches], [b[1] for b in batches], n)
    np.testing.assert_array_equal(cm.hist.numpy(), hist)
    res = cm.compute()
    for key in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
        np.testing.assert_allclose(res[key], ref[key], rtol=1e-12, equal_nan=True, err_msg=key)
    np.testing.assert_allclose(res["iu"], ref["iu"], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(res["acc"], ref["acc"], rtol=1e-12, equal_nan=True)


# ---------------------------------------------------------------------------------------------
# CUDA
# ---------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_cuda_accumulates_on_device_and_matches_cpu():
    rng = np.random.default_rng(0)
    n = 21
    pred = rng.integers(0, n, size=(2, 97, 113))
    gt = np.where(rng.random(pred.shape) < 0.1, 255, rng.integers(0, n, size=pred.shape))
    cpu = ConfusionMatrix(n).update(pred, gt)
    gpu = ConfusionMatrix(n)
    gpu.update(torch.from_numpy(pred).cuda(), torch.from_numpy(gt).cuda().to(torch.uint8))
    assert gpu.hist.device.type == "cuda"  # adopted the inputs' device
    assert torch.equal(gpu.hist.cpu(), cpu.hist)
    gpu.update(pred, gt)  # numpy after CUDA: moved to the matrix's device
    assert torch.equal(gpu.hist.cpu(), 2 * cpu.hist)
    with pytest.raises(ValueError, match="same device"):
        gpu.update(torch.from_numpy(pred).cuda(), torch.from_numpy(gt))
    with pytest.raises(ValueError, match="predictions must lie"):
        gpu.update(torch.full((3,), n, device="cuda"), torch.zeros(3, dtype=torch.long, device="cuda"))
    fixed = ConfusionMatrix(n, device="cpu").update(torch.from_numpy(pred).cuda(), torch.from_numpy(gt).cuda())
    assert fixed.hist.device.type == "cpu" and torch.equal(fixed.hist, cpu.hist)
    res_gpu, res_cpu = gpu.compute(), cpu.compute()
    assert res_gpu["mean_iu"] == pytest.approx(res_cpu["mean_iu"])
