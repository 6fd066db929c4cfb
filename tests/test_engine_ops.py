"""Every op, method and functional: forward against NumPy, backward against finite differences.

Gradients are checked in float64 with engine.gradcheck on every backend, and the ops that run a
kernel (gelu, matmul, linear, layer_norm, softmax, cross_entropy, embedding, dropout, attention)
on every rung of the kernel ladder. Forward values of the ops that are NumPy one-liners are
compared here; the kernel-backed ones have theirs checked in test_kernels.py.
"""

import math
import operator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_gpt.engine.functional as F
from helpers import on_backend, randn
from strategies import (
    arrays,
    axes,
    broadcastable_shapes,
    gradcheck_settings,
    nonzero_arrays,
    positive_arrays,
    shapes,
)
from tinygrad_gpt import engine
from tinygrad_gpt.engine import Tensor, gradcheck


def leaf(array):
    """A leaf on the active backend that requires grad."""
    return Tensor(engine.backend.get_xp().asarray(array), requires_grad=True)


def check(fn, *values, reference=None):
    """fn's gradients w.r.t. every input (numpy arrays) match finite differences; with `reference`
    (the same computation on numpy arrays) its forward values match too."""
    inputs = [leaf(a) for a in values]
    if reference is not None:
        np.testing.assert_allclose(fn(*inputs).numpy(), reference(*values), rtol=1e-12, atol=1e-12)
    assert gradcheck(fn, *inputs)


# --- elementwise arithmetic --------------------------------------------------------------------


@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul, operator.truediv], ids=lambda op: op.__name__)
@gradcheck_settings
@given(data=st.data())
def test_binary_ops_broadcast(backend, op, data):
    shape_a, shape_b = data.draw(broadcastable_shapes())
    a = data.draw(arrays(shape_a))
    b = data.draw((nonzero_arrays if op is operator.truediv else arrays)(shape_b))  # no division by ~0
    check(op, a, b, reference=op)


@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul, operator.truediv], ids=lambda op: op.__name__)
@gradcheck_settings
@given(data=st.data())
def test_binary_ops_with_python_scalars(backend, op, data):
    x = data.draw(nonzero_arrays(data.draw(shapes())))
    check(lambda t: op(t, 1.5), x, reference=lambda a: op(a, 1.5))
    check(lambda t: op(-2.5, t), x, reference=lambda a: op(-2.5, a))


@gradcheck_settings
@given(data=st.data(), exponent=st.sampled_from([2, 3, 0.5, -1.5, 1 / 3]))
def test_pow_tensor_scalar(backend, data, exponent):
    x = data.draw(positive_arrays(data.draw(shapes())))
    check(lambda t: t**exponent, x, reference=lambda a: a**exponent)


@gradcheck_settings
@given(data=st.data(), exponent=st.sampled_from([2, 3]))
def test_pow_integer_exponent_of_any_sign(backend, data, exponent):
    x = data.draw(arrays(data.draw(shapes())))
    check(lambda t: t**exponent, x, reference=lambda a: a**exponent)


@gradcheck_settings
@given(data=st.data(), base=st.sampled_from([2.0, 0.5, math.e]))
def test_pow_scalar_tensor(backend, data, base):
    x = data.draw(arrays(data.draw(shapes())))
    check(lambda t: base**t, x, reference=lambda a: base**a)


@gradcheck_settings
@given(data=st.data())
def test_pow_tensor_tensor(backend, data):
    shape_a, shape_b = data.draw(broadcastable_shapes())
    a, b = data.draw(positive_arrays(shape_a)), data.draw(arrays(shape_b, -2.0, 2.0))
    check(lambda x, y: x**y, a, b, reference=lambda x, y: x**y)


# --- unary math --------------------------------------------------------------------------------

UNARY = {  # name: (op on a Tensor, the numpy reference, safe values)
    "neg": (lambda t: -t, lambda a: -a, arrays),
    "exp": (lambda t: t.exp(), np.exp, arrays),
    "log": (lambda t: t.log(), np.log, positive_arrays),
    "sqrt": (lambda t: t.sqrt(), np.sqrt, positive_arrays),
    "tanh": (lambda t: t.tanh(), np.tanh, arrays),
    "relu": (lambda t: t.relu(), lambda a: np.maximum(a, 0), nonzero_arrays),
}


