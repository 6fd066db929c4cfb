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
    xp = xp_of(q)
    scale = 1.0 / math.sqrt(q.shape[-1])
    att = (q * scale) @ k.swapaxes(-1, -2)  # scaling q touches Tq*hd numbers, not Tq*Tk
    if is_causal:
        att += causal_bias(xp, q.shape[-2], k.shape[-2], att.dtype)
    att -= att.max(axis=-1, keepdims=True)
    xp.exp(att, out=att)
    att /= row_sum(att)
    p = att * dropout_mask if dropout_mask is not None else att
    return p @ v, att


# S = scale * Q K^T, P = softmax(S) row-wise (masked S = -inf, so masked P = 0),
# P' = P * mask (dropout), O = P' V. Going back:
#   dV  = P'^T dO                          (O is linear in V)
#   dP' = dO V^T,   dP = dP' * mask
#   dS  = P * (dP - rowsum(dP * P))        (softmax backward, row by row)
#   dQ  = scale * dS K,   dK = scale * dS^T Q
# Masked positions have P = 0, so dS is 0 there without touching the mask again: the mask lives
# only in the forward. One op, no graph of small steps; the (Tq, Tk) buffers are reused in place.
def attention_backward(dout, q, k, v, att, dropout_mask=None):
    scale = 1.0 / math.sqrt(q.shape[-1])
    p = att * dropout_mask if dropout_mask is not None else att
    dv = p.swapaxes(-1, -2) @ dout
    ds = dout @ v.swapaxes(-1, -2)
    if dropout_mask is not None:
        ds *= dropout_mask
    ds -= row_sum(ds * att)
    ds *= att
    dq = ds @ (k * scale)
    dk = ds.swapaxes(-1, -2) @ (q * scale)
    return dq, dk, dv
