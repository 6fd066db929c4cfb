"""The kernel ladder (kernels/rungs.py): plain kernels against autograd, fast ones against plain.

1. Each plain kernel against the same math composed from elementary Tensor ops (each gradchecked
   in test_engine_ops.py), in float64: the reference's backward comes from autograd, not from a
   derivation, so the hand-written backward must agree with it.
2. Each fast kernel and each compiled CPU kernel (kernels/cpu/) against its plain twin, at
   awkward sizes (1, odd, prime), in float32 and float64, every output of the forward and the
   backward; no kernel writes into its inputs.
3. What the fast kernels promise beyond the math (the softmax fallback, memory layouts), and
   numerical safety on every rung.
"""

import math

import numpy as np
import pytest

from helpers import assert_close, host, normal, on_backend
from tinygrad_gpt import engine
from tinygrad_gpt.engine import Tensor
from tinygrad_gpt.kernels import attention, cpu, cross_entropy, dropout, embedding, gelu, layernorm, matmul, softmax
from tinygrad_gpt.kernels.adamw import adamw_update
from tinygrad_gpt.kernels.cpu.gelu import tanh32
from tinygrad_gpt.kernels.rungs import CPU, FAST, PLAIN

RTOL = {np.float32: 1e-5, np.float64: 1e-12}


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


def exact(got, want):
    assert_close(got, want, 1e-12)


# --- 1. plain kernels against autograd ----------------------------------------------------------


def test_matmul(backend):
    a, b, dout = normal(2, 3, 4, seed=1), normal(2, 4, 5, seed=2), normal(2, 3, 5, seed=3)
    out, (da, db) = autograd(lambda x, y: (x.reshape(2, 3, 4, 1) * y.reshape(2, 1, 4, 5)).sum(axis=2), dout, a, b)
    exact(matmul.matmul_forward(a, b), out)
    got_da, got_db = matmul.matmul_backward(dout, a, b)
    exact(got_da, da)
    exact(got_db, db)


@pytest.mark.parametrize("with_bias", [True, False])
def test_linear(backend, with_bias):
    x, w, b, dout = normal(2, 3, 4, seed=1), normal(4, 5, seed=2), normal(5, seed=3), normal(2, 3, 5, seed=4)
    if not with_bias:
        b = b * 0  # the reference adds zeros
    out, (dx, dw, db) = autograd(lambda x, w, b: (x.reshape(2, 3, 4, 1) * w).sum(axis=2) + b, dout, x, w, b)
    exact(matmul.linear_forward(x, w, b if with_bias else None), out)
    got_dx, got_dw, got_db = matmul.linear_backward(dout, x, w, has_bias=with_bias)
    exact(got_dx, dx)
    exact(got_dw, dw)
    if with_bias:
        exact(got_db, db)
    else:
        assert got_db is None


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize(
    "composed, forward, backward",
    [
        (composed_softmax, softmax.softmax_forward, softmax.softmax_backward),
        (composed_log_softmax, softmax.log_softmax_forward, softmax.log_softmax_backward),
    ],
    ids=["softmax", "log_softmax"],
)
def test_softmax_family(backend, axis, composed, forward, backward):
    x, dout = normal(3, 4, 5, seed=1), normal(3, 4, 5, seed=2)
    out, (dx,) = autograd(lambda t: composed(t, axis), dout, x)
    y = forward(x, axis)
    exact(y, out)
    exact(backward(dout, y, axis), dx)


def test_cross_entropy(backend):
    xp = engine.backend.get_xp()
    logits, targets = normal(6, 4), xp.asarray([0, 3, 3, 1, 2, 3])
    rows = xp.arange(6)
    dout = xp.asarray(0.7)
    out, (dlogits,) = autograd(lambda t: -composed_log_softmax(t, -1)[rows, targets].mean(), dout, logits)
    loss, lse = cross_entropy.cross_entropy_forward(logits, targets)
    exact(loss, out)
    np.testing.assert_allclose(host(lse)[:, 0], np.log(np.exp(host(logits)).sum(axis=-1)), rtol=1e-12)
    exact(cross_entropy.cross_entropy_backward(dout, logits, targets, lse), dlogits)


