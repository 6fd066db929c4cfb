"""Reductions: sum, mean, max over an axis, several axes, or all of them."""

from tinygrad_gpt.engine.function import Function
from tinygrad_gpt.kernels.array_module import xp_of


def _expand(dout, shape, axis, keepdims):
    """Give a reduced gradient back its reduced axes (as size 1), so it broadcasts to `shape`."""
    if keepdims or axis is None:
        return dout.reshape([1] * len(shape)) if axis is None and not keepdims else dout
    axes = (axis,) if isinstance(axis, int) else axis
    return xp_of(dout).expand_dims(dout, tuple(a % len(shape) for a in axes))


class Sum(Function):
    def forward(self, a, axis, keepdims):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        return a.sum(axis=axis, keepdims=keepdims)

    # every input element adds once to its sum: da = dout, broadcast back over the summed axes
    def backward(self, dout):
        return xp_of(dout).broadcast_to(_expand(dout, self.shape, self.axis, self.keepdims), self.shape)


class Mean(Function):
    def forward(self, a, axis, keepdims):
        self.shape, self.axis, self.keepdims = a.shape, axis, keepdims
        out = a.mean(axis=axis, keepdims=keepdims)
        self.count = a.size // max(out.size, 1) if a.size else 1
        return out

    # the mean of n elements: each one's gradient is dout / n
    def backward(self, dout):
        da = _expand(dout, self.shape, self.axis, self.keepdims) / self.count
        return xp_of(da).broadcast_to(da, self.shape)


class Max(Function):
    def forward(self, a, axis, keepdims):
        self.a, self.axis, self.keepdims = a, axis, keepdims
        self.out = a.max(axis=axis, keepdims=True)
        return self.out if keepdims else xp_of(a).squeeze(self.out, axis=axis)

    # the gradient goes to the elements equal to the max, shared equally among ties
    def backward(self, dout):
        winners = self.a == self.out
        share = winners / winners.sum(axis=self.axis, keepdims=True)
        return _expand(dout, self.a.shape, self.axis, self.keepdims) * share.astype(self.a.dtype)
