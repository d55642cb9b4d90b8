"""Triton kernels of the fused ``upsample_crop_add`` (transposed conv + crop + skip add).

Formula and shape contract (the one place it is stated for the Triton backend)::

    out[n, co, h, w] = bias[co] + skip[n, co, sy + h, sx + w]
        + sum_{ci, i, j : 0 <= oy+h - i*sh < kh, 0 <= ox+w - j*sw < kw}
              x[n, ci, i, j] * weight[ci, co, oy+h - i*sh, ox+w - j*sw]

x (N, Cin, Hin, Win) and skip (N, Cout, Hs, Ws) are read through their element strides
(NCHW, channels_last, sliced views); weight (Cin, Cout, kh, kw) is the nn.ConvTranspose2d
layout; the result is a contiguous (N, Cout, H, W) tensor in x.dtype. Only the H x W window
is computed, the skip is added in the same pass and every output element is written once.
Accumulation is fp32 for fp32/fp16/bf16 inputs.

Dense forward = phase decomposition. Output row o = oy + h has phase r = o mod sh; its taps
are input rows i = o//sh - t with kernel rows ky = r + t*sh < kh (t = 0, 1, ...), masked
where i falls outside [0, Hin) -- exactly the set ``tap_range`` of
csrc/include/fcnfast/index_math.h yields, in the reverse order. Every pixel of one phase
shares the tap pattern, so one program computes a phase tile as the small GEMM
``[pixels x (Cin*taps)] @ [(Cin*taps) x Cout]`` with tl.dot (fp32 accumulation; IEEE fp32
products for fp32 inputs so results match the reference). With k == 2s that is 2x2 taps.
The depthwise path (Cin == Cout, weight zero off the channel diagonal) computes
out[n, c] from x[n, c] alone with the per-pixel ``tap_range`` taps and no dot.

Backward: grad_x is the strided correlation (kernel rows of input i: ``kernel_range``);
grad_w[ci, co, ky, kx] = sum_{n,i,j} x * grad_out, reduced as fp32 partials over a split of
the (n, i, j) axis, summed, then cast to weight.dtype (always dense: all Cin x Cout).

Each kernel carries ``@triton.autotune`` over the configurations below, except under the
interpreter (which cannot autotune). The launchers in ``fcnfast/backends/triton.py`` run
either the autotuner or the bare kernel with its ``*_FIXED`` configuration
(``FCNFAST_TRITON_AUTOTUNE``). The autotune key is the channel/kernel/stride geometry, the
skip flag and ``TUNE_BUCKET`` = bit length of the work size (N*H*W of the output, or of the
input for the gradients), so a tiny test call never picks the configuration used at 500x500.
This file holds only kernels and their configurations; it imports nothing from fcnfast
but its own package's ``triton_interpreted``.
"""

from __future__ import annotations

import triton
import triton.language as tl

from . import triton_interpreted

INTERPRETED = triton_interpreted()


def _autotune(configs, key):
    """``triton.autotune`` when compiling for a GPU; the bare kernel under the interpreter.

    ``cache_results``: the pick for each key is kept in Triton's cache directory, so a later
    process on the same machine reuses it instead of benchmarking every configuration again."""

    def wrap(fn):
        return fn if INTERPRETED else triton.autotune(configs=configs, key=key, cache_results=True)(fn)

    return wrap


def _jit(fn):
    # TUNE_BUCKET only feeds the autotune key: never specialize the kernel on its value.
    return triton.jit(fn, do_not_specialize=["TUNE_BUCKET"])


_KEY = ["Cin", "Cout", "kh", "kw", "sh", "sw", "TUNE_BUCKET"]
_FWD_KEY = _KEY + ["HAS_SKIP"]

# Head shapes: Cin = Cout = 21 (VOC) with s=2 k=4 (upscore2 / upscore_pool4, small windows
# and a skip) and s=8 k=16 (upscore8, 64 phases over a large window); Cout <= 32 fits one
# BLOCK_CO, Cin = 21 takes one BLOCK_CI = 32 step or two of 16.
_FWD_CONFIGS = [
    triton.Config({"BLOCK_MY": my, "BLOCK_MX": mx, "BLOCK_CI": ci, "BLOCK_CO": co}, num_warps=nw, num_stages=ns)
    for (my, mx, ci, co, nw, ns) in [
        (8, 8, 32, 32, 4, 2),
        (4, 16, 32, 32, 4, 2),
        (8, 16, 32, 32, 4, 2),
        (16, 16, 32, 32, 8, 2),
        (8, 8, 16, 32, 4, 3),
        (4, 8, 32, 32, 2, 2),
        (8, 8, 32, 64, 4, 2),
        (16, 8, 64, 64, 8, 2),
    ]
]
_FWD_FIXED = {"BLOCK_MY": 4, "BLOCK_MX": 8, "BLOCK_CI": 16, "BLOCK_CO": 16}

