"""Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p)."""


def dropout_mask(rng, shape, p, dtype):
    """A saved mask whose entries are 0 or 1/(1-p), drawn from `rng` (an xp.random.Generator)."""
    keep = rng.random(shape, dtype=dtype) >= p
    return keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))


def dropout_forward(x, mask):
    return x * mask


# y = x * mask elementwise, so dx = dy * mask: dropped elements pass no gradient, kept ones
# pass it scaled by the same 1/(1-p).
def dropout_backward(dy, mask):
    return dy * mask