@pytest.mark.parametrize("affine", [True, False])
def test_layernorm(backend, affine):
    eps = 1e-5
    x, dout = normal(2, 3, 6, seed=1), normal(2, 3, 6, seed=2)
    w, b = (normal(6, seed=3), normal(6, seed=4)) if affine else (None, None)

    def composed(x, w, b):
        xc = x - x.mean(axis=-1, keepdims=True)
        norm = xc / ((xc * xc).mean(axis=-1, keepdims=True) + eps).sqrt()
        return norm * w + b

    xp = engine.backend.get_xp()  # without weight and bias the reference scales by 1 and adds 0
    out, (dx, dw, db) = autograd(composed, dout, x, w if affine else xp.ones(6), b if affine else xp.zeros(6))
    y, mean, rstd = layernorm.layernorm_forward(x, w, b, eps)
    exact(y, out)
    assert mean.shape == rstd.shape == (2, 3, 1)
    np.testing.assert_allclose(host(mean), host(x).mean(axis=-1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(host(rstd), 1 / np.sqrt(host(x).var(axis=-1, keepdims=True) + eps), rtol=1e-12)
    got_dx, got_dw, got_db = layernorm.layernorm_backward(dout, x, w, mean, rstd)
    exact(got_dx, dx)
    exact(got_dw, dw)
    exact(got_db, db)


def test_gelu(backend):
    x, dout = normal(4, 5, seed=1, scale=3.0), normal(4, 5, seed=2)
    c = math.sqrt(2 / math.pi)
    out, (dx,) = autograd(lambda t: 0.5 * t * (1.0 + (c * (t + 0.044715 * t**3)).tanh()), dout, x)
    y, tanh_u = gelu.gelu_forward(x)
    exact(y, out)
    exact(gelu.gelu_backward(dout, x, tanh_u), dx)
    # the tanh form stays within 1e-3 of the exact x * Phi(x)
    erf_form = np.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))))(host(x))
    np.testing.assert_allclose(host(y), erf_form, atol=1e-3)


@pytest.mark.parametrize("index_dtype", ["int64", "int32"])
def test_embedding(backend, index_dtype):
    xp = engine.backend.get_xp()
    idx = xp.asarray([[0, 2, 0], [3, 3, 0]], dtype=index_dtype)
    weight, dout = normal(5, 4, seed=1), normal(2, 3, 4, seed=2)
    one_hot = Tensor(xp.eye(5)[idx.reshape(-1)])  # (6, 5): a product with it picks rows
    out, (dweight,) = autograd(lambda w: (one_hot @ w).reshape(2, 3, 4), dout, weight)
    exact(embedding.embedding_forward(idx, weight), out)
    exact(embedding.embedding_backward(dout, idx, 5), dweight)


def test_dropout(backend):
    xp = engine.backend.get_xp()
    uniform = xp.random.default_rng(0).random((100, 100))
    mask = dropout.dropout_mask(uniform, 0.25)
    values = host(mask)
    assert set(np.unique(values)) == {0.0, 1 / 0.75}
    assert 0.22 < (values == 0).mean() < 0.28
    np.testing.assert_array_equal(values == 0, host(uniform) < 0.25)  # dropped exactly where u < p
    x, dout = normal(100, 100, seed=1), normal(100, 100, seed=2)
    exact(dropout.dropout_forward(x, mask), on_backend(host(x) * values))
    exact(dropout.dropout_backward(dout, mask), on_backend(host(dout) * values))


def test_causal_mask_is_bottom_right_aligned(backend):
    xp = engine.backend.get_xp()
    np.testing.assert_array_equal(host(attention.causal_mask(xp, 2, 4)), [[0, 0, 0, 1], [0, 0, 0, 0]])
    bias = host(attention.causal_bias(xp, 2, 4, np.dtype(np.float32)))
    assert bias.dtype == np.float32
    np.testing.assert_array_equal(bias, [[0, 0, 0, -np.inf], [0, 0, 0, 0]])