@pytest.mark.parametrize("name", UNARY)
@gradcheck_settings
@given(data=st.data())
def test_unary(backend, name, data):
    op, reference, values = UNARY[name]
    check(op, data.draw(values(data.draw(shapes()))), reference=reference)


@pytest.mark.parametrize("gelu", [F.gelu, lambda t: t.gelu()], ids=["F.gelu", "Tensor.gelu"])
@gradcheck_settings
@given(data=st.data())
def test_gelu(backend, rung, gelu, data):
    check(gelu, data.draw(arrays(data.draw(shapes()))))


# --- reductions --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sum", "mean", "max"])
@gradcheck_settings
@given(data=st.data(), keepdims=st.booleans())
def test_reductions(backend, name, data, keepdims):
    shape = data.draw(shapes())
    axis = data.draw(axes(len(shape)))
    x = data.draw(arrays(shape, unique=name == "max"))  # max is not differentiable at ties

    def reduce(a):
        return getattr(a, name)(axis=axis, keepdims=keepdims)

    check(reduce, x, reference=reduce)


def test_max_shares_gradient_among_ties(backend):
    x = leaf(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]]))
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(engine.backend.to_numpy(x.grad), [[0, 0.5, 0.5], [1, 0, 0]])


# --- matrix product ----------------------------------------------------------------------------


@st.composite
def matmul_shapes(draw):
    """Shapes for a @ b: vector or matrix on either side, matrices with broadcast batch axes."""
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    batch_a, batch_b = draw(broadcastable_shapes(max_dims=2, max_side=3))
    a_is_vector, b_is_vector = draw(st.booleans()), draw(st.booleans())
    return (k,) if a_is_vector else batch_a + (n, k), (k,) if b_is_vector else batch_b + (k, m)


@gradcheck_settings
@given(data=st.data())
def test_matmul(backend, rung, data):
    shape_a, shape_b = data.draw(matmul_shapes())
    check(operator.matmul, data.draw(arrays(shape_a)), data.draw(arrays(shape_b)), reference=operator.matmul)


# --- shapes and views --------------------------------------------------------------------------


@gradcheck_settings
@given(data=st.data())
def test_reshape(backend, data):
    shape = data.draw(shapes())
    x = data.draw(arrays(shape))
    check(lambda t: t.reshape(-1), x, reference=lambda a: a.reshape(-1))
    check(lambda t: t.reshape(*reversed(shape)), x, reference=lambda a: a.reshape(tuple(reversed(shape))))
    check(lambda t: t.reshape((1,) + shape), x, reference=lambda a: a.reshape((1,) + shape))


@gradcheck_settings
@given(data=st.data())
def test_transpose_permute_T_contiguous(backend, data):
    shape = data.draw(shapes(min_dims=1))
    ndim = len(shape)
    x = data.draw(arrays(shape))
    a, b = data.draw(st.integers(-ndim, ndim - 1)), data.draw(st.integers(-ndim, ndim - 1))
    perm = data.draw(st.permutations(range(ndim)))
    check(lambda t: t.transpose(a, b), x, reference=lambda y: np.swapaxes(y, a, b))
    check(lambda t: t.permute(*perm), x, reference=lambda y: y.transpose(perm))
    check(lambda t: t.T, x, reference=lambda y: y.T)
    check(lambda t: t.permute(*perm).contiguous() * 2.0, x, reference=lambda y: y.transpose(perm) * 2.0)


INDEXES = {  # id: index built with array module xp (so cupy runs get cupy index arrays)
    "int": lambda xp: 1,
    "negative int": lambda xp: -1,
    "slice": lambda xp: slice(1, 3),
    "step slice": lambda xp: slice(None, None, 2),
    "int and slice": lambda xp: (slice(None), 1, slice(0, 2)),
    "None": lambda xp: (None, slice(None), None),
    "Ellipsis": lambda xp: (Ellipsis, 0),
    "int, Ellipsis, None": lambda xp: (1, Ellipsis, None),
    "repeated int array": lambda xp: xp.asarray([0, 2, 0, 0]),
    "2-D int array": lambda xp: xp.asarray([[1, 1], [0, 2]]),
    "int arrays on two axes": lambda xp: (xp.asarray([0, 0, 2]), slice(None), xp.asarray([1, 1, 3])),
    "int array after slice": lambda xp: (slice(1, None), xp.asarray([1, 0, 1])),
}


