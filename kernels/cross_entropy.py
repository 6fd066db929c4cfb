"""Cross-entropy of logits against integer targets, fused with log-softmax."""

from tinygrad_gpt.kernels.array_module import xp_of
from tinygrad_gpt.kernels.reductions import row_sum


def cross_entropy_forward(logits, targets, ignore_index=-100):
    """logits (N, C), targets (N,) ints in [0, C) or ignore_index. Returns the mean loss over the
    kept (not ignored) targets (0-d; NaN if all are ignored, as PyTorch's) and the saved
    log-sum-exp (N, 1)."""
    xp = xp_of(logits)
    m = logits.max(axis=-1, keepdims=True)  # subtracted inside the log: large logits stay finite
    lse = m + xp.log(xp.exp(logits - m).sum(axis=-1, keepdims=True))
    kept = targets != ignore_index
    rows = xp.arange(logits.shape[0])
    loss = mean_over_kept(lse[:, 0] - logits[rows, xp.where(kept, targets, 0)], kept)
    return loss, lse


def mean_loss(logits, targets, lse, ignore_index):
    """The loss from the log-sum-exp lse (N, 1): lse_n - x_{n,t_n} averaged over the kept rows."""
    xp = xp_of(logits)
    kept = targets != ignore_index
    picked = logits[xp.arange(logits.shape[0]), xp.where(kept, targets, 0)]
    return mean_over_kept(lse[:, 0] - picked, kept)


def mean_over_kept(row_loss, kept):
    """The mean of row_loss over the rows where kept is true, in row_loss's dtype. With every row
    kept it is row_loss.mean() bit for bit: the same sum divided by the same count (NumPy's mean
    divides in float64 and rounds back too)."""
    return (xp_of(row_loss).where(kept, row_loss, 0).sum() / kept.sum()).astype(row_loss.dtype)


# L = 1/K sum_{n kept} (lse_n - x_{n,t_n}), lse_n = log sum_c e^{x_{n,c}}, d lse_n / d x_{n,c} = p_{n,c}
# (the softmax), K the number of kept targets (t_n != ignore_index). So dL/dx_{n,c} =
# (p_{n,c} - [c == t_n]) / K on a kept row: probabilities minus the one-hot target, scaled by the
# upstream gradient over K, not N. An ignored row is in no term of the sum: its gradient is zero
# (also when every row is ignored and the loss is NaN, as PyTorch's). p is recomputed from the
# saved lse (one exp).
def cross_entropy_backward(dout, logits, targets, lse, ignore_index=-100):
    xp = xp_of(logits)
    kept = targets != ignore_index
    probs = xp.exp(logits - lse)
    one_hot = xp.zeros_like(logits)
    one_hot[xp.arange(logits.shape[0]), xp.where(kept, targets, 0)] = 1.0
    return xp.where(kept[:, None], (probs - one_hot) * kept_scale(dout, kept, logits.dtype), 0)


def kept_scale(dout, kept, dtype):
    """dout / K in the logits' dtype: the float64 quotient rounded once more is the quotient of
    the same division done in float32 (a correctly rounded division survives the double rounding).
    With no row kept the scale multiplies nothing that is kept: 1 stands in for K = 0."""
    return xp_of(kept).asarray(dout / xp_of(kept).maximum(kept.sum(), 1), dtype=dtype)


# --- fast ---------------------------------------------------------------------------------------


def cross_entropy_forward_fast(logits, targets, ignore_index=-100):
    """cross_entropy_forward with the row sums done by BLAS (kernels/reductions.py): quicker on
    rows of a few dozen classes, the same sums in another rounding order."""
    xp = xp_of(logits)
    m = logits.max(axis=-1, keepdims=True)
    lse = m + xp.log(row_sum(xp.exp(logits - m)))
    return mean_loss(logits, targets, lse, ignore_index), lse


def cross_entropy_backward_fast(dout, logits, targets, lse, ignore_index=-100):
    """cross_entropy_backward without the one-hot array: 1 is subtracted from the probabilities in
    place at the targets, and the scaling and the zeroing of the ignored rows are done in place too
    (no temporaries of (N, C))."""
    xp = xp_of(logits)
    kept = targets != ignore_index
    dlogits = xp.exp(logits - lse)
    dlogits[xp.arange(logits.shape[0]), xp.where(kept, targets, 0)] -= 1.0
    dlogits *= kept_scale(dout, kept, dlogits.dtype)
    dlogits[~kept] = 0.0
    return dlogits
