"""Array helpers shared by the tests: random arrays (host or backend), moving arrays, one closeness check."""

import numpy as np

from tinygrad_gpt import engine


def randn(*shape, seed=0, dtype=np.float64, scale=1.0):
    """Standard normal draws times `scale`, as a host numpy array of `dtype` (on_backend moves it).
    `seed` is an int, or a numpy Generator to draw from."""
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def normal(*shape, seed=0, dtype=np.float64, scale=1.0):
    """randn's draws on the active backend."""
    return on_backend(randn(*shape, seed=seed, dtype=dtype, scale=scale))


def on_backend(array):
    """`array` on the active backend (numpy or cupy)."""
    return engine.backend.get_xp().asarray(array)


def host(array):
    """A host numpy view or copy of an array of either backend."""
    return engine.backend.to_numpy(array)


def assert_close(got, want, rtol, floor=0.0):
    """||got - want|| <= rtol * max(||want||, floor), in float64 on the host, same shape and dtype.

    Relative in the L2 norm, so an element that is tiny because its terms cancel does not demand
    more than its rounding allows; `floor` is the size of such terms where the whole result is far
    smaller than its parts (a row of width 1, a one-hot softmax row). A NaN fails (an element no
    kernel wrote, where outputs were poisoned first)."""
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    got, want = host(got).astype(np.float64), host(want).astype(np.float64)
    assert not np.isnan(got).any(), f"{np.isnan(got).sum()} NaN of {got.size}"
    err, scale = np.linalg.norm(got - want), max(np.linalg.norm(want), float(floor))
    assert err <= rtol * scale, f"error {err:.3g}, {err / max(scale, 1e-300):.3g} relative"


def cupy_module():
    """CuPy as the cupy backend loads it (the stand-in of tests/fake_cupy where no GPU is usable),
    or None where it cannot be used."""
    try:
        engine.set_backend("cupy")
        return engine.backend.get_xp()
    except engine.BackendError:
        return None
    finally:
        engine.set_backend("numpy")
