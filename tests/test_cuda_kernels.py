"""The CUDA kernels (kernels/cuda) against their xp references, run on the same cupy arrays.

Every output a wrapper allocates starts as NaN (the autouse `poison` fixture), so an element that
no thread writes fails the comparison. Errors are relative in the L2 norm. Skipped where CuPy is
missing or no GPU is visible.
"""

import zlib

import numpy as np
import pytest

from helpers import assert_close, normal
from tinygrad_gpt import engine
from tinygrad_gpt.kernels import adamw, attention, cross_entropy, cuda, dropout, gelu, layernorm, softmax

cupy = pytest.importorskip("cupy", reason="the CUDA kernels need CuPy")


def _gpu_count():
    try:
        return cupy.cuda.runtime.getDeviceCount()
    except RuntimeError:  # CuPy installed, but no driver or no device
        return 0


pytestmark = pytest.mark.skipif(_gpu_count() == 0, reason="no CUDA GPU visible")

RTOL = {np.float32: 1e-5, np.float64: 1e-12}
ROWS = [1, 7, 1000]
WIDTHS = [1, 65, 384, 1000]


@pytest.fixture(autouse=True)
def on_cupy():
    """Test arrays (helpers.normal) are made on the GPU."""
    previous = engine.backend.name()
    engine.set_backend("cupy")
    yield
    engine.set_backend(previous)


@pytest.fixture(autouse=True)
def poison(monkeypatch):
    monkeypatch.setattr(cuda, "_empty", lambda shape, dtype: cupy.full(shape, cupy.nan, dtype=dtype))


@pytest.fixture
def rng(request):
    """Fresh random inputs for each test, reproducible from the test's id."""
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


def assert_all_close(got, want, rtol):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_close(g, w, rtol)


# --- layernorm ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("rows", ROWS)
def test_layernorm(rng, rows, width, dtype):
    x = normal(rows, width, seed=rng, dtype=dtype, scale=3.0) + 1.0
    weight, bias = normal(width, seed=rng, dtype=dtype), normal(width, seed=rng, dtype=dtype)
    want = layernorm.layernorm_forward(x, weight, bias)
    assert_all_close(cuda.layernorm_forward(x, weight, bias), want, RTOL[dtype])
    dy = normal(*x.shape, seed=rng, dtype=dtype)
    _, mean, rstd = want
    dx, dweight, dbias = cuda.layernorm_backward(dy, x, weight, mean, rstd)
    want_dx, want_dweight, want_dbias = layernorm.layernorm_backward(dy, x, weight, mean, rstd)
    # dx = rstd * (g - mean(g) - ...) with g = dy * weight: exactly 0 for width 1, where g cancels
    assert_close(dx, want_dx, RTOL[dtype], floor=cupy.linalg.norm(rstd * dy * weight))
    assert_close(dweight, want_dweight, RTOL[dtype])
    assert_close(dbias, want_dbias, RTOL[dtype])


def test_layernorm_without_affine_on_3d_input(rng):
    x = normal(3, 5, 65, seed=rng, dtype=np.float32)
    want = layernorm.layernorm_forward(x, None, None)
    assert_all_close(cuda.layernorm_forward(x, None, None), want, 1e-5)
    dy = normal(*x.shape, seed=rng, dtype=np.float32)
    assert_all_close(
        cuda.layernorm_backward(dy, x, None, want[1], want[2]),
        layernorm.layernorm_backward(dy, x, None, want[1], want[2]),
        1e-5,
    )


# --- softmax and log-softmax --------------------------------------------------------------------


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1.0), (np.float32, 1e4), (np.float64, 1.0)])
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax(rng, name, rows, width, dtype, scale):
    x = normal(rows, width, seed=rng, dtype=dtype, scale=scale)
    forward, backward = f"{name}_forward", f"{name}_backward"
    y = getattr(softmax, forward)(x)
    assert_close(getattr(cuda, forward)(x), y, RTOL[dtype])
    dy = normal(*x.shape, seed=rng, dtype=dtype)
    # the terms that cancel: y * dy and y * sum(dy * y) (softmax), dy and exp(y) * sum(dy) (log)
    floor = cupy.linalg.norm(dy if name == "log_softmax" else dy * y)
    assert_close(getattr(cuda, backward)(dy, y), getattr(softmax, backward)(dy, y), RTOL[dtype], floor)


def test_softmax_over_another_axis_falls_back_to_the_reference(rng):
    x = normal(4, 7, 3, seed=rng, dtype=np.float32)
    assert_close(cuda.softmax_forward(x, axis=1), softmax.softmax_forward(x, axis=1), 0.0)


