"""Cross-entropy of logits against integer targets, fused with log-softmax."""

from kernels.array_module import xp_of
from kernels.reductions import row_sum


def cross_entropy_forward(logits, targets):
    """logits (N, C), targets (N,) ints. Returns the mean loss (0-d) and the saved log-sum-exp (N, 1)."""
    xp = xp_of(logits)
    m = logits.max(axis=-1, keepdims=True)
    lse = m + xp.log(row_sum(xp.exp(logits - m)))
    rows = xp.arange(logits.shape[0])
    loss = (lse[:, 0] - logits[rows, targets]).mean()
    return loss, lse


# L = 1/N sum_n (lse_n - x_{n,t_n}), lse_n = log sum_c e^{x_{n,c}}, d lse_n / d x_{n,c} = p_{n,c}
# (the softmax). So dL/dx_{n,c} = (p_{n,c} - [c == t_n]) / N: probabilities minus the one-hot
# target, scaled by the upstream gradient. p is recomputed from the saved lse (one exp).
def cross_entropy_backward(dloss, logits, targets, lse):
    xp = xp_of(logits)
    n = logits.shape[0]
    dlogits = xp.exp(logits - lse)
    dlogits[xp.arange(n), targets] -= 1.0
    dlogits *= dloss / n
    return dlogits
