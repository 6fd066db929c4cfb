"""Hypothesis strategies shared by the engine tests: small shapes, axes, and float64 values.

Sizes stay <= 5 per axis so float64 finite differences (two forward passes per element) stay
fast. Values come from a grid of step 1/256: distinct values are then at least 4e-3 apart, far
more than gradcheck's nudge of 1e-6, so ops with kinks (max, relu) are never probed at one.
"""

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

GRID = 256

# The `backend` fixture is function-scoped on purpose: it only selects the array module, which
# stays valid across all the examples of one test.
gradcheck_settings = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def shapes(min_dims=0, max_dims=4, max_side=5):
    """Array shapes with 0-4 axes of size 1-5 (size-1 axes included, they broadcast)."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side)


def broadcastable_shapes(max_dims=4, max_side=5):
    """A pair of shapes that broadcast together (different ranks, stretched size-1 axes)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=max_dims, max_side=max_side).map(
        lambda b: b.input_shapes
    )


def axes(ndim):
    """Every valid `axis` argument for an array of `ndim` axes: None, an int or a tuple, negatives included."""
    if ndim == 0:
        return st.none()
    return st.none() | st.integers(-ndim, ndim - 1) | hnp.valid_tuple_axes(ndim, min_size=1)


def _grid(low, high):
    return st.integers(round(low * GRID), round(high * GRID)).map(lambda i: i / GRID)


def arrays(shape, low=-3.0, high=3.0, unique=False):
    """float64 arrays of `shape` with values on the grid in [low, high] (unique: no ties)."""
    return hnp.arrays(np.float64, shape, elements=_grid(low, high), unique=unique)


def positive_arrays(shape, low=0.5, high=3.0):
    """Values in [low, high]: safe inputs for log, sqrt and the base of a power."""
    return arrays(shape, low, high)


def nonzero_arrays(shape, low=0.5, high=3.0):
    """Values with magnitude in [low, high] and either sign: safe divisors, and relu off its kink."""
    return hnp.arrays(np.float64, shape, elements=_grid(low, high) | _grid(-high, -low))