# --- cross-entropy ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1.0), (np.float32, 1e4), (np.float64, 1.0)])
@pytest.mark.parametrize("classes", WIDTHS)
@pytest.mark.parametrize("rows", ROWS)
def test_cross_entropy(rng, rows, classes, dtype, scale):
    logits = normal(rows, classes, seed=rng, dtype=dtype, scale=scale)
    targets = cupy.asarray(rng.integers(0, classes, rows))
    loss, lse = cross_entropy.cross_entropy_forward(logits, targets)
    got_loss, got_lse = cuda.cross_entropy_forward(logits, targets)
    assert got_loss.shape == ()
    assert_close(got_lse, lse, RTOL[dtype])
    assert abs(float(got_loss) - float(loss)) <= RTOL[dtype] * max(abs(float(loss)), float(cupy.abs(lse).max()))
    dloss = cupy.asarray(rng.standard_normal(), dtype=dtype)  # 0-d, as the engine passes it
    assert_close(
        cuda.cross_entropy_backward(dloss, logits, targets, lse),
        cross_entropy.cross_entropy_backward(dloss, logits, targets, lse),
        RTOL[dtype],
    )


def test_cross_entropy_takes_int32_targets_and_a_python_float_dloss(rng):
    logits = normal(7, 65, seed=rng, dtype=np.float32)
    targets = cupy.asarray(rng.integers(0, 65, 7), dtype=cupy.int32)
    _, lse = cross_entropy.cross_entropy_forward(logits, targets)
    assert_close(cuda.cross_entropy_forward(logits, targets)[1], lse, 1e-5)
    assert_close(
        cuda.cross_entropy_backward(0.5, logits, targets, lse),
        cross_entropy.cross_entropy_backward(0.5, logits, targets, lse),
        1e-5,
    )


def test_cross_entropy_target_out_of_range_gives_nan_loss(rng):
    logits = normal(3, 65, seed=rng, dtype=np.float32)
    loss, _ = cuda.cross_entropy_forward(logits, cupy.asarray([0, 65, 1]))
    assert np.isnan(float(loss))


# --- GELU ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (7,), (1000,), (7, 65), (257, 1536)])
def test_gelu(rng, shape, dtype):
    x = normal(*shape, seed=rng, dtype=dtype, scale=3.0)
    (y, saved), (want, tanh_u) = cuda.gelu_forward(x), gelu.gelu_forward(x)
    assert saved is None  # the CUDA backward recomputes tanh u
    assert_close(y, want, RTOL[dtype])
    dy = normal(*shape, seed=rng, dtype=dtype)
    assert_close(cuda.gelu_backward(dy, x, saved), gelu.gelu_backward(dy, x, tanh_u), RTOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (7,), (257, 65), (64, 6, 37, 37)])
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_dropout_mask(rng, shape, dtype, p):
    uniform = cupy.asarray(rng.random(shape).astype(dtype))
    got, want = cuda.dropout_mask(uniform, p), dropout.dropout_mask(uniform, p)
    assert got.dtype == want.dtype and not cupy.isnan(got).any()
    assert cupy.array_equal(got, want)  # the same draws give the very same mask


def test_gelu_on_a_strided_view(rng):
    x = normal(64, 130, seed=rng, dtype=np.float32)[:, ::2]
    dy = normal(64, 65, seed=rng, dtype=np.float32)
    assert_close(cuda.gelu_forward(x)[0], gelu.gelu_forward(x)[0], 1e-5)
    assert_close(cuda.gelu_backward(dy, x), gelu.gelu_backward(dy, x, gelu.gelu_forward(x)[1]), 1e-5)


# --- AdamW --------------------------------------------------------------------------------------

HYPER = {"lr": 0.1, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8}  # a large lr makes update errors visible


