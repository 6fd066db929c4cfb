"""Reductions: sum, mean, max over an axis, several axes, or all of them."""

from engine.function import Function
from kernels.array_module import xp_of


def _expand(g, shape, axis, keepdims):
    """Give a reduced gradient back its reduced axes (as size 1), so it broadcasts to `shape`."""
    if keepdims or axis is None:
        return g.reshape([1] * len(shape)) if axis is None and not keepdims else g
    axes = (axis,) if isinstance(axis, int) else axis
    return xp_of(g).expand_dims(g, tuple(a % len(shape) for a in axes))


class Sum(Function):
    def forward(self, a):
        self.shape = a.shape
        return a.sum(axis=self.axis, keepdims=self.keepdims)

    # every input element adds once to its sum: dL/da = g, broadcast back over the summed axes
    def backward(self, g):
        return xp_of(g).broadcast_to(_expand(g, self.shape, self.axis, self.keepdims), self.shape)


class Mean(Function):
    def forward(self, a):
        self.shape = a.shape
        out = a.mean(axis=self.axis, keepdims=self.keepdims)
        self.count = a.size // max(out.size, 1) if a.size else 1
        return out

    # the mean of n elements: each one's gradient is g / n
    def backward(self, g):
        g = _expand(g, self.shape, self.axis, self.keepdims) / self.count
        return xp_of(g).broadcast_to(g, self.shape)


class Max(Function):
    def forward(self, a):
        self.a = a
        self.out = a.max(axis=self.axis, keepdims=True)
        return self.out if self.keepdims else xp_of(a).squeeze(self.out, axis=self.axis)

    # the gradient goes to the elements equal to the max, shared equally among ties
    def backward(self, g):
        winners = self.a == self.out
        share = winners / winners.sum(axis=self.axis, keepdims=True)
        return _expand(g, self.a.shape, self.axis, self.keepdims) * share.astype(self.a.dtype)
