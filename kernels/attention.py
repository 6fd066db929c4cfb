"""Scaled dot-product attention with an optional causal mask and dropout, as one forward and one
backward over (B, nh, T, hs) arrays: batch, heads, positions, head size."""

import math

import numpy

from tinygrad_gpt.kernels.array_module import xp_of
from tinygrad_gpt.kernels.reductions import row_sum
from tinygrad_gpt.kernels.softmax import softmax_backward, softmax_forward


def causal_mask(xp, t_q, t_k):
    """(t_q, t_k) booleans, True where query i may not see key j. Queries are the last t_q of t_k
    positions (bottom-right aligned), so query i sees keys up to i + t_k - t_q, and a cached
    decode step (t_q = 1) sees every key."""
    return xp.triu(xp.ones((t_q, t_k), dtype=bool), k=1 + t_k - t_q)


def attention_forward(q, k, v, is_causal=True, dropout_mask=None):
    """q (B, nh, Tq, hs), k and v (B, nh, Tk, hs) -> out (B, nh, Tq, hs), and the probabilities
    att (B, nh, Tq, Tk) before dropout, which backward needs. dropout_mask, if given, has att's
    shape (0 or 1/(1-p))."""
    xp = xp_of(q)
    scores = q @ k.swapaxes(-1, -2) / math.sqrt(q.shape[-1])
    if is_causal:
        scores = xp.where(causal_mask(xp, q.shape[-2], k.shape[-2]), -xp.inf, scores)
    att = softmax_forward(scores)  # masked scores are -inf, so their probabilities are 0
    p = att * dropout_mask if dropout_mask is not None else att
    out = p @ v
    return out, att


# S = Q K^T / sqrt(hs), P = softmax(S) row by row (masked S = -inf, so masked P = 0),
# P' = P * mask (dropout), O = P' V. Going back, each line a matrix product or the softmax's rule:
#   dV  = P'^T dO                          (O is linear in V)
#   dP' = dO V^T,   dP = dP' * mask
#   dS  = P * (dP - rowsum(dP * P))        (softmax backward, row by row)
#   dQ  = dS K / sqrt(hs),   dK = dS^T Q / sqrt(hs)
# Masked positions have P = 0, so dS is 0 there without touching the causal mask again.
def attention_backward(dout, q, k, v, att, dropout_mask=None):
    scale = 1.0 / math.sqrt(q.shape[-1])
    p = att * dropout_mask if dropout_mask is not None else att
    dv = p.swapaxes(-1, -2) @ dout
    dp = dout @ v.swapaxes(-1, -2)
    if dropout_mask is not None:
        dp = dp * dropout_mask
    dscores = softmax_backward(dp, att)
    dq = dscores @ k * scale
    dk = dscores.swapaxes(-1, -2) @ q * scale
    return dq, dk, dv


# --- fast ---------------------------------------------------------------------------------------
# The same attention with fewer passes over the (Tq, Tk) matrices, for the CPU:
# - the causal mask is added as a bias of 0 and -inf (cheaper than a select), and the scale is
#   applied to q (Tq * hs numbers, not Tq * Tk);
# - the softmax is shifted by each head's max instead of each row's, with a fallback (below);
# - row sums go through BLAS (kernels/reductions.py), and the (Tq, Tk) buffers are reused in place;
# - outputs and gradients are laid out in memory like their inputs (empty_like), so that a model
#   which cut q, k, v from one (B, T, 3C) array gets views back, not copies, when it transposes.


def causal_bias(xp, t_q, t_k, dtype):
    """causal_mask as an additive (t_q, t_k) bias: 0 where query i may see key j, -inf where not."""
    return xp.triu(xp.full((t_q, t_k), -xp.inf, dtype=dtype), k=1 + t_k - t_q)


def attention_forward_fast(q, k, v, is_causal=True, dropout_mask=None):
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (q * scale) @ k.swapaxes(-1, -2)
    if is_causal:
        scores += causal_bias(xp_of(q), q.shape[-2], k.shape[-2], scores.dtype)
    if xp_of(scores) is numpy:
        att = _softmax_rows(scores, _head_max(scores))
        if att is None:
            att = _softmax_rows(scores, scores.max(axis=-1, keepdims=True))
    else:  # on a GPU a row's max costs what a head's does, and its guard would cost a sync
        att = _softmax_rows(scores, scores.max(axis=-1, keepdims=True), guard=False)
    p = att * dropout_mask if dropout_mask is not None else att
    return matmul_like(p, v, q), att


def matmul_like(a, b, like):
    """a @ b written into an array with `like`'s shape and memory order (empty_like keeps it)."""
    xp = xp_of(a)
    return xp.matmul(a, b, out=xp.empty_like(like))


# Softmax is unchanged by subtracting any constant from a row; the row's max is the usual one (no
# exp overflows). A constant per head serves as well and is much cheaper in NumPy, which takes the
# max of many short rows far more slowly than one max over all of a head's scores. With the
# head's max every exp is still <= 1, but a row far below it could underflow, so a row summing to
# less than exp(-60) sends the softmax back to row maxima (its exps within ~20 of its own max
# would fall under float32's smallest normal, e^-87). The check reads the sums on the host, which
# on a GPU would be a sync per call: there each row is shifted by its own max instead, the
# textbook softmax, which cannot underflow and needs no check (a row's max costs a GPU what a
# head's does). The price on the CPU: a row's rounding depends on the other rows of its head, so
# a later token can move an earlier output by a few ulp.
UNDERFLOW_GUARD = math.exp(-60)


def _head_max(scores):
    return scores.reshape(*scores.shape[:-2], -1).max(axis=-1)[..., None, None]


def _softmax_rows(scores, shift, guard=True):
    """softmax(scores) along the last axis computed as exp(scores - shift) / row sum, or None if
    guard and a row's sum is below UNDERFLOW_GUARD (a host read). scores is not modified."""
    att = scores - shift
    xp_of(att).exp(att, out=att)
    sums = row_sum(att)
    if guard and sums.min() < UNDERFLOW_GUARD:
        return None
    att *= 1.0 / sums
    return att


def attention_backward_fast(dout, q, k, v, att, dropout_mask=None):
    scale = 1.0 / math.sqrt(q.shape[-1])
    p = att * dropout_mask if dropout_mask is not None else att
    dv = matmul_like(p.swapaxes(-1, -2), dout, v)
    ds = dout @ v.swapaxes(-1, -2)  # dP' becomes dP, then dS, in place
    if dropout_mask is not None:
        ds *= dropout_mask
    ds -= row_sum(ds * att)
    ds *= att
    dq = matmul_like(ds, k * scale, q)
    dk = matmul_like(ds.swapaxes(-1, -2), q * scale, k)
    return dq, dk, dv
