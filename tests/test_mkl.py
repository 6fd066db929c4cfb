"""kernels/cpu/mkl.py: MKL's float32 product against NumPy's, on every layout it is handed, and the
switch that turns it off. The product tests skip where the `mkl` extra is not installed."""

import numpy as np
import pytest

from tiny_runs import python_output
from tinygrad_gpt.kernels import matmul
from tinygrad_gpt.kernels.cpu import linear, mkl
from tinygrad_gpt.tools.bench import cpu_kernels

needs_mkl = pytest.mark.skipif(not mkl.AVAILABLE, reason=str(mkl.MISSING))


def _layouts(rows, inner, seed):
    """A (rows, inner) float32 matrix as C-ordered, as a transposed view, as a slice of a wider
    array (a leading dimension above its width), and as views MKL cannot read (copied first)."""
    rng = np.random.default_rng(seed)
    wide = rng.standard_normal((rows, inner + 3), dtype=np.float32)
    yield "C-ordered", np.ascontiguousarray(wide[:, :inner])
    yield "transposed", np.ascontiguousarray(wide[:, :inner].T).T
    yield "a slice", wide[:, :inner]
    yield "every other column", rng.standard_normal((rows, 2 * inner), dtype=np.float32)[:, ::2]
    yield "reversed rows", np.ascontiguousarray(wide[:, :inner])[::-1]


@needs_mkl
@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (5, 3, 7), (64, 128, 96), (37, 1, 19)])
def test_matmul_matches_numpy_on_every_layout(m, k, n):
    for a_name, a in _layouts(m, k, seed=1):
        for b_name, b in _layouts(k, n, seed=2):
            got = mkl.matmul(a, b)
            want = a.astype(np.float64) @ b.astype(np.float64)
            assert got.dtype == np.float32 and got.shape == (m, n) and got.flags.c_contiguous
            scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)  # the sum's size
            assert np.all(np.abs(got - want) <= 8 * k * np.finfo(np.float32).eps * scale), (a_name, b_name)


@needs_mkl
def test_matmul_leaves_its_inputs_and_what_mkl_does_not_take_to_numpy():
    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(12, dtype=np.float32).reshape(3, 4)
    before = a.copy(), b.copy()
    np.testing.assert_array_equal(mkl.matmul(a, b), a @ b)  # small integers: exact either way
    np.testing.assert_array_equal(a, before[0])
    np.testing.assert_array_equal(b, before[1])
    for x, y in [(a.astype(np.float64), b.astype(np.float64)), (a[:, :0], b[:0]), (a[None], b)]:
        np.testing.assert_array_equal(mkl.matmul(x, y), x @ y)  # float64, empty, batched
        assert mkl.matmul(x, y).dtype == (x @ y).dtype
    with pytest.raises(ValueError):
        mkl.matmul(a, a)  # NumPy's message for shapes that do not chain


@needs_mkl
def test_bench_names_mkl_where_the_rung_uses_it():
    assert f"Linear products by {mkl.version()}" in cpu_kernels("cpu")
    assert "MKL" not in cpu_kernels("fast")


def test_tinygpt_mkl_0_turns_it_off():
    code = "from tinygrad_gpt.kernels.cpu import mkl; from tinygrad_gpt.tools.bench import cpu_kernels; "
    code += "print(mkl.MISSING, cpu_kernels())"
    out = python_output(code, TINYGPT_MKL="0")
    assert out.startswith("TINYGPT_MKL=0") and "MKL" not in out.split(" ", 1)[1]


@pytest.mark.parametrize("with_mkl", [pytest.param(True, marks=needs_mkl), False], ids=["mkl", "numpy"])
def test_cpu_linear_matches_plain_with_and_without_mkl(monkeypatch, with_mkl):
    monkeypatch.setattr(mkl, "AVAILABLE", with_mkl)  # matmul asks at every call
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((3, 5, 16), dtype=np.float32), rng.standard_normal((3, 5, 24), dtype=np.float32)
    bias = rng.standard_normal(24, dtype=np.float32)
    for weight in (rng.standard_normal((16, 24), dtype=np.float32), rng.standard_normal((24, 16), dtype=np.float32).T):
        got = [linear.linear_forward(x, weight, bias), *linear.linear_backward(dout, x, weight)]
        want = [matmul.linear_forward(x, weight, bias), *matmul.linear_backward(dout, x, weight)]
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