@pytest.mark.parametrize("name", INDEXES)
def test_getitem(backend, name):
    make_index = INDEXES[name]
    x = randn(3, 2, 4)
    check(lambda t: t[make_index(engine.backend.get_xp())], x, reference=lambda a: a[make_index(np)])


def test_getitem_with_tensor_index_accumulates_repeats(backend):
    x = leaf(randn(4, 2))
    idx = Tensor(on_backend(np.array([3, 3, 1, 3])))
    x[idx].sum().backward()
    np.testing.assert_array_equal(engine.backend.to_numpy(x.grad), [[0, 0], [1, 1], [0, 0], [3, 3]])
    assert gradcheck(lambda t: t[idx], leaf(randn(4, 2)))


@pytest.mark.parametrize("mask_kind", ["array", "Tensor", "broadcast"])
def test_masked_fill(backend, mask_kind):
    x = randn(2, 3, 3)
    mask = np.triu(np.ones((3, 3), dtype=bool), k=1)
    if mask_kind != "broadcast":
        mask = np.broadcast_to(mask, x.shape).copy()
    xp_mask = Tensor(on_backend(mask)) if mask_kind == "Tensor" else on_backend(mask)
    check(lambda t: t.masked_fill(xp_mask, 7.0), x, reference=lambda a: np.where(mask, 7.0, a))


def test_masked_fill_minus_inf_then_softmax(backend):
    """The causal-attention pattern: -inf entries become exact zeros and pass no gradient."""
    mask = np.triu(np.ones((4, 4), dtype=bool), k=1)
    x = leaf(randn(2, 4, 4))
    probs = x.masked_fill(on_backend(mask), -math.inf).softmax(axis=-1).numpy()
    assert (probs[:, mask] == 0).all() and (probs[:, ~mask] > 0).all()
    mask = on_backend(mask)
    assert gradcheck(lambda t: t.masked_fill(mask, -math.inf).softmax(axis=-1), x)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(backend, axis):
    sizes = [1, 3, 2]
    parts = [randn(*[s if i == axis % 3 else 2 for i in range(3)], seed=s) for s in sizes]
    check(lambda *ts: F.concat(ts, axis=axis), *parts, reference=lambda *arrs: np.concatenate(arrs, axis=axis))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_stack(backend, axis):
    parts = [randn(2, 3, seed=s) for s in range(3)]
    check(lambda *ts: F.stack(ts, axis=axis), *parts, reference=lambda *arrs: np.stack(arrs, axis=axis))


@pytest.mark.parametrize("axis", [0, -1])
def test_split(backend, axis):
    x = randn(5, 5)
    pieces = leaf(x).split(2, axis=axis)
    assert [p.shape[axis] for p in pieces] == [2, 2, 1]  # the last piece is shorter
    np.testing.assert_array_equal(np.concatenate([p.numpy() for p in pieces], axis=axis), x)

    # scale each piece differently, so a gradient sent to the wrong piece shows
    def scaled_pieces(t):
        return F.concat([p * float(i + 1) for i, p in enumerate(t.split(2, axis=axis))], axis=axis)

    assert gradcheck(scaled_pieces, leaf(x))


# --- neural-network functionals ----------------------------------------------------------------


