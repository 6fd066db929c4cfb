"""Ops that move elements around without arithmetic: reshape, permute, indexing, concat, stack.

Their backward passes are the inverse movement: each gradient element goes back to the place
its forward element came from.
"""

import itertools

from engine.function import Function
from kernels.array_module import xp_of


class Reshape(Function):
    def forward(self, a):
        self.in_shape = a.shape
        return a.reshape(self.shape)

    def backward(self, g):
        return g.reshape(self.in_shape)


class Permute(Function):
    def forward(self, a):
        return a.transpose(self.axes)

    # the inverse permutation puts every axis back where it was
    def backward(self, g):
        return g.transpose(tuple(sorted(range(len(self.axes)), key=self.axes.__getitem__)))


class Contiguous(Function):
    def forward(self, a):
        return xp_of(a).ascontiguousarray(a)

    def backward(self, g):
        return g


def _is_advanced(index):
    items = index if isinstance(index, tuple) else (index,)
    return any(hasattr(i, "dtype") or isinstance(i, list) for i in items)


class GetItem(Function):
    def forward(self, a):
        self.shape, self.dtype = a.shape, a.dtype
        return a[self.index]

    # out = a[index]: the gradient flows back to the picked positions. With integer arrays a
    # position can be picked several times, so it is a scatter-add; plain slices just assign.
    def backward(self, g):
        xp = xp_of(g)
        grad = xp.zeros(self.shape, dtype=self.dtype)
        if _is_advanced(self.index):
            xp.add.at(grad, self.index, g)
        else:
            grad[self.index] = g
        return grad


class Split(Function):
    """Consecutive pieces of `a` along `axis`, cut before each of `indices`: views, one node."""

    def forward(self, a):
        pieces = tuple(xp_of(a).split(a, self.indices, axis=self.axis))
        self.piece_shapes, self.dtype = [p.shape for p in pieces], a.dtype
        return pieces

    # each piece's gradient goes back to the slab it was cut from: one concatenation (zeros for a
    # piece no gradient reached), not a zero-filled copy of the whole input per piece, summed
    def backward(self, *grads):
        xp = xp_of(next(g for g in grads if g is not None))
        return xp.concatenate(
            [g if g is not None else xp.zeros(shape, dtype=self.dtype) for g, shape in zip(grads, self.piece_shapes)],
            axis=self.axis,
        )


class MaskedFill(Function):
    def forward(self, a, mask):
        self.mask = mask
        return xp_of(a).where(mask, a.dtype.type(self.value), a)

    # filled positions are constants now: no gradient reaches the input there
    def backward(self, g):
        return xp_of(g).where(self.mask, g.dtype.type(0), g), None


class Concat(Function):
    def forward(self, *arrays):
        self.sizes = [a.shape[self.axis] for a in arrays]
        return xp_of(arrays[0]).concatenate(arrays, axis=self.axis)

    # each input gets back the slab of the gradient it filled
    def backward(self, g):
        return tuple(xp_of(g).split(g, list(itertools.accumulate(self.sizes[:-1])), axis=self.axis))


class Stack(Function):
    def forward(self, *arrays):
        return xp_of(arrays[0]).stack(arrays, axis=self.axis)

    def backward(self, g):
        xp = xp_of(g)
        return tuple(xp.take(g, i, axis=self.axis) for i in range(g.shape[self.axis]))