def adam_state(rng, shape, dtype):
    return (
        normal(*shape, seed=rng, dtype=dtype),
        normal(*shape, seed=rng, dtype=dtype, scale=0.1),
        cupy.abs(normal(*shape, seed=rng, dtype=dtype, scale=0.1)),
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("size", [1, 7, 1000, 65 * 384])
def test_adamw(rng, size, weight_decay, dtype):
    mine = adam_state(rng, (size,), dtype)
    ref = tuple(a.copy() for a in mine)
    for step in (1, 2, 3):
        grad = normal(size, seed=rng, dtype=dtype)
        cuda.adamw_update(mine[0], grad, mine[1], mine[2], weight_decay=weight_decay, step=step, **HYPER)
        adamw.adamw_update(ref[0], grad, ref[1], ref[2], weight_decay=weight_decay, step=step, **HYPER)
    assert_all_close(mine, ref, RTOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adamw_multi_matches_one_update_per_array(rng, dtype):
    shapes = [(1,), (7,), (65, 384), (1000,), (384, 3)]
    mine = [adam_state(rng, shape, dtype) for shape in shapes]
    ref = [tuple(a.copy() for a in state) for state in mine]
    for step in (1, 2):
        grads = [normal(*shape, seed=rng, dtype=dtype) for shape in shapes]
        params, exp_avgs, exp_avg_sqs = zip(*mine)
        cuda.adamw_update_multi(params, grads, exp_avgs, exp_avg_sqs, weight_decay=0.1, step=step, **HYPER)
        for (p, m, v), g in zip(ref, grads):
            adamw.adamw_update(p, g, m, v, weight_decay=0.1, step=step, **HYPER)
    for got, want in zip(mine, ref):
        assert_all_close(got, want, RTOL[dtype])


# --- attention ----------------------------------------------------------------------------------

# (B, H, Tq, Tk, hs); Tq < Tk is a KV-cache step. hs picks 1, 2 or 4 lanes per row, padded or not.
FLASH_CASES = [
    (2, 3, 5, 5, 64),
    (2, 2, 64, 64, 32),
    (1, 2, 257, 257, 64),
    (2, 1, 257, 257, 128),
    (1, 2, 1, 257, 64),
    (1, 2, 5, 64, 48),
    (2, 1, 64, 100, 100),
]


def case_id(case):
    return "-".join(map(str, case))


def qkv(rng, case, dtype=np.float32, scale=1.0):
    B, H, Tq, Tk, hs = case
    return (
        normal(B, H, Tq, hs, seed=rng, dtype=dtype, scale=scale),
        normal(B, H, Tk, hs, seed=rng, dtype=dtype),
        normal(B, H, Tk, hs, seed=rng, dtype=dtype),
    )


def check_attention(rng, q, k, v, is_causal, mask, flash, rtol):
    out, saved = cuda.attention_forward(q, k, v, is_causal, mask)
    assert isinstance(saved, cuda.FlashSaved) == flash
    want_out, att = attention.attention_forward(q, k, v, is_causal, mask)
    assert_close(out, want_out, rtol)
    if not flash:
        assert_close(saved, att, rtol)
    dout = normal(*out.shape, seed=rng, dtype=out.dtype)
    assert_all_close(
        cuda.attention_backward(dout, q, k, v, saved, mask),
        attention.attention_backward(dout, q, k, v, att, mask),
        rtol,
    )


@pytest.mark.parametrize("is_causal", [True, False])
@pytest.mark.parametrize("case", FLASH_CASES, ids=case_id)
def test_flash_attention(rng, case, is_causal):
    check_attention(rng, *qkv(rng, case), is_causal, None, flash=True, rtol=1e-5)


def test_flash_attention_with_one_key(rng):
    # T = 1: the softmax is 1, so out = v, dv = dout, and dq = dk = 0 (up to rounding of dp - delta)
    q, k, v = qkv(rng, (2, 3, 1, 1, 16))
    out, saved = cuda.attention_forward(q, k, v, True)
    assert_close(out, v, 1e-6)
    dout = normal(*out.shape, seed=rng, dtype=np.float32)
    dq, dk, dv = cuda.attention_backward(dout, q, k, v, saved)
    assert_close(dv, dout, 1e-6)
    assert float(cupy.abs(dq).max()) < 1e-5 and float(cupy.abs(dk).max()) < 1e-5


def test_flash_attention_with_large_scores(rng):
    # scores in the hundreds: rows are nearly one-hot, so rounding in s moves p more
    check_attention(rng, *qkv(rng, (2, 2, 64, 64, 64), scale=30.0), True, None, flash=True, rtol=1e-4)


def test_flash_attention_reads_strided_views_of_a_qkv_projection(rng):
    B, T, H, hs = 2, 65, 6, 64
    C = H * hs
    proj = normal(B, T, 3 * C, seed=rng, dtype=np.float32)
    q, k, v = (proj[:, :, i * C : (i + 1) * C].reshape(B, T, H, hs).transpose(0, 2, 1, 3) for i in range(3))
    assert not q.flags.c_contiguous
    check_attention(rng, q, k, v, True, None, flash=True, rtol=1e-5)


# The fused path: with a dropout mask, in float64, and for head dims over 128.
@pytest.mark.parametrize("is_causal", [True, False])
@pytest.mark.parametrize(
    "dtype, use_mask, case",
    [
        (np.float32, True, (2, 3, 5, 5, 16)),
        (np.float32, True, (1, 2, 257, 257, 64)),
        (np.float32, True, (1, 2, 1, 64, 32)),
        (np.float64, False, (2, 2, 64, 64, 32)),
        (np.float64, True, (1, 2, 5, 64, 48)),
        (np.float32, False, (2, 1, 64, 64, 160)),
    ],
    ids=lambda p: case_id(p) if isinstance(p, tuple) else None,
)
def test_fused_attention(rng, dtype, use_mask, case, is_causal):
    q, k, v = qkv(rng, case, dtype)
    B, H, Tq, Tk, _ = case
    mask = None
    if use_mask:
        mask = cupy.asarray(((rng.random((B, H, Tq, Tk)) >= 0.1) / 0.9).astype(dtype))
    check_attention(rng, q, k, v, is_causal, mask, flash=False, rtol=RTOL[dtype])
