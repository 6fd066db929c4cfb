"""Each kernel against a plain reference, forward and backward, in float64; then numerical safety.

The reference for a fused kernel is the same math composed from elementary Tensor ops (each
gradchecked in test_engine_ops.py), so its backward comes from autograd, not from a derivation:
the hand-written backward of the kernel must agree with it.
"""

import math

import numpy as np
import pytest

import engine
import engine.backend
from engine import Tensor
from kernels.adamw import adamw_update
from kernels.attention import attention_backward, attention_forward, causal_bias
from kernels.cross_entropy import cross_entropy_backward, cross_entropy_forward
from kernels.dropout import dropout_backward, dropout_forward, dropout_mask
from kernels.embedding import embedding_backward, embedding_forward
from kernels.gelu import gelu_backward, gelu_forward
from kernels.layernorm import layernorm_backward, layernorm_forward
from kernels.matmul import linear_backward, linear_forward, matmul_backward, matmul_forward
from kernels.softmax import log_softmax_backward, log_softmax_forward, softmax_backward, softmax_forward


def randn(*shape, seed=0):
    return engine.backend.get_xp().asarray(np.random.default_rng(seed).standard_normal(shape))


def host(array):
    return engine.backend.to_numpy(array)


def assert_close(actual, expected):
    np.testing.assert_allclose(host(actual), host(expected), rtol=1e-10, atol=1e-12)


def autograd(fn, dout, *arrays):
    """fn's output and the gradients of its inputs, from autograd over elementary Tensor ops."""
    inputs = [Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*inputs)
    out.backward(dout)
    return out.data, [x.grad for x in inputs]


def composed_softmax(x, axis):
    e = (x - x.max(axis=axis, keepdims=True).detach()).exp()  # the shift is a constant: softmax ignores it
    return e / e.sum(axis=axis, keepdims=True)


def composed_log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True).detach()
    return shifted - shifted.exp().sum(axis=axis, keepdims=True).log()


# --- matmul and linear -------------------------------------------------------------------------


def test_matmul(backend):
    a, b, dout = randn(2, 3, 4, seed=1), randn(2, 4, 5, seed=2), randn(2, 3, 5, seed=3)
    out, (da, db) = autograd(lambda x, y: (x.reshape(2, 3, 4, 1) * y.reshape(2, 1, 4, 5)).sum(axis=2), dout, a, b)
    assert_close(matmul_forward(a, b), out)
    got_da, got_db = matmul_backward(dout, a, b)
    assert_close(got_da, da)
    assert_close(got_db, db)


@pytest.mark.parametrize("with_bias", [True, False])
def test_linear(backend, with_bias):
    x, w, b, dout = randn(2, 3, 4, seed=1), randn(4, 5, seed=2), randn(5, seed=3), randn(2, 3, 5, seed=4)
    if not with_bias:
        b = b * 0  # the reference adds zeros
    out, (dx, dw, db) = autograd(lambda x, w, b: (x.reshape(2, 3, 4, 1) * w).sum(axis=2) + b, dout, x, w, b)
    assert_close(linear_forward(x, w, b if with_bias else None), out)
    got_dx, got_dw, got_db = linear_backward(dout, x, w, need_bias=with_bias)
    assert_close(got_dx, dx)
    assert_close(got_dw, dw)
    if with_bias:
        assert_close(got_db, db)
    else:
        assert got_db is None


# --- softmax family ----------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize(
    "composed, forward, backward",
    [
        (composed_softmax, softmax_forward, softmax_backward),
        (composed_log_softmax, log_softmax_forward, log_softmax_backward),
    ],
    ids=["softmax", "log_softmax"],
)
def test_softmax_family(backend, axis, composed, forward, backward):
    x, dy = randn(3, 4, 5, seed=1), randn(3, 4, 5, seed=2)
    out, (dx,) = autograd(lambda t: composed(t, axis), dy, x)
    y = forward(x, axis)
    assert_close(y, out)
    assert_close(backward(dy, y, axis), dx)


def test_cross_entropy(backend):
    xp = engine.backend.get_xp()
    logits, targets = randn(6, 4), xp.asarray([0, 3, 3, 1, 2, 3])
    rows = xp.arange(6)
    dloss = xp.asarray(0.7)
    out, (dlogits,) = autograd(lambda t: -composed_log_softmax(t, -1)[rows, targets].mean(), dloss, logits)
    loss, lse = cross_entropy_forward(logits, targets)
    assert_close(loss, out)
    np.testing.assert_allclose(host(lse)[:, 0], np.log(np.exp(host(logits)).sum(axis=-1)), rtol=1e-12)
    assert_close(cross_entropy_backward(dloss, logits, targets, lse), dlogits)


