"""Scaled dot-product attention with an optional causal mask, fused forward and backward."""

import math

from kernels.array_module import xp_of
from kernels.reductions import row_sum


def causal_bias(xp, t_q, t_k, dtype):
    """(t_q, t_k): 0 where query i may see key j, -inf where it may not. Queries are the last t_q
    of t_k positions (bottom-right aligned), so a cached decode step (t_q=1) sees every key.
    Added to the scores, it masks them in place (cheaper than boolean indexing)."""
    return xp.triu(xp.full((t_q, t_k), -xp.inf, dtype=dtype), k=1 + t_k - t_q)


def attention_forward(q, k, v, is_causal=True, dropout_mask=None):
    """q (B, H, Tq, hd), k and v (B, H, Tk, hd) -> out (B, H, Tq, hd), and the saved probabilities
    att (B, H, Tq, Tk) before dropout. dropout_mask, if given, has att's shape (0 or 1/(1-p))."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (q * scale) @ k.swapaxes(-1, -2)  # scaling q touches Tq*hd numbers, not Tq*Tk
    if is_causal:
        scores += causal_bias(xp_of(q), q.shape[-2], k.shape[-2], scores.dtype)
    att = _softmax_rows(scores, _head_max(scores))
    if att is None:
        att = _softmax_rows(scores, scores.max(axis=-1, keepdims=True))
    p = att * dropout_mask if dropout_mask is not None else att
    return _matmul_like(p, v, q), att


def _matmul_like(a, b, like):
    """a @ b written into an array with `like`'s shape and memory order (empty_like keeps it): the
    heads of a (B, T, H, hd) layout stay there, so transposing back to (B, T, C) copies nothing."""
    xp = xp_of(a)
    return xp.matmul(a, b, out=xp.empty_like(like))


# Softmax is unchanged by subtracting any constant from a row; the row's max is the usual one (no
# exp overflows). A constant per head serves as well and is much cheaper here: NumPy takes the
# max of 64-number rows about 18x slower than the max of a head's 4096 scores at once. With the
# head's max every exp is still <= 1, but a row far below it could underflow, so a row summing to
# less than exp(-60) sends the softmax back to row maxima (its exps within ~20 of its own max
# would fall under float32's smallest normal, e^-87).
UNDERFLOW_GUARD = math.exp(-60)


def _head_max(scores):
    return scores.reshape(*scores.shape[:-2], -1).max(axis=-1)[..., None, None]


def _softmax_rows(scores, shift):
    """softmax(scores) along the last axis computed as exp(scores - shift) / row sum, or None if a
    row's sum is below UNDERFLOW_GUARD. scores is not modified."""
    att = scores - shift
    xp_of(att).exp(att, out=att)
    sums = row_sum(att)
    if sums.min() < UNDERFLOW_GUARD:  # one host sync on a GPU (where the CUDA kernel runs instead)
        return None
    att *= 1.0 / sums
    return att


# S = scale * Q K^T, P = softmax(S) row-wise (masked S = -inf, so masked P = 0),
# P' = P * mask (dropout), O = P' V. Going back:
#   dV  = P'^T dO                          (O is linear in V)
#   dP' = dO V^T,   dP = dP' * mask
#   dS  = P * (dP - rowsum(dP * P))        (softmax backward, row by row)
#   dQ  = scale * dS K,   dK = scale * dS^T Q
# Masked positions have P = 0, so dS is 0 there without touching the mask again: the mask lives
# only in the forward. One op, no graph of small steps; the (Tq, Tk) buffers are reused in place,
# and each gradient is laid out in memory like its input.
def attention_backward(dout, q, k, v, att, dropout_mask=None):
    scale = 1.0 / math.sqrt(q.shape[-1])
    p = att * dropout_mask if dropout_mask is not None else att
    dv = _matmul_like(p.swapaxes(-1, -2), dout, v)
    ds = dout @ v.swapaxes(-1, -2)
    if dropout_mask is not None:
        ds *= dropout_mask
    ds -= row_sum(ds * att)
    ds *= att
    dq = _matmul_like(ds, k * scale, q)
    dk = _matmul_like(ds.swapaxes(-1, -2), q * scale, k)
    return dq, dk, dv