_DW_CONFIGS = [
    triton.Config({"BLOCK_H": bh, "BLOCK_W": bw}, num_warps=nw)
    for (bh, bw, nw) in [(8, 64, 4), (16, 64, 4), (4, 128, 4), (16, 128, 8), (32, 64, 8), (8, 32, 2)]
]
_DW_FIXED = {"BLOCK_H": 8, "BLOCK_W": 16}

_BWD_X_CONFIGS = [
    triton.Config({"BLOCK_I": bi, "BLOCK_J": bj, "BLOCK_CI": ci, "BLOCK_CO": co}, num_warps=nw, num_stages=ns)
    for (bi, bj, ci, co, nw, ns) in [
        (4, 16, 32, 32, 4, 2),
        (8, 8, 32, 32, 4, 2),
        (8, 16, 32, 32, 4, 3),
        (2, 16, 32, 32, 2, 2),
        (8, 8, 32, 16, 4, 3),
        (8, 8, 64, 64, 8, 2),
    ]
]
_BWD_X_FIXED = {"BLOCK_I": 4, "BLOCK_J": 8, "BLOCK_CI": 16, "BLOCK_CO": 16}

_BWD_DW_CONFIGS = [
    triton.Config({"BLOCK_I": bi, "BLOCK_J": bj}, num_warps=nw)
    for (bi, bj, nw) in [(8, 32, 4), (16, 32, 4), (4, 64, 4), (16, 64, 8), (8, 16, 2)]
]
_BWD_DW_FIXED = {"BLOCK_I": 8, "BLOCK_J": 16}

_BWD_W_CONFIGS = [
    triton.Config({"BLOCK_P": p, "BLOCK_CI": ci, "BLOCK_CO": co}, num_warps=nw, num_stages=ns)
    for (p, ci, co, nw, ns) in [
        (64, 32, 32, 4, 2),
        (128, 32, 32, 4, 3),
        (32, 32, 32, 2, 2),
        (64, 16, 32, 4, 3),
        (128, 64, 64, 8, 2),
    ]
]
_BWD_W_FIXED = {"BLOCK_P": 32, "BLOCK_CI": 16, "BLOCK_CO": 16}
_BWD_W_CHUNK = 128  # the split of the (n, i, j) axis is a multiple of every BLOCK_P


# ----------------------------------------------------------------------------- helpers


