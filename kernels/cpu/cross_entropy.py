"""Cross-entropy (kernels/cross_entropy.py has the math and the derivation) keeping its
exponentials for the backward: the forward's e = exp(logits - max) and their row sums are what it
saves, so the backward's probabilities are e / sums and no exp is computed twice. Over GPT-2's
50257 classes the exps are most of the work, and both passes stay NumPy's (Numba's exp would be a
C-library call per number, as kernels/cpu/attention.py notes). The price: an (N, C) array more
held from the forward to the backward, as PyTorch's log_softmax holds its output."""

import numpy

from tinygrad_gpt.kernels.cross_entropy import kept_scale, mean_loss
from tinygrad_gpt.kernels.reductions import row_sum


def cross_entropy_forward(logits, targets, ignore_index=-100):
    maxes = logits.max(axis=-1, keepdims=True)  # subtracted inside the log: large logits stay finite
    e = numpy.exp(logits - maxes)  # not in place: NumPy's exp into its own input ran slower here
    sums = row_sum(e)
    return mean_loss(logits, targets, maxes + numpy.log(sums), ignore_index), (e, sums)


def cross_entropy_backward(dout, logits, targets, saved, ignore_index=-100):
    """dL/dx = (p - one_hot) * dout / K on kept rows, 0 on ignored ones, with p = e / sums: one
    pass over (N, C) makes p times the scale; the one-hot is subtracted at the targets only."""
    e, sums = saved
    kept = targets != ignore_index
    scale = kept_scale(dout, kept, e.dtype)
    dlogits = e * (scale / sums)
    dlogits[numpy.arange(e.shape[0]), numpy.where(kept, targets, 0)] -= scale
    dlogits[~kept] = 0.0
    return dlogits