@pytest.mark.parametrize("is_causal", [True, False])
@pytest.mark.parametrize("t_q, t_k", [(4, 4), (2, 4), (1, 4)])
@pytest.mark.parametrize("with_dropout", [False, True])
def test_attention(backend, is_causal, t_q, t_k, with_dropout):
    xp = engine.backend.get_xp()
    q, k, v = normal(2, 2, t_q, 3, seed=1), normal(2, 2, t_k, 3, seed=2), normal(2, 2, t_k, 3, seed=3)
    dout = normal(2, 2, t_q, 3, seed=4)
    drop = dropout.dropout_mask(xp.random.default_rng(0).random((2, 2, t_q, t_k)), 0.3) if with_dropout else None
    hidden = xp.triu(xp.ones((t_q, t_k), dtype=bool), k=1 + t_k - t_q if is_causal else t_k)  # True: may not see

    def composed(q, k, v):
        att = composed_softmax((q @ k.transpose(-1, -2) * (1 / math.sqrt(3))).masked_fill(hidden, -math.inf), -1)
        return (att * drop if with_dropout else att) @ v

    out, (dq, dk, dv) = autograd(composed, dout, q, k, v)
    got, att = attention.attention_forward(q, k, v, is_causal, drop)
    exact(got, out)
    assert att.shape == (2, 2, t_q, t_k)
    for got_grad, grad in zip(attention.attention_backward(dout, q, k, v, att, drop), (dq, dk, dv)):
        exact(got_grad, grad)


def test_adamw_matches_the_formula(backend):
    lr, beta1, beta2, eps, weight_decay = 1e-2, 0.9, 0.95, 1e-8, 0.1
    param = normal(3, 4, seed=1)
    exp_avg, exp_avg_sq = param * 0, param * 0
    p, m, v = host(param).copy(), np.zeros((3, 4)), np.zeros((3, 4))
    for step in (1, 2, 3):
        grad = normal(3, 4, seed=10 + step)
        hyper = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, step=step)
        adamw_update(param, grad, exp_avg, exp_avg_sq, **hyper)
        g = host(grad)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat, v_hat = m / (1 - beta1**step), v / (1 - beta2**step)
        p = p - lr * weight_decay * p - lr * m_hat / (np.sqrt(v_hat) + eps)
    exact(param, on_backend(p))
    exact(exp_avg, on_backend(m))
    exact(exp_avg_sq, on_backend(v))


# --- 2. fast and cpu kernels against plain ------------------------------------------------------
# A story per kernel: make its inputs from a seed, run the forward and the backward of one rung,
# return every array it produced. The same story on PLAIN and on FAST (and on CPU) must agree.


def _linear_story(k, dtype, shape, transposed=False):
    """transposed: the weight a transposed view, as the tied head's wte.T."""
    *lead, n_in = shape
    w = normal(7, n_in, seed=2, dtype=dtype).T if transposed else normal(n_in, 7, seed=2, dtype=dtype)
    x, b = normal(*shape, seed=1, dtype=dtype), normal(7, seed=3, dtype=dtype)
    dout = normal(*lead, 7, seed=4, dtype=dtype)
    return [k.linear_forward(x, w, b), *k.linear_backward(dout, x, w, True)], (x, w, b, dout)


def _layernorm_story(k, dtype, shape, affine=True):
    x = normal(*shape, seed=1, scale=3.0, dtype=dtype) + 1
    w = normal(shape[-1], seed=2, dtype=dtype) if affine else None
    b = normal(shape[-1], seed=3, dtype=dtype) if affine else None
    dout = normal(*shape, seed=4, dtype=dtype)
    out, mean, rstd = k.layernorm_forward(x, w, b, 1e-5)
    return [out, mean, rstd, *k.layernorm_backward(dout, x, w, mean, rstd)], (x, dout)


def _gelu_story(k, dtype, shape):
    x, dout = normal(*shape, seed=1, scale=3.0, dtype=dtype), normal(*shape, seed=2, dtype=dtype)
    out, saved = k.gelu_forward(x)
    return [out, k.gelu_backward(dout, x, saved)], (x, dout)


