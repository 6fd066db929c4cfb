"""Ops that move elements around without arithmetic: reshape, permute, indexing, concat, stack.

Their backward passes are the inverse movement: each gradient element goes back to the place
its forward element came from.
"""

import itertools

from tinygrad_gpt.engine.function import Function
from tinygrad_gpt.kernels.array_module import xp_of


class Reshape(Function):
    def forward(self, a, shape):
        self.in_shape = a.shape
        return a.reshape(shape)

    def backward(self, dout):
        return dout.reshape(self.in_shape)


class Permute(Function):
    def forward(self, a, axes):
        self.axes = axes
        return a.transpose(axes)

    # the inverse permutation puts every axis back where it was
    def backward(self, dout):
        return dout.transpose(tuple(sorted(range(len(self.axes)), key=self.axes.__getitem__)))


class Contiguous(Function):
    def forward(self, a):
        return xp_of(a).ascontiguousarray(a)

    def backward(self, dout):
        return dout


def _is_advanced(index):
    items = index if isinstance(index, tuple) else (index,)
    return any(hasattr(i, "dtype") or isinstance(i, list) for i in items)


class GetItem(Function):
    def forward(self, a, index):
        self.shape, self.dtype, self.index = a.shape, a.dtype, index
        return a[index]

    # out = a[index]: the gradient flows back to the picked positions. With integer arrays a
    # position can be picked several times, so it is a scatter-add; plain slices just assign.
    def backward(self, dout):
        xp = xp_of(dout)
        da = xp.zeros(self.shape, dtype=self.dtype)
        if _is_advanced(self.index):
            xp.add.at(da, self.index, dout)
        else:
            da[self.index] = dout
        return da


class Split(Function):
    """Consecutive pieces of `a` along `axis`, cut before each of `indices`: views, one node."""

    def forward(self, a, indices, axis):
        pieces = tuple(xp_of(a).split(a, indices, axis=axis))
        self.piece_shapes, self.dtype, self.axis = [p.shape for p in pieces], a.dtype, axis
        return pieces

    # each piece's gradient goes back to the slab it was cut from: one concatenation (zeros for a
    # piece no gradient reached), not a zero-filled copy of the whole input per piece, summed
    def backward(self, *douts):
        xp = xp_of(next(d for d in douts if d is not None))
        return xp.concatenate(
            [d if d is not None else xp.zeros(shape, dtype=self.dtype) for d, shape in zip(douts, self.piece_shapes)],
            axis=self.axis,
        )


class MaskedFill(Function):
    def forward(self, a, mask, value):
        self.mask = mask
        return xp_of(a).where(mask, a.dtype.type(value), a)

    # filled positions are constants now: no gradient reaches the input there
    def backward(self, dout):
        return xp_of(dout).where(self.mask, dout.dtype.type(0), dout), None


class Concat(Function):
    def forward(self, *arrays, axis):
        self.sizes, self.axis = [a.shape[axis] for a in arrays], axis
        return xp_of(arrays[0]).concatenate(arrays, axis=axis)

    # each input gets back the slab of the gradient it filled
    def backward(self, dout):
        return tuple(xp_of(dout).split(dout, list(itertools.accumulate(self.sizes[:-1])), axis=self.axis))


class Stack(Function):
    def forward(self, *arrays, axis):
        self.axis = axis
        return xp_of(arrays[0]).stack(arrays, axis=axis)

    def backward(self, dout):
        xp = xp_of(dout)
        return tuple(xp.take(dout, i, axis=self.axis) for i in range(dout.shape[self.axis]))
