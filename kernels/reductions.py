"""Sums over one axis, written as products with a vector of ones so that BLAS does them.

NumPy reduces a short last axis (the 64 to 512 numbers of a LayerNorm or attention row) much more
slowly than BLAS multiplies it by ones, and on a GPU cuBLAS sums columns faster than CuPy's generic
reduction (how much: docs/benchmarks.md). The same sums, in another rounding order.
"""

from tinygrad_gpt.kernels.array_module import xp_of


def row_sum(x):
    """x.sum(axis=-1, keepdims=True)"""
    return x @ xp_of(x).ones((x.shape[-1], 1), dtype=x.dtype)


def row_mean(x):
    """x.mean(axis=-1, keepdims=True)"""
    return row_sum(x) * (1.0 / x.shape[-1])


def column_sum(x):
    """x summed over every axis but the last: (..., C) -> (C,)"""
    x2 = x.reshape(-1, x.shape[-1])
    return xp_of(x).ones(x2.shape[0], dtype=x.dtype) @ x2