def _cross_entropy_story(k, dtype, shape):
    logits = normal(*shape, seed=1, scale=3.0, dtype=dtype)
    targets = on_backend(np.random.default_rng(2).integers(0, shape[-1], shape[0]))
    dout = on_backend(np.asarray(0.7, dtype=dtype))
    loss, saved = k.cross_entropy_forward(logits, targets)  # what it saves is the rung's own
    return [loss, k.cross_entropy_backward(dout, logits, targets, saved)], (logits, targets, dout)


def _embedding_story(k, dtype, shape):
    *lead, d = shape
    idx = on_backend(np.random.default_rng(1).integers(0, 5, lead))  # repeats certain
    weight, dout = normal(5, d, seed=2, dtype=dtype), normal(*shape, seed=3, dtype=dtype)
    return [k.embedding_forward(idx, weight), k.embedding_backward(dout, idx, 5)], (idx, weight, dout)


def _attention_story(k, dtype, shape, is_causal=True, p=0.0):
    B, nh, t_q, t_k, hs = shape
    q, kk, v = (normal(B, nh, t, hs, seed=s, dtype=dtype) for s, t in ((1, t_q), (2, t_k), (3, t_k)))
    dout = normal(B, nh, t_q, hs, seed=4, dtype=dtype)
    mask = None
    if p:
        mask = dropout.dropout_mask(on_backend(np.random.default_rng(5).random((B, nh, t_q, t_k)).astype(dtype)), p)
    out, saved = k.attention_forward(q, kk, v, is_causal, mask)
    return [out, *k.attention_backward(dout, q, kk, v, saved, mask)], (q, kk, v, dout)


def _adamw_story(k, dtype, shape):
    params = [normal(*shape, seed=1, dtype=dtype), normal(shape[-1], seed=2, dtype=dtype)]
    moments = [[a * 0 for a in params] for _ in range(2)]
    for step in (1, 2, 3):
        grads = [normal(*a.shape, seed=10 * step + i, dtype=dtype) for i, a in enumerate(params)]
        k.adamw_update_multi(
            params, grads, *moments, lr=0.1, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, step=step
        )
    return [*params, *moments[0], *moments[1]], ()


def _clipping_story(k, dtype, shape):
    """A matrix and a transposed one (a view: not C-contiguous) scaled by a 0-d factor below 1,
    then by one of exactly 1 (which changes nothing)."""
    arrays = [normal(*shape, seed=1, dtype=dtype), normal(*shape[::-1], seed=2, dtype=dtype).T]
    for factor in (0.375, 1.0):
        k.scale_multi(arrays, on_backend(np.asarray(factor, dtype=dtype)))
    return arrays, ()


def _cases():
    sizes = [(1, 1), (3, 7), (2, 5, 13), (17, 65)]
    yield "adamw", _adamw_story, (129, 257), {}  # more than one of the fast one's blocks
    attention_shapes = [(1, 1, 1, 1, 1), (2, 3, 5, 5, 7), (1, 2, 3, 9, 4), (2, 1, 17, 17, 13)]
    for shape in sizes:
        yield "linear", _linear_story, shape, {}
        yield "layernorm", _layernorm_story, shape, {}
        yield "gelu", _gelu_story, shape, {}
        yield "embedding", _embedding_story, shape, {}
        yield "adamw", _adamw_story, shape, {}
        yield "clipping", _clipping_story, shape, {}
    yield "layernorm without affine", _layernorm_story, (3, 7), {"affine": False}
    yield "linear", _linear_story, (2, 5, 13), {"transposed": True}
    for shape in [(1, 1), (3, 7), (17, 65)]:
        yield "cross_entropy", _cross_entropy_story, shape, {}
    for shape in attention_shapes:
        for is_causal in (True, False):
            for p in (0.0, 0.3):
                yield "attention", _attention_story, shape, {"is_causal": is_causal, "p": p}


CASES = list(_cases())


FASTER = [FAST, pytest.param(CPU, marks=pytest.mark.skipif(not cpu.AVAILABLE, reason=str(cpu.MISSING)))]


