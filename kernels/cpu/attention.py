"""Attention with the matrix products of the fast kernel (BLAS, kernels/attention.py) and each
softmax step between them one compiled loop per row, instead of a NumPy pass per operation over
all the heads' (Tq, Tk) scores: the causal mask and the row's max in one loop (the exact row max,
where the fast kernel shifts by the head's max to spare NumPy's slow short-row max), NumPy's exp
(Numba's would be one C-library call per number), then the sum and the division in one loop.
The backward's softmax rule, dS = P (dP - rowsum(dP P)), is one loop per row too.
The math and the derivation are in kernels/attention.py."""

import math

import numpy

from tinygrad_gpt.kernels.attention import attention_backward_fast, attention_forward_fast, matmul_like
from tinygrad_gpt.kernels.cpu.compiler import compiled, rows


@compiled
def _mask_and_shift(scores, t_q, offset):
    """Row r of scores (query r % t_q) minus its max over the keys it may see, -inf beyond them:
    keys j <= i + offset for query i, or all of them when offset < 0 (no causal mask)."""
    rows, t_k = scores.shape
    for r in range(rows):
        n = t_k if offset < 0 else r % t_q + offset + 1
        top = scores[r, 0]
        for j in range(1, n):
            top = max(top, scores[r, j])
        for j in range(n):
            scores[r, j] -= top
        for j in range(n, t_k):
            scores[r, j] = -numpy.inf


@compiled
def _divide_by_row_sums(e):
    rows, t_k = e.shape
    for r in range(rows):
        total = e.dtype.type(0)
        for j in range(t_k):
            total += e[r, j]
        inv = 1 / total
        for j in range(t_k):
            e[r, j] *= inv


@compiled
def _softmax_backward_rows(dp, att, mask):
    """dp (dP', the gradient of P' = P * mask) becomes dS in place: dP = dP' * mask (mask empty:
    none), dS = P * (dP - sum_j dP_j P_j)."""
    rows, t_k = dp.shape
    for r in range(rows):
        if mask.size:
            for j in range(t_k):
                dp[r, j] *= mask[r, j]
        dot = dp.dtype.type(0)
        for j in range(t_k):
            dot += dp[r, j] * att[r, j]
        for j in range(t_k):
            dp[r, j] = att[r, j] * (dp[r, j] - dot)


def _covered(q, k, is_causal):
    """Cases left to the fast kernel: empty keys, and a causal mask with more queries than keys
    (rows that see nothing)."""
    return k.shape[-2] > 0 and not (is_causal and q.shape[-2] > k.shape[-2])


def _mask_rows(dropout_mask, like):
    if dropout_mask is None:
        return numpy.empty((0, 0), like.dtype)
    return rows(numpy.broadcast_to(dropout_mask, like.shape))


def attention_forward(q, k, v, is_causal=True, dropout_mask=None):
    if not _covered(q, k, is_causal):
        return attention_forward_fast(q, k, v, is_causal, dropout_mask)
    t_q, t_k = q.shape[-2], k.shape[-2]
    att = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.swapaxes(-1, -2)  # a fresh C-ordered array
    _mask_and_shift(rows(att), t_q, t_k - t_q if is_causal else -1)
    numpy.exp(att, out=att)
    _divide_by_row_sums(rows(att))
    p = att * dropout_mask if dropout_mask is not None else att
    return matmul_like(p, v, q), att


def attention_backward(dout, q, k, v, att, dropout_mask=None):
    if not _covered(q, k, False):
        return attention_backward_fast(dout, q, k, v, att, dropout_mask)
    scale = 1.0 / math.sqrt(q.shape[-1])
    p = att * dropout_mask if dropout_mask is not None else att
    dv = matmul_like(p.swapaxes(-1, -2), dout, v)
    ds = dout @ v.swapaxes(-1, -2)  # dP', a fresh C-ordered array, becomes dS in place
    _softmax_backward_rows(rows(ds), rows(att), _mask_rows(dropout_mask, ds))
    dq = matmul_like(ds, k * scale, q)
    dk = matmul_like(ds.swapaxes(-1, -2), q * scale, k)
    return dq, dk, dv