@triton.jit
def _tap_range(o, k, s, in_size):
    """index_math.h ``tap_range`` for a block of absolute output positions ``o`` (>= 0).

    Tap t < count reads input ``first + t`` with kernel index ``k0 - t*s``.
    first = floor((o-k)/s) + 1 clamped at 0 is written without a negative division:
    it is > 0 exactly when o >= k.
    """
    first = tl.where(o >= k, tl.maximum(o - k, 0) // s + 1, 0)
    last = tl.minimum(o // s, in_size - 1)
    count = tl.maximum(last - first + 1, 0)
    k0 = o - first * s
    return first, count, k0


@triton.jit
def _kernel_range(i, k, s, offset, size):
    """index_math.h ``kernel_range``: kernel indices [lo, hi) through which input ``i``
    reaches the window [offset, offset + size)."""
    lo = tl.maximum(offset - i * s, 0)
    hi = tl.minimum(offset + size - i * s, k)
    return lo, hi


@triton.jit
def _plane_tile(pid, C, rows, cols, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr, IDX64: tl.constexpr):
    """The depthwise kernels' program -> (n, c, row indices, column indices) of one
    BLOCK_R x BLOCK_C tile of the (rows, cols) plane of channel c of image n; the grid is
    N * C * tiles_r * tiles_c programs, the column tile fastest. int64 with IDX64."""
    tiles_r = tl.cdiv(rows, BLOCK_R)
    tiles_c = tl.cdiv(cols, BLOCK_C)
    tc = pid % tiles_c
    rest = pid // tiles_c
    tr = rest % tiles_r
    nc = rest // tiles_r
    n = nc // C
    c = nc % C
    r = tr * BLOCK_R + tl.arange(0, BLOCK_R)
    q = tc * BLOCK_C + tl.arange(0, BLOCK_C)
    if IDX64:
        n = n.to(tl.int64)
        c = c.to(tl.int64)
        r = r.to(tl.int64)
        q = q.to(tl.int64)
    return n, c, r, q


@triton.jit
def _mma(a, b, acc, IS_FP32: tl.constexpr, UPCAST: tl.constexpr):
    """acc += a @ b in fp32; IEEE products for fp32 inputs (no TF32)."""
    if UPCAST:  # bf16 in the interpreter, which has no bf16 arithmetic
        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    elif IS_FP32:
        acc = tl.dot(a, b, acc, input_precision="ieee")
    else:
        acc = tl.dot(a, b, acc)
    return acc


# ----------------------------------------------------------------------------- forward


@_autotune(_FWD_CONFIGS, _FWD_KEY)
@_jit
def _upsample_crop_add_fwd_kernel(
    x_ptr, w_ptr, b_ptr, skip_ptr, out_ptr,
    Cin, Cout, Hin, Win, kh, kw, H, W, sh, sw, oy, ox, sy, sx,
    sxn, sxc, sxh, sxw,
    ssn, ssc, ssh, ssw,
    TUNE_BUCKET,
    HAS_BIAS: tl.constexpr, HAS_SKIP: tl.constexpr,
    IS_FP32: tl.constexpr, UPCAST: tl.constexpr, IDX64: tl.constexpr,
    BLOCK_MY: tl.constexpr, BLOCK_MX: tl.constexpr,
    BLOCK_CI: tl.constexpr, BLOCK_CO: tl.constexpr,
):
    """Dense path. grid = (N * tiles_y * tiles_x * sh * sw, cdiv(Cout, BLOCK_CO)).

    Window row h belongs to window phase p_y = h mod sh, i.e. h = m*sh + p_y; a program
    owns BLOCK_MY x BLOCK_MX values of (m_y, m_x) of one phase (p_y, p_x) of image n and
    BLOCK_CO output channels. The phase is the fastest-varying part of the program id, so
    the sh*sw programs of one spatial tile run side by side and their interleaved stores
    merge in L2.
    """
    BLOCK_P: tl.constexpr = BLOCK_MY * BLOCK_MX
    pid = tl.program_id(0)
    pid_co = tl.program_id(1)
    n_phase = sh * sw
    tiles_y = tl.cdiv(tl.cdiv(H, sh), BLOCK_MY)
    tiles_x = tl.cdiv(tl.cdiv(W, sw), BLOCK_MX)
    phase = pid % n_phase
    rest = pid // n_phase
    tx = rest % tiles_x
    rest = rest // tiles_x
    ty = rest % tiles_y
    n = rest // tiles_y
    p_y = phase // sw
    p_x = phase % sw
    # Absolute phase of the rows/columns of this program: every pixel has the same taps.
    ry = (oy + p_y) % sh
    rx = (ox + p_x) % sw
    n_ty = (kh - ry + sh - 1) // sh  # kernel rows ry, ry+sh, ... < kh
    n_tx = (kw - rx + sw - 1) // sw

    offs_p = tl.arange(0, BLOCK_P)
    offs_ci = tl.arange(0, BLOCK_CI)
    co = pid_co * BLOCK_CO + tl.arange(0, BLOCK_CO)
    if IDX64:
        n = n.to(tl.int64)
        offs_p = offs_p.to(tl.int64)
        offs_ci = offs_ci.to(tl.int64)
        co = co.to(tl.int64)
    h = (ty * BLOCK_MY + offs_p // BLOCK_MX) * sh + p_y
    w = (tx * BLOCK_MX + offs_p % BLOCK_MX) * sw + p_x
    mask_p = (h < H) & (w < W)
    mask_co = co < Cout
    qy = (oy + h) // sh
    qx = (ox + w) // sw

    x_base = x_ptr + n * sxn
    w_co = co * (kh * kw)
    w_ci_stride = Cout * kh * kw
    acc = tl.zeros((BLOCK_P, BLOCK_CO), dtype=tl.float32)
    for t_y in range(0, n_ty):
        iy = qy - t_y
        ky = ry + t_y * sh
        valid_y = mask_p & (iy >= 0) & (iy < Hin)
        for t_x in range(0, n_tx):
            ix = qx - t_x
            kx = rx + t_x * sw
            valid = valid_y & (ix >= 0) & (ix < Win)
            x_pix = x_base + iy * sxh + ix * sxw
            w_tap = w_ptr + (ky * kw + kx) + w_co
            for c0 in range(0, Cin, BLOCK_CI):
                ci = c0 + offs_ci
                mask_ci = ci < Cin
                a = tl.load(x_pix[:, None] + ci[None, :] * sxc,
                            mask=valid[:, None] & mask_ci[None, :], other=0.0)
                b = tl.load(w_tap[None, :] + ci[:, None] * w_ci_stride,
                            mask=mask_ci[:, None] & mask_co[None, :], other=0.0)
                acc = _mma(a, b, acc, IS_FP32, UPCAST)

    mask = mask_p[:, None] & mask_co[None, :]
    if HAS_BIAS:
        bias = tl.load(b_ptr + co, mask=mask_co, other=0.0)
        acc += bias.to(tl.float32)[None, :]
    if HAS_SKIP:
        s_off = n * ssn + co[None, :] * ssc + ((sy + h) * ssh + (sx + w) * ssw)[:, None]
        acc += tl.load(skip_ptr + s_off, mask=mask, other=0.0).to(tl.float32)
    out_off = (n * Cout + co[None, :]) * (H * W) + (h * W + w)[:, None]
    tl.store(out_ptr + out_off, acc.to(out_ptr.dtype.element_ty), mask=mask)


@_autotune(_DW_CONFIGS, _FWD_KEY)
@_jit
def _upsample_crop_add_fwd_depthwise_kernel(
    x_ptr, w_ptr, b_ptr, skip_ptr, out_ptr,
    C, Hin, Win, kh, kw, H, W, sh, sw, oy, ox, sy, sx,
    sxn, sxc, sxh, sxw,
    ssn, ssc, ssh, ssw,
    Cin, Cout, TUNE_BUCKET,  # autotune key only (Cin == Cout == C)
    HAS_BIAS: tl.constexpr, HAS_SKIP: tl.constexpr, IDX64: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):
    """Depthwise path. grid = (N * C * tiles_y * tiles_x,): one (n, c) and a
    BLOCK_H x BLOCK_W window tile per program; out[n, c] reads only x[n, c] and the
    diagonal filter weight[c, c] through ``tap_range`` (<= 2x2 taps when k == 2s)."""
    n, c, h, w = _plane_tile(tl.program_id(0), C, H, W, BLOCK_H, BLOCK_W, IDX64)
    mask_h = h < H
    mask_w = w < W
    first_y, cnt_y, k0_y = _tap_range(oy + h, kh, sh, Hin)
    first_x, cnt_x, k0_x = _tap_range(ox + w, kw, sw, Win)
    max_ty = (kh + sh - 1) // sh
    max_tx = (kw + sw - 1) // sw

    x_base = x_ptr + n * sxn + c * sxc
    w_base = w_ptr + c * ((C + 1) * kh * kw)  # weight[c, c]
    acc = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
    for t in range(0, max_ty):
        iy = first_y + t
        ky = k0_y - t * sh
        vy = mask_h & (t < cnt_y)
        for u in range(0, max_tx):
            ix = first_x + u
            kx = k0_x - u * sw
            vx = mask_w & (u < cnt_x)
            m = vy[:, None] & vx[None, :]
            xv = tl.load(x_base + iy[:, None] * sxh + ix[None, :] * sxw, mask=m, other=0.0)
            wv = tl.load(w_base + ky[:, None] * kw + kx[None, :], mask=m, other=0.0)
            acc += xv.to(tl.float32) * wv.to(tl.float32)

    mask = mask_h[:, None] & mask_w[None, :]
    if HAS_BIAS:
        acc += tl.load(b_ptr + c).to(tl.float32)
    if HAS_SKIP:
        s_off = n * ssn + c * ssc + (sy + h)[:, None] * ssh + (sx + w)[None, :] * ssw
        acc += tl.load(skip_ptr + s_off, mask=mask, other=0.0).to(tl.float32)
    out_off = (n * C + c) * (H * W) + h[:, None] * W + w[None, :]
    tl.store(out_ptr + out_off, acc.to(out_ptr.dtype.element_ty), mask=mask)


# ----------------------------------------------------------------------------- backward


@_autotune(_BWD_X_CONFIGS, _KEY)
@_jit
def _upsample_crop_add_bwd_input_kernel(
    g_ptr, w_ptr, gx_ptr,
    Cin, Cout, Hin, Win, kh, kw, H, W, sh, sw, oy, ox,
    sgn, sgc, sgh, sgw,
    TUNE_BUCKET,
    IS_FP32: tl.constexpr, UPCAST: tl.constexpr, IDX64: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr,
    BLOCK_CI: tl.constexpr, BLOCK_CO: tl.constexpr,
):
    """Dense grad_x. grid = (N * tiles_i * tiles_j, cdiv(Cin, BLOCK_CI)).

    grad_x[n, ci, i, j] = sum_{ky in kernel_range(i), kx in kernel_range(j), co}
        grad_out[n, co, i*sh + ky - oy, j*sw + kx - ox] * weight[ci, co, ky, kx]
    as a [pixels x (Cout*taps)] @ [(Cout*taps) x Cin] GEMM per input tile.
    """
    BLOCK_P: tl.constexpr = BLOCK_I * BLOCK_J
    pid = tl.program_id(0)
    pid_ci = tl.program_id(1)
    tiles_i = tl.cdiv(Hin, BLOCK_I)
    tiles_j = tl.cdiv(Win, BLOCK_J)
    tj = pid % tiles_j
    rest = pid // tiles_j
    ti = rest % tiles_i
    n = rest // tiles_i
    offs_p = tl.arange(0, BLOCK_P)
    offs_co = tl.arange(0, BLOCK_CO)
    ci = pid_ci * BLOCK_CI + tl.arange(0, BLOCK_CI)
    if IDX64:
        n = n.to(tl.int64)
        offs_p = offs_p.to(tl.int64)
        offs_co = offs_co.to(tl.int64)
        ci = ci.to(tl.int64)
    i = ti * BLOCK_I + offs_p // BLOCK_J
    j = tj * BLOCK_J + offs_p % BLOCK_J
    mask_p = (i < Hin) & (j < Win)
    mask_ci = ci < Cin
    ky_lo, ky_hi = _kernel_range(i, kh, sh, oy, H)
    kx_lo, kx_hi = _kernel_range(j, kw, sw, ox, W)

    g_base = g_ptr + n * sgn
    w_ci = ci * (Cout * kh * kw)
    acc = tl.zeros((BLOCK_P, BLOCK_CI), dtype=tl.float32)
    for ky in range(0, kh):
        vy = mask_p & (ky >= ky_lo) & (ky < ky_hi)
        hh = i * sh + ky - oy
        for kx in range(0, kw):
            valid = vy & (kx >= kx_lo) & (kx < kx_hi)
            ww = j * sw + kx - ox
            g_pix = g_base + hh * sgh + ww * sgw
            w_tap = w_ptr + (ky * kw + kx) + w_ci
            for c0 in range(0, Cout, BLOCK_CO):
                co = c0 + offs_co
                mask_co = co < Cout
                a = tl.load(g_pix[:, None] + co[None, :] * sgc,
                            mask=valid[:, None] & mask_co[None, :], other=0.0)
                b = tl.load(w_tap[None, :] + co[:, None] * (kh * kw),
                            mask=mask_co[:, None] & mask_ci[None, :], other=0.0)
                acc = _mma(a, b, acc, IS_FP32, UPCAST)

    out_off = (n * Cin + ci[None, :]) * (Hin * Win) + (i * Win + j)[:, None]
    tl.store(gx_ptr + out_off, acc.to(gx_ptr.dtype.element_ty), mask=mask_p[:, None] & mask_ci[None, :])


@_autotune(_BWD_DW_CONFIGS, _KEY)
@_jit
def _upsample_crop_add_bwd_input_depthwise_kernel(
    g_ptr, w_ptr, gx_ptr,
    C, Hin, Win, kh, kw, H, W, sh, sw, oy, ox,
    sgn, sgc, sgh, sgw,
    Cin, Cout, TUNE_BUCKET,  # autotune key only (Cin == Cout == C)
    IDX64: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr,
):
    """Depthwise grad_x. grid = (N * C * tiles_i * tiles_j,):
    grad_x[n, c, i, j] = sum_{ky, kx in kernel_range} grad_out[n, c, i*sh+ky-oy, j*sw+kx-ox] * weight[c, c, ky, kx]."""
    n, c, i, j = _plane_tile(tl.program_id(0), C, Hin, Win, BLOCK_I, BLOCK_J, IDX64)
    mask_i = i < Hin
    mask_j = j < Win
    ky_lo, ky_hi = _kernel_range(i, kh, sh, oy, H)
    kx_lo, kx_hi = _kernel_range(j, kw, sw, ox, W)
    g_base = g_ptr + n * sgn + c * sgc
    w_base = w_ptr + c * ((C + 1) * kh * kw)
    acc = tl.zeros((BLOCK_I, BLOCK_J), dtype=tl.float32)
    for ky in range(0, kh):
        vy = mask_i & (ky >= ky_lo) & (ky < ky_hi)
        g_row = g_base + (i * sh + ky - oy) * sgh
        for kx in range(0, kw):
            vx = mask_j & (kx >= kx_lo) & (kx < kx_hi)
            wv = tl.load(w_base + ky * kw + kx).to(tl.float32)
            gv = tl.load(g_row[:, None] + ((j * sw + kx - ox) * sgw)[None, :],
                         mask=vy[:, None] & vx[None, :], other=0.0)
            acc += gv.to(tl.float32) * wv
    out_off = (n * C + c) * (Hin * Win) + i[:, None] * Win + j[None, :]
    tl.store(gx_ptr + out_off, acc.to(gx_ptr.dtype.element_ty), mask=mask_i[:, None] & mask_j[None, :])


@_autotune(_BWD_W_CONFIGS, _KEY)
@_jit
def _upsample_crop_add_bwd_weight_kernel(
    x_ptr, g_ptr, part_ptr,
    N, Cin, Cout, Hin, Win, kh, kw, H, W, sh, sw, oy, ox,
    sxn, sxc, sxh, sxw,
    sgn, sgc, sgh, sgw,
    chunk, TUNE_BUCKET,
    IS_FP32: tl.constexpr, UPCAST: tl.constexpr, IDX64: tl.constexpr,
    BLOCK_P: tl.constexpr, BLOCK_CI: tl.constexpr, BLOCK_CO: tl.constexpr,
):
    """Dense grad_w partials. grid = (kh*kw * ci_blocks * co_blocks, n_split).

    part[split, ci, co, ky, kx] = sum over the split's chunk of the flattened (n, i, j) axis
    of x[n, ci, i, j] * grad_out[n, co, i*sh + ky - oy, j*sw + kx - ox] (inside the window),
    a [Cin x P] @ [P x Cout] GEMM per kernel tap, fp32. The launcher sums the splits.
    """
    pid = tl.program_id(0)
    split = tl.program_id(1)
    ci_blocks = tl.cdiv(Cin, BLOCK_CI)
    co_blocks = tl.cdiv(Cout, BLOCK_CO)
    cob = pid % co_blocks
    rest = pid // co_blocks
    cib = rest % ci_blocks
    tap = rest // ci_blocks
    ky = tap // kw
    kx = tap % kw
    ci = cib * BLOCK_CI + tl.arange(0, BLOCK_CI)
    co = cob * BLOCK_CO + tl.arange(0, BLOCK_CO)
    offs_p = tl.arange(0, BLOCK_P)
    p_begin = split * chunk
    if IDX64:
        ci = ci.to(tl.int64)
        co = co.to(tl.int64)
        offs_p = offs_p.to(tl.int64)
        p_begin = p_begin.to(tl.int64)
    mask_ci = ci < Cin
    mask_co = co < Cout
    HWin = Hin * Win
    p_end = tl.minimum(p_begin + chunk, N * HWin)
    acc = tl.zeros((BLOCK_CI, BLOCK_CO), dtype=tl.float32)
    for p0 in range(0, chunk, BLOCK_P):
        p = p_begin + p0 + offs_p
        n = p // HWin
        r = p % HWin
        i = r // Win
        j = r % Win
        hh = i * sh + ky - oy
        ww = j * sw + kx - ox
        valid = (p < p_end) & (hh >= 0) & (hh < H) & (ww >= 0) & (ww < W)
        a = tl.load(x_ptr + (n * sxn + i * sxh + j * sxw)[None, :] + ci[:, None] * sxc,
                    mask=mask_ci[:, None] & valid[None, :], other=0.0)
        b = tl.load(g_ptr + (n * sgn + hh * sgh + ww * sgw)[:, None] + co[None, :] * sgc,
                    mask=valid[:, None] & mask_co[None, :], other=0.0)
        acc = _mma(a, b, acc, IS_FP32, UPCAST)
    # part is contiguous (n_split, Cin, Cout, kh, kw)
    khw = kh * kw
    base = split.to(tl.int64) * Cin * Cout * khw + tap
    off = base + (ci[:, None] * Cout + co[None, :]) * khw
    tl.store(part_ptr + off, acc, mask=mask_ci[:, None] & mask_co[None, :])