def needs_its_arrays(faster, backend):
    """Skip a cpu-rung run on cupy arrays: the cpu kernels take host arrays (on cupy ones the cpu
    rung runs the fast kernels, tested on their own)."""
    if faster is CPU and backend == "cupy":
        pytest.skip("the cpu kernels take host arrays")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name, story, shape, options", CASES, ids=[f"{c[0]}-{c[2]}-{c[3]}" for c in CASES])
@pytest.mark.parametrize("faster", FASTER, ids=["fast", "cpu"])
def test_faster_kernel_matches_plain(backend, faster, dtype, name, story, shape, options):
    needs_its_arrays(faster, backend)
    want, _ = story(PLAIN, dtype, shape, **options)
    got, inputs = story(faster, dtype, shape, **options)
    _, fresh_inputs = story(PLAIN, dtype, shape, **options)
    for g, w in zip(got, want, strict=True):
        assert_close(g, w, RTOL[dtype])
    for used, fresh in zip(inputs, fresh_inputs):  # the fast kernels reuse buffers, never an input's
        np.testing.assert_array_equal(host(used), host(fresh))


@pytest.mark.parametrize("faster", [FAST, CPU], ids=["fast", "cpu"])
def test_every_faster_kernel_has_a_story(faster):
    """Each kernel FAST or CPU runs differently from PLAIN is compared above."""
    differ = {name for name in vars(PLAIN) if getattr(faster, name) is not getattr(PLAIN, name)} - {"name"}
    covered = {"linear_backward", "layernorm_forward", "layernorm_backward", "gelu_forward", "gelu_backward"}
    covered |= {"cross_entropy_forward", "cross_entropy_backward", "embedding_backward", "adamw_update_multi"}
    covered |= {"attention_forward", "attention_backward"}
    if faster is CPU:
        covered |= {"scale_multi"}
    assert differ == covered


@pytest.mark.parametrize("faster", FASTER, ids=["fast", "cpu"])
def test_faster_linear_backward_lays_dw_out_as_the_weight(backend, faster):
    """For a transposed weight (the tied head's wte.T), dW transposed back is contiguous, as wte."""
    needs_its_arrays(faster, backend)
    x, dout = normal(6, 5, seed=1), normal(6, 7, seed=2)
    for weight in (normal(5, 7, seed=3), normal(7, 5, seed=3).T):
        _, dweight, _ = faster.linear_backward(dout, x, weight, True)
        assert dweight.flags.c_contiguous == weight.flags.c_contiguous
        assert dweight.flags.f_contiguous == weight.flags.f_contiguous


@pytest.mark.parametrize("faster", FASTER, ids=["fast", "cpu"])
def test_faster_gelu_backward_recomputes_tanh_when_not_given(backend, faster):
    needs_its_arrays(faster, backend)
    x, dout = normal(7, 13, seed=1, scale=3.0), normal(7, 13, seed=2)
    assert_close(faster.gelu_backward(dout, x), gelu.gelu_backward(dout, x, gelu.gelu_forward(x)[1]), 1e-12)