# --- layernorm, gelu, embedding, dropout -------------------------------------------------------


@pytest.mark.parametrize("affine", [True, False])
def test_layernorm(backend, affine):
    eps = 1e-5
    x, dy = randn(2, 3, 6, seed=1), randn(2, 3, 6, seed=2)
    w, b = (randn(6, seed=3), randn(6, seed=4)) if affine else (None, None)

    def composed(x, w, b):
        xc = x - x.mean(axis=-1, keepdims=True)
        xhat = xc / ((xc * xc).mean(axis=-1, keepdims=True) + eps).sqrt()
        return xhat * w + b

    xp = engine.backend.get_xp()  # without weight and bias the reference scales by 1 and adds 0
    out, (dx, dw, db) = autograd(composed, dy, x, w if affine else xp.ones(6), b if affine else xp.zeros(6))
    y, mean, rstd = layernorm_forward(x, w, b, eps)
    assert_close(y, out)
    assert mean.shape == rstd.shape == (2, 3, 1)
    np.testing.assert_allclose(host(mean), host(x).mean(axis=-1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(host(rstd), 1 / np.sqrt(host(x).var(axis=-1, keepdims=True) + eps), rtol=1e-12)
    got_dx, got_dw, got_db = layernorm_backward(dy, x, w, mean, rstd)
    assert_close(got_dx, dx)
    assert_close(got_dw, dw)
    assert_close(got_db, db)


def test_gelu(backend):
    x, dy = randn(4, 5, seed=1) * 3, randn(4, 5, seed=2)
    c = math.sqrt(2 / math.pi)
    out, (dx,) = autograd(lambda t: 0.5 * t * (1.0 + (c * (t + 0.044715 * t**3)).tanh()), dy, x)
    y, tanh_u = gelu_forward(x)
    assert_close(y, out)
    assert_close(gelu_backward(dy, x, tanh_u), dx)  # from the saved tanh u
    assert_close(gelu_backward(dy, x), dx)  # recomputing it
    # the tanh form stays within 1e-3 of the exact x * Phi(x)
    exact = np.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))))(host(x))
    np.testing.assert_allclose(host(y), exact, atol=1e-3)


@pytest.mark.parametrize("index_dtype", ["int64", "int32"])
def test_embedding(backend, index_dtype):
    xp = engine.backend.get_xp()
    idx = xp.asarray([[0, 2, 0], [3, 3, 0]], dtype=index_dtype)
    weight, dout = randn(5, 4, seed=1), randn(2, 3, 4, seed=2)
    one_hot = Tensor(xp.eye(5)[idx.reshape(-1)])  # (6, 5): a product with it picks rows
    out, (dweight,) = autograd(lambda w: (one_hot @ w).reshape(2, 3, 4), dout, weight)
    assert_close(embedding_forward(idx, weight), out)
    assert_close(embedding_backward(dout, idx, 5), dweight)


def test_dropout(backend):
    xp = engine.backend.get_xp()
    uniform = xp.random.default_rng(0).random((100, 100))
    mask = dropout_mask(uniform, 0.25)
    values = host(mask)
    assert set(np.unique(values)) == {0.0, 1 / 0.75}
    assert 0.22 < (values == 0).mean() < 0.28
    np.testing.assert_array_equal(values == 0, host(uniform) < 0.25)  # dropped exactly where u < p
    x, dy = randn(100, 100, seed=1), randn(100, 100, seed=2)
    assert_close(dropout_forward(x, mask), host(x) * values)
    assert_close(dropout_backward(dy, mask), host(dy) * values)


# --- attention ---------------------------------------------------------------------------------


def test_causal_bias_is_bottom_right_aligned(backend):
    bias = host(causal_bias(engine.backend.get_xp(), 2, 4, np.dtype(np.float32)))
    assert bias.dtype == np.float32
    np.testing.assert_array_equal(bias, [[0, 0, 0, -np.inf], [0, 0, 0, 0]])


