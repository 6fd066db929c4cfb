"""Layer normalization over the last axis (llm.c's layernorm, on arrays)."""

from kernels.array_module import xp_of
from kernels.reductions import column_sum, row_mean


def layernorm_forward(x, weight, bias, eps=1e-5):
    """y = (x - mean) * rstd * weight + bias. Returns y and the (…, 1) mean and rstd it saves."""
    xp = xp_of(x)
    mean = row_mean(x)
    xc = x - mean
    rstd = 1.0 / xp.sqrt(row_mean(xc * xc) + eps)
    y = xc * rstd
    if weight is not None:
        y *= weight
    if bias is not None:
        y += bias
    return y, mean, rstd


# Per row of C values: xhat = (x - mean) * rstd, y = w * xhat + b, rstd = (var + eps)^-1/2.
#   db = sum over rows of dy;  dw = sum over rows of dy * xhat
#   g = dy * w is the gradient reaching xhat. xhat depends on x directly, through the mean
#   (d mean/dx_k = 1/C) and through rstd (d rstd/dx_k = -rstd^3 (x_k - mean) / C). Collecting:
#   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
# The two means are the only reductions; the rest is elementwise. We recompute xhat from the
# saved mean and rstd instead of storing it (llm.c's trade: two (…,1) arrays, not a full copy).
# Both means of g = dy * w are products with w: mean(g) = dy . w / C, mean(g xhat) = (dy xhat) . w / C,
# so g itself is never summed and dy * xhat serves dweight too.
def layernorm_backward(dy, x, weight, mean, rstd):
    """Returns dx, dweight, dbias (dweight/dbias summed over all leading axes)."""
    xhat = x - mean
    xhat *= rstd
    dy_xhat = dy * xhat
    dbias = column_sum(dy)
    dweight = column_sum(dy_xhat)
    dx = dy * weight if weight is not None else dy.copy()  # g
    dx -= _mean_of_product(dy, weight)
    xhat *= _mean_of_product(dy_xhat, weight)
    dx -= xhat
    dx *= rstd
    return dx, dweight, dbias


def _mean_of_product(a, weight):
    """mean over the last axis of a * weight (of a alone when weight is None), by one BLAS product."""
    if weight is None:
        return row_mean(a)
    return (a @ weight)[..., None] * (1.0 / a.shape[-1])
