"""Cross-entropy of logits against integer targets, fused with log-softmax."""

from tinygrad_gpt.kernels.array_module import xp_of
from tinygrad_gpt.kernels.reductions import row_sum


def cross_entropy_forward(logits, targets):
    """logits (N, C), targets (N,) ints. Returns the mean loss (0-d) and the saved log-sum-exp (N, 1)."""
    xp = xp_of(logits)
    m = logits.max(axis=-1, keepdims=True)  # subtracted inside the log: large logits stay finite
    lse = m + xp.log(xp.exp(logits - m).sum(axis=-1, keepdims=True))
    rows = xp.arange(logits.shape[0])
    loss = (lse[:, 0] - logits[rows, targets]).mean()
    return loss, lse


# L = 1/N sum_n (lse_n - x_{n,t_n}), lse_n = log sum_c e^{x_{n,c}}, d lse_n / d x_{n,c} = p_{n,c}
# (the softmax). So dL/dx_{n,c} = (p_{n,c} - [c == t_n]) / N: probabilities minus the one-hot
# target, scaled by the upstream gradient. p is recomputed from the saved lse (one exp).
def cross_entropy_backward(dout, logits, targets, lse):
    xp = xp_of(logits)
    n = logits.shape[0]
    probs = xp.exp(logits - lse)
    one_hot = xp.zeros_like(logits)
    one_hot[xp.arange(n), targets] = 1.0
    return (probs - one_hot) * (dout / n)


# --- fast ---------------------------------------------------------------------------------------


def cross_entropy_forward_fast(logits, targets):
    """cross_entropy_forward with the row sums done by BLAS (kernels/reductions.py): quicker on
    rows of a few dozen classes, the same sums in another rounding order."""
    xp = xp_of(logits)
    m = logits.max(axis=-1, keepdims=True)
    lse = m + xp.log(row_sum(xp.exp(logits - m)))
    loss = (lse[:, 0] - logits[xp.arange(logits.shape[0]), targets]).mean()
    return loss, lse


def cross_entropy_backward_fast(dout, logits, targets, lse):
    """cross_entropy_backward without the one-hot array: 1 is subtracted from the probabilities in
    place at the targets, and the scaling is done in place too (no temporaries of (N, C))."""
    xp = xp_of(logits)
    n = logits.shape[0]
    dlogits = xp.exp(logits - lse)
    dlogits[xp.arange(n), targets] -= 1.0
    dlogits *= dout / n
    return dlogits