@pytest.mark.parametrize("is_causal", [True, False])
@pytest.mark.parametrize("t_q, t_k", [(4, 4), (2, 4), (1, 4)])
@pytest.mark.parametrize("with_dropout", [False, True])
def test_attention(backend, is_causal, t_q, t_k, with_dropout):
    xp = engine.backend.get_xp()
    q, k, v = randn(2, 2, t_q, 3, seed=1), randn(2, 2, t_k, 3, seed=2), randn(2, 2, t_k, 3, seed=3)
    dout = randn(2, 2, t_q, 3, seed=4)
    drop = dropout_mask(xp.random.default_rng(0).random((2, 2, t_q, t_k)), 0.3) if with_dropout else None
    hidden = xp.triu(xp.ones((t_q, t_k), dtype=bool), k=1 + t_k - t_q if is_causal else t_k)  # True: may not see

    def composed(q, k, v):
        att = composed_softmax((q @ k.transpose(-1, -2) * (1 / math.sqrt(3))).masked_fill(hidden, -math.inf), -1)
        return (att * drop if with_dropout else att) @ v

    out, (dq, dk, dv) = autograd(composed, dout, q, k, v)
    got, att = attention_forward(q, k, v, is_causal, drop)
    assert_close(got, out)
    assert att.shape == (2, 2, t_q, t_k)
    for got_grad, grad in zip(attention_backward(dout, q, k, v, att, drop), (dq, dk, dv)):
        assert_close(got_grad, grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_attention_row_far_below_its_heads_max_is_still_exact(backend, dtype):
    """The forward shifts scores by each head's max; a row 300 below it would underflow to 0/0
    that way, so it must fall back to its own max and match the plain row-by-row softmax."""
    xp = engine.backend.get_xp()
    q = xp.asarray([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=dtype)  # (1, 1, 2, 2)
    k = xp.asarray([[[[0.0, 0.0], [0.0, 600.0]]]], dtype=dtype)  # q1.k1 / sqrt(2) is about 424
    v = randn(1, 1, 2, 2, seed=3).astype(dtype)
    out, att = attention_forward(q, k, v, is_causal=False)
    scores = host(q).astype(np.float64) @ host(k).astype(np.float64).swapaxes(-1, -2) / math.sqrt(2)
    want = np.exp(scores - scores.max(axis=-1, keepdims=True))
    want /= want.sum(axis=-1, keepdims=True)
    assert np.all(np.isfinite(host(att)))
    np.testing.assert_allclose(host(att), want, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(host(out), want @ host(v), rtol=1e-6)


def test_attention_outputs_keep_the_heads_layout_of_their_inputs(backend):
    """q, k, v cut from one (B, T, 3, H, hd) array: the output and gradients come back laid out as
    (B, T, H, hd) in memory, so the model's transpose back to (B, T, C) is a view, not a copy."""
    qkv = randn(2, 5, 3, 2, 4, seed=1)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # (B, H, T, hd) views
    out, att = attention_forward(q, k, v)
    grads = attention_backward(randn(*out.shape, seed=2), q, k, v, att)
    for array in (out, *grads):
        assert array.transpose(0, 2, 1, 3).flags.c_contiguous


def test_short_query_sees_what_the_last_rows_of_a_full_query_see(backend):
    """A KV-cache step: the last t_q queries attend exactly as they do inside the full sequence."""
    q, k, v = randn(1, 2, 5, 3, seed=1), randn(1, 2, 5, 3, seed=2), randn(1, 2, 5, 3, seed=3)
    full, _ = attention_forward(q, k, v, is_causal=True)
    for t_q in (1, 2):
        tail, _ = attention_forward(q[:, :, -t_q:], k, v, is_causal=True)
        assert_close(tail, full[:, :, -t_q:])


# --- AdamW -------------------------------------------------------------------------------------


def test_adamw_matches_the_formula(backend):
    lr, beta1, beta2, eps, weight_decay = 1e-2, 0.9, 0.95, 1e-8, 0.1
    param = randn(3, 4, seed=1)
    exp_avg, exp_avg_sq = param * 0, param * 0
    p, m, v = host(param).copy(), np.zeros((3, 4)), np.zeros((3, 4))
    for step in (1, 2, 3):
        grad = randn(3, 4, seed=10 + step)
        adamw_update(
            param,
            grad,
            exp_avg,
            exp_avg_sq,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            weight_decay=weight_decay,
            step=step,
        )
        g = host(grad)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
        p = p - lr * weight_decay * p - lr * m_hat / (np.sqrt(v_hat) + eps)
    assert_close(param, p)
    assert_close(exp_avg, m)
    assert_close(exp_avg_sq, v)


# --- numerical safety --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_stay_finite(backend, dtype):
    xp = engine.backend.get_xp()
    logits = xp.asarray([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]], dtype=dtype)
    probs = host(softmax_forward(logits))
    np.testing.assert_allclose(probs, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    log_probs = host(log_softmax_forward(logits))
    np.testing.assert_allclose(log_probs, [[0, -1e4, -2e4], [-math.log(3)] * 3], rtol=1e-6)
    targets = xp.asarray([2, 0])
    loss, lse = cross_entropy_forward(logits, targets)
    assert np.isfinite(host(lse)).all()
    assert float(loss) == pytest.approx((2e4 + math.log(3)) / 2, rel=1e-6)  # a finite 2e4, never inf
    dlogits = cross_entropy_backward(xp.asarray(1.0, dtype=dtype), logits, targets, lse)
    assert np.isfinite(host(dlogits)).all()