@pytest.mark.skipif(not cpu.AVAILABLE, reason=str(cpu.MISSING))
def test_cpu_gelu_tanh_is_within_5_ulp_and_exact_at_the_ends():
    """The cpu GELU's float32 tanh (a cut continued fraction, then the double-angle rule) against
    the exact tanh rounded, over [-12, 12] and tiny values; beyond the clamp and at inf, NaN and 0
    the GELU is the plain one's, bit for bit."""
    rng = np.random.default_rng(0)
    u = np.concatenate([rng.uniform(-12, 12, 100_000), rng.uniform(-1, 1, 100_000), np.geomspace(1e-30, 1, 1000)])
    u = np.concatenate([u, -u]).astype(np.float32)
    got = np.array([tanh32(v) for v in u])
    exact = np.tanh(u.astype(np.float64))
    assert (np.abs(got - exact) <= 5 * np.spacing(np.abs(exact).astype(np.float32))).all()
    ends = np.array([-1e30, -np.inf, -20, -9.5, -0.0, 0, 1e-30, 20, 1e30, np.inf, np.nan], np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for got, want in zip(cpu.gelu_forward(ends), PLAIN.gelu_forward(ends), strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(not cpu.AVAILABLE, reason=str(cpu.MISSING))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpu_kernels_take_arrays_in_any_memory_order(dtype):
    """Transposed views in (the loops want C order: the wrappers copy what is not) and a
    Fortran-ordered parameter (AdamW updates it through the fast kernel, in place all the same)."""
    x, dout = normal(13, 7, seed=1, dtype=dtype).T, normal(13, 7, seed=2, dtype=dtype).T  # (7, 13) views
    w, b = normal(13, seed=3, dtype=dtype), normal(13, seed=4, dtype=dtype)
    out, mean, rstd = CPU.layernorm_forward(x, w, b, 1e-5)
    want_out, want_mean, want_rstd = PLAIN.layernorm_forward(x, w, b, 1e-5)
    got = [out, mean, rstd, *CPU.layernorm_backward(dout, x, w, mean, rstd)]
    want = [want_out, want_mean, want_rstd, *PLAIN.layernorm_backward(dout, x, w, want_mean, want_rstd)]
    y, saved = CPU.gelu_forward(x)
    want_y, want_saved = PLAIN.gelu_forward(x)
    got += [y, CPU.gelu_backward(dout, x, saved)]
    want += [want_y, PLAIN.gelu_backward(dout, x, want_saved)]
    for one, reference in zip(got, want, strict=True):
        assert_close(one, reference, RTOL[dtype])
    params = {
        rung.name: [np.asfortranarray(normal(5, 3, seed=5, dtype=dtype)), normal(3, seed=6, dtype=dtype)]
        for rung in (CPU, PLAIN)
    }
    for rung in (CPU, PLAIN):
        grads = [normal(5, 3, seed=7, dtype=dtype), normal(3, seed=8, dtype=dtype)]
        moments = [[np.zeros_like(p) for p in params[rung.name]] for _ in range(2)]
        rung.adamw_update_multi(
            params[rung.name], grads, *moments, lr=0.1, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, step=1
        )
    for cpu_param, plain_param in zip(params["cpu"], params["plain"], strict=True):
        assert_close(cpu_param, plain_param, RTOL[dtype])


@pytest.mark.skipif(not cpu.AVAILABLE, reason=str(cpu.MISSING))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpu_adamw_in_threads_matches_plain_and_one_thread_bit_for_bit(monkeypatch, dtype):
    """Large parameters are cut into one run per thread: the same numbers as plain, and the same
    bits as one thread's loop (the cut is made small and into 3 uneven runs here)."""
    from tinygrad_gpt.kernels.cpu import adamw as cpu_adamw

    def story(rung, threads):
        monkeypatch.setattr(cpu_adamw, "THREADED_MIN", 20)
        monkeypatch.setattr(cpu_adamw, "threads_allowed", lambda: threads)
        params = [normal(7, 11, seed=1, dtype=dtype), normal(5, seed=2, dtype=dtype), normal(31, seed=3, dtype=dtype)]
        moments = [[np.zeros_like(p) for p in params] for _ in range(2)]
        for step in (1, 2, 3):
            grads = [normal(*p.shape, seed=10 * step + i, dtype=dtype) for i, p in enumerate(params)]
            rung.adamw_update_multi(
                params, grads, *moments, lr=0.1, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, step=step
            )
        return [*params, *moments[0], *moments[1]]

    threaded, one_thread, plain = story(CPU, 3), story(CPU, 1), story(PLAIN, 1)
    for got, same, want in zip(threaded, one_thread, plain, strict=True):
        np.testing.assert_array_equal(got, same)
        assert_close(got, want, RTOL[dtype])


@pytest.mark.skipif(not cpu.AVAILABLE, reason=str(cpu.MISSING))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpu_clipping_in_threads_matches_plain_bit_for_bit(monkeypatch, dtype):
    """Large arrays are cut over threads (made small here, into 3 uneven runs): the same bits as
    plain's NumPy multiplication."""
    from tinygrad_gpt.kernels.cpu import clipping as cpu_clipping

    monkeypatch.setattr(cpu_clipping, "THREADED_MIN", 20)
    monkeypatch.setattr(cpu_clipping, "threads_allowed", lambda: 3)

    def story(rung):
        arrays = [normal(7, 11, seed=1, dtype=dtype), normal(5, seed=2, dtype=dtype), normal(31, seed=3, dtype=dtype)]
        rung.scale_multi(arrays, np.asarray(0.3, dtype=dtype))
        return arrays

    for got, want in zip(story(CPU), story(PLAIN), strict=True):
        np.testing.assert_array_equal(got, want)


# --- 3. what the fast kernels promise, and numerical safety -------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("faster", FASTER, ids=["fast", "cpu"])
def test_faster_attention_row_far_below_its_heads_max_is_still_exact(backend, faster, dtype):
    """The fast forward shifts scores by each head's max; a row 300 below it would underflow to 0/0
    that way, so it must fall back to its own max and match the plain row-by-row softmax (the cpu
    one shifts each row by its own max)."""
    needs_its_arrays(faster, backend)
    xp = engine.backend.get_xp()
    q = xp.asarray([[[[1.0, 0.0], [0.0, 1.0]]]], dtype=dtype)  # (1, 1, 2, 2)
    k = xp.asarray([[[[0.0, 0.0], [0.0, 600.0]]]], dtype=dtype)  # q1.k1 / sqrt(2) is about 424
    v = normal(1, 1, 2, 2, seed=3, dtype=dtype)
    out, att = faster.attention_forward(q, k, v, is_causal=False)
    want_out, want_att = attention.attention_forward(q, k, v, is_causal=False)
    assert np.all(np.isfinite(host(att)))
    assert_close(att, want_att, RTOL[dtype])
    assert_close(out, want_out, RTOL[dtype])


@pytest.mark.parametrize("faster", FASTER, ids=["fast", "cpu"])
def test_faster_attention_outputs_keep_the_heads_layout_of_their_inputs(backend, faster):
    """q, k, v cut from one (B, T, 3, nh, hs) array: the output and gradients come back laid out as
    (B, T, nh, hs) in memory, so the model's transpose back to (B, T, C) is a view, not a copy."""
    needs_its_arrays(faster, backend)
    qkv = normal(2, 5, 3, 2, 4, seed=1)
    q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # (B, nh, T, hs) views
    out, att = faster.attention_forward(q, k, v)
    grads = faster.attention_backward(normal(*out.shape, seed=2), q, k, v, att)
    for array in (out, *grads):
        assert array.transpose(0, 2, 1, 3).flags.c_contiguous


@pytest.mark.parametrize("kernels", [PLAIN, *FASTER], ids=["plain", "fast", "cpu"])
def test_short_query_sees_what_the_last_rows_of_a_full_query_see(backend, kernels):
    """A KV-cache step: the last t_q queries attend exactly as they do inside the full sequence."""
    needs_its_arrays(kernels, backend)
    forward = kernels.attention_forward
    q, k, v = normal(1, 2, 5, 3, seed=1), normal(1, 2, 5, 3, seed=2), normal(1, 2, 5, 3, seed=3)
    full, _ = forward(q, k, v, is_causal=True)
    for t_q in (1, 2):
        tail, _ = forward(q[:, :, -t_q:], k, v, is_causal=True)
        assert_close(tail, full[:, :, -t_q:], 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_stay_finite(backend, rung, dtype):
    xp = engine.backend.get_xp()
    logits = xp.asarray([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]], dtype=dtype)
    kernels = engine.dispatch.kernels_for(logits)
    probs = host(kernels.softmax_forward(logits))
    np.testing.assert_allclose(probs, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    log_probs = host(kernels.log_softmax_forward(logits))
    np.testing.assert_allclose(log_probs, [[0, -1e4, -2e4], [-math.log(3)] * 3], rtol=1e-6)
    targets = xp.asarray([2, 0])
    loss, saved = kernels.cross_entropy_forward(logits, targets)
    assert float(loss) == pytest.approx((2e4 + math.log(3)) / 2, rel=1e-6)  # a finite 2e4, never inf
    dlogits = kernels.cross_entropy_backward(xp.asarray(1.0, dtype=dtype), logits, targets, saved)
    assert np.isfinite(host(dlogits)).all()