@pytest.mark.parametrize("x_shape", [(4, 3), (2, 3, 3)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear(backend, rung, x_shape, with_bias):
    arrays_ = [randn(*x_shape, seed=1), randn(3, 5, seed=2)] + ([randn(5, seed=3)] if with_bias else [])
    check(F.linear, *arrays_, reference=lambda x, w, b=0.0: x @ w + b)


@gradcheck_settings
@given(data=st.data(), with_weight=st.booleans(), with_bias=st.booleans())
def test_layer_norm(backend, rung, data, with_weight, with_bias):
    shape = data.draw(shapes(min_dims=1))
    x = leaf(data.draw(arrays(shape)))
    weight = leaf(data.draw(arrays(shape[-1:]))) if with_weight else None
    bias = leaf(data.draw(arrays(shape[-1:]))) if with_bias else None
    assert gradcheck(F.layer_norm, x, weight, bias)


SOFTMAXES = {
    "F.softmax": F.softmax,
    "F.log_softmax": F.log_softmax,
    "Tensor.softmax": lambda t, axis: t.softmax(axis=axis),
    "Tensor.log_softmax": lambda t, axis: t.log_softmax(axis=axis),
}


@pytest.mark.parametrize("name", SOFTMAXES)
@gradcheck_settings
@given(data=st.data())
def test_softmax_and_log_softmax_any_axis(backend, rung, name, data):
    shape = data.draw(shapes(min_dims=1))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    check(lambda t: SOFTMAXES[name](t, axis=axis), data.draw(arrays(shape)))


@pytest.mark.parametrize("logits_shape", [(5, 4), (2, 3, 4)])
@pytest.mark.parametrize("targets_kind", ["array", "Tensor"])
def test_cross_entropy(backend, rung, logits_shape, targets_kind):
    labels = np.random.default_rng(1).integers(0, logits_shape[-1], size=logits_shape[:-1])
    targets = Tensor(on_backend(labels)) if targets_kind == "Tensor" else on_backend(labels)
    logits = randn(*logits_shape)
    flat = F.cross_entropy(leaf(logits.reshape(-1, logits_shape[-1])), on_backend(labels.reshape(-1)))
    assert F.cross_entropy(leaf(logits), targets).item() == pytest.approx(flat.item(), rel=1e-12)
    assert gradcheck(lambda t: F.cross_entropy(t, targets), leaf(logits))


@pytest.mark.parametrize("idx_kind", ["array", "Tensor"])
def test_embedding_repeated_indices(backend, rung, idx_kind):
    idx = np.array([[0, 2, 0], [3, 3, 0]])  # row 0 picked three times, row 1 never
    xp_idx = Tensor(on_backend(idx)) if idx_kind == "Tensor" else on_backend(idx)
    check(lambda w: F.embedding(xp_idx, w), randn(4, 3), reference=lambda w: w[idx])
    weight = leaf(randn(4, 3))
    F.embedding(xp_idx, weight).sum().backward()
    np.testing.assert_array_equal(engine.backend.to_numpy(weight.grad)[:, 0], [3, 0, 1, 2])


def test_dropout_gradcheck_with_fixed_seed(backend, rung):
    def dropout(t):
        engine.manual_seed(3)  # the same mask on every evaluation gradcheck makes
        return F.dropout(t, p=0.5)

    x = randn(4, 6)
    out = dropout(leaf(x)).numpy()
    dropped = out == 0
    assert dropped.any() and not dropped.all()  # the mask is not trivial
    np.testing.assert_allclose(out[~dropped], 2 * x[~dropped])
    assert gradcheck(dropout, leaf(x))


@pytest.mark.parametrize("kwargs", [{"p": 0.0}, {"p": 0.5, "training": False}])
def test_dropout_identity_when_off(backend, kwargs):
    x = randn(3, 4)
    check(lambda t: F.dropout(t, **kwargs), x, reference=lambda a: a)


@pytest.mark.parametrize("p", [-0.1, 1.0])
def test_dropout_rejects_bad_probability(backend, p):
    with pytest.raises(ValueError, match="dropout probability"):
        F.dropout(leaf(randn(2)), p=p)


@pytest.mark.parametrize("is_causal", [True, False])
@pytest.mark.parametrize("t_q, t_k", [(4, 4), (2, 4), (1, 3)])
@pytest.mark.parametrize("dropout_p", [0.0, 0.3])
def test_scaled_dot_product_attention(backend, rung, is_causal, t_q, t_k, dropout_p):
    def attention(q, k, v):
        engine.manual_seed(5)
        return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, dropout_p=dropout_p)

    q, k, v = randn(1, 2, t_q, 3, seed=1), randn(1, 2, t_k, 3, seed=2), randn(1, 2, t_k, 3, seed=3)
    assert gradcheck(attention, leaf(q), leaf(k), leaf(v))
