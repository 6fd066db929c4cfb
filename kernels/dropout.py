"""Inverted dropout: zero each element with probability p, scale the rest by 1/(1-p)."""


def dropout_mask(uniform, p):
    """The saved mask from uniform draws in [0, 1): 0 where u < p (dropped), 1/(1-p) elsewhere."""
    keep = uniform >= p
    return keep.astype(uniform.dtype) * uniform.dtype.type(1.0 / (1.0 - p))


def dropout_forward(x, mask):
    return x * mask


# out = x * mask elementwise, so dx = dout * mask: dropped elements pass no gradient, kept ones
# pass it scaled by the same 1/(1-p).
def dropout_backward(dout, mask):
    return dout * mask
