"""Layer normalization over the last axis (llm.c's layernorm, on arrays)."""

from tinygrad_gpt.kernels.array_module import xp_of
from tinygrad_gpt.kernels.reductions import column_sum, row_mean


def layernorm_forward(x, weight, bias, eps=1e-5):
    """out = (x - mean) * rstd * weight + bias, per row of the last axis (weight, bias: None to skip).
    Returns out and the (..., 1) mean and rstd, which backward needs."""
    xp = xp_of(x)
    mean = x.mean(axis=-1, keepdims=True)
    xc = x - mean
    var = (xc * xc).mean(axis=-1, keepdims=True)  # biased, as in the normalization itself
    rstd = 1.0 / xp.sqrt(var + eps)
    norm = xc * rstd
    out = norm
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out, mean, rstd


def _sum_rows(a):
    """a summed over every axis but the last: (..., C) -> (C,)."""
    return a.reshape(-1, a.shape[-1]).sum(axis=0)


# Per row of C values: norm = (x - mean) * rstd, out = weight * norm + bias, rstd = (var + eps)^-1/2.
#   dbias = sum over rows of dout;  dweight = sum over rows of dout * norm
# dnorm = dout * weight is the gradient reaching norm. norm depends on x directly, through the mean
# (d mean / dx_k = 1/C) and through rstd (d rstd / dx_k = -rstd^3 (x_k - mean) / C). Collecting:
#   dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm))
# norm is recomputed from the saved mean and rstd instead of saved itself (llm.c's trade: two
# numbers per row kept between the passes, not a third copy of the activations).
def layernorm_backward(dout, x, weight, mean, rstd):
    """Returns dx, dweight, dbias (dweight and dbias summed over every leading axis)."""
    norm = (x - mean) * rstd
    dbias = _sum_rows(dout)
    dweight = _sum_rows(dout * norm)
    dnorm = dout * weight if weight is not None else dout
    dnorm_mean = dnorm.mean(axis=-1, keepdims=True)
    dnorm_norm_mean = (dnorm * norm).mean(axis=-1, keepdims=True)
    dx = dnorm - dnorm_mean  # the path through the mean
    dx -= norm * dnorm_norm_mean  # the path through rstd
    dx *= rstd
    return dx, dweight, dbias


# --- fast ---------------------------------------------------------------------------------------
# The same math in fewer passes and temporaries, for the CPU, where every fresh (B, T, C) array
# costs more than the arithmetic done in it: sums over the short last axis go through BLAS
# (kernels/reductions.py), buffers are reused in place, and both means of dnorm = dout * weight
# become products with weight: mean(dnorm) = dout . weight / C, mean(dnorm * norm) =
# (dout * norm) . weight / C, so dnorm is never summed and dout * norm serves dweight too.


def layernorm_forward_fast(x, weight, bias, eps=1e-5):
    xp = xp_of(x)
    mean = row_mean(x)
    xc = x - mean
    rstd = 1.0 / xp.sqrt(row_mean(xc * xc) + eps)
    out = xc  # normalized in place: xc is not needed again
    out *= rstd
    if weight is not None:
        out *= weight
    if bias is not None:
        out += bias
    return out, mean, rstd


def layernorm_backward_fast(dout, x, weight, mean, rstd):
    norm = x - mean
    norm *= rstd
    dout_norm = dout * norm
    dbias = column_sum(dout)
    dweight = column_sum(dout_norm)
    dx = dout * weight if weight is not None else dout.copy()  # dnorm
    dx -= _mean_times_weight(dout, weight)
    norm *= _mean_times_weight(dout_norm, weight)  # norm is not needed again: reuse it
    dx -= norm
    dx *= rstd
    return dx, dweight, dbias


def _mean_times_weight(a, weight):
    """mean over the last axis of a * weight (of a alone when weight is None), by one BLAS product."""
    if weight is None:
        return row_mean(a)
    return (a @ weight)[..., None] * (1.0 / a.shape[-1])
