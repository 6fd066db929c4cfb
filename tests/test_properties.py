"""Properties that must hold for any input (hypothesis draws shapes, axes, values and dtype)."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import tinygrad_gpt.engine.functional as F
from strategies import arrays, gradcheck_settings, shapes
from tinygrad_gpt import engine
from tinygrad_gpt.engine import Tensor

dtypes = st.sampled_from([np.float32, np.float64])
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-12}


def tensor(array, dtype):
    return Tensor(engine.backend.get_xp().asarray(array, dtype=dtype))


def shape_and_axis(data):
    shape = data.draw(shapes(min_dims=1))
    return shape, data.draw(st.integers(-len(shape), len(shape) - 1))


@gradcheck_settings
@given(data=st.data(), dtype=dtypes)
def test_softmax_sums_to_one_and_ignores_shifts(backend, data, dtype):
    shape, axis = shape_and_axis(data)
    x = data.draw(arrays(shape, -50.0, 50.0))
    shift = data.draw(arrays(tuple(1 if i == axis % len(shape) else n for i, n in enumerate(shape)), -100.0, 100.0))
    probs = F.softmax(tensor(x, dtype), axis=axis).numpy()
    np.testing.assert_allclose(probs.sum(axis=axis), 1.0, rtol=TOLERANCE[dtype])
    shifted = F.softmax(tensor(x + shift, dtype), axis=axis).numpy()
    np.testing.assert_allclose(shifted, probs, rtol=100 * TOLERANCE[dtype], atol=TOLERANCE[dtype])


@gradcheck_settings
@given(data=st.data(), dtype=dtypes)
def test_log_softmax_is_log_of_softmax(backend, data, dtype):
    shape, axis = shape_and_axis(data)
    x = tensor(data.draw(arrays(shape, -10.0, 10.0)), dtype)
    expected = np.log(F.softmax(x, axis=axis).numpy())
    tolerance = 10 * TOLERANCE[dtype]
    np.testing.assert_allclose(F.log_softmax(x, axis=axis).numpy(), expected, rtol=tolerance, atol=tolerance)


@gradcheck_settings
@given(data=st.data(), dtype=dtypes)
def test_layer_norm_rows_have_zero_mean_and_unit_variance(backend, data, dtype):
    x = data.draw(arrays(data.draw(shapes(min_dims=1)), -10.0, 10.0))
    y = F.layer_norm(tensor(x, dtype), None, None).numpy()
    assert y.dtype == dtype
    np.testing.assert_allclose(y.mean(axis=-1), 0.0, atol=10 * TOLERANCE[dtype])
    spread = x.var(axis=-1) > 0.1  # flat rows stay near 0: eps keeps them from being blown up
    np.testing.assert_allclose(y.var(axis=-1)[spread], 1.0, rtol=1e-3)


@gradcheck_settings
@given(n=st.integers(1, 5), classes=st.integers(1, 50), value=st.floats(-100, 100), dtype=dtypes, data=st.data())
def test_cross_entropy_of_equal_logits_is_log_classes(backend, n, classes, value, dtype, data):
    targets = data.draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n))
    logits = tensor(np.full((n, classes), value), dtype)
    loss = F.cross_entropy(logits, engine.backend.get_xp().asarray(targets)).item()
    assert math.isclose(loss, math.log(classes), rel_tol=10 * TOLERANCE[dtype], abs_tol=10 * TOLERANCE[dtype])
