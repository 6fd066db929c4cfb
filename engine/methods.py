"""Operators and methods of Tensor, each one line that applies the op from engine/ops_*.py; and
backward(), the walk in engine/autograd.py."""

from tinygrad_gpt.engine import autograd
from tinygrad_gpt.engine import functional as F
from tinygrad_gpt.engine.ops_math import Add, Div, Exp, Log, MatMul, Mul, Neg, Pow, Relu, Sqrt, Sub, Tanh
from tinygrad_gpt.engine.ops_reduce import Max, Mean, Sum
from tinygrad_gpt.engine.ops_shape import Contiguous, GetItem, MaskedFill, Permute, Reshape, Split
from tinygrad_gpt.engine.tensor import Tensor, as_array


def _matmul(a, b):
    """a @ b with NumPy's rules for 1-D operands (promoted to a matrix, then squeezed away)."""
    a = a if isinstance(a, Tensor) else Tensor(a)
    b = b if isinstance(b, Tensor) else Tensor(b)
    if a.ndim == 1 and b.ndim == 1:
        return (a * b).sum()
    if a.ndim == 1:
        return MatMul.apply(a.reshape(1, -1), b).reshape(*b.shape[:-2], b.shape[-1])
    if b.ndim == 1:
        return MatMul.apply(a, b.reshape(-1, 1)).reshape(a.shape[:-1])
    return MatMul.apply(a, b)


def _shape_args(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape


def _index(index):
    """Tensor indices become arrays (slices, ints, None and Ellipsis pass through)."""
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index.data if isinstance(index, Tensor) else index


def _transpose(x, a, b):
    axes = list(range(x.ndim))
    axes[a], axes[b] = axes[b], axes[a]
    return Permute.apply(x, axes=tuple(axes))


def _split(x, split_size, axis=0):
    """Consecutive pieces of `split_size` along `axis` (the last may be shorter), as views."""
    return list(Split.apply(x, axis=axis, indices=list(range(split_size, x.shape[axis], split_size))))


Tensor.backward = autograd.backward
Tensor.__add__ = lambda a, b: Add.apply(a, b)
Tensor.__radd__ = lambda a, b: Add.apply(b, a)
Tensor.__sub__ = lambda a, b: Sub.apply(a, b)
Tensor.__rsub__ = lambda a, b: Sub.apply(b, a)
Tensor.__mul__ = lambda a, b: Mul.apply(a, b)
Tensor.__rmul__ = lambda a, b: Mul.apply(b, a)
Tensor.__truediv__ = lambda a, b: Div.apply(a, b)
Tensor.__rtruediv__ = lambda a, b: Div.apply(b, a)
Tensor.__pow__ = lambda a, b: Pow.apply(a, b)
Tensor.__rpow__ = lambda a, b: Pow.apply(b, a)
Tensor.__matmul__ = _matmul
Tensor.__rmatmul__ = lambda a, b: _matmul(b, a)
Tensor.__neg__ = lambda a: Neg.apply(a)
Tensor.__getitem__ = lambda x, index: GetItem.apply(x, index=_index(index))

Tensor.sum = lambda x, axis=None, keepdims=False: Sum.apply(x, axis=axis, keepdims=keepdims)
Tensor.mean = lambda x, axis=None, keepdims=False: Mean.apply(x, axis=axis, keepdims=keepdims)
Tensor.max = lambda x, axis=None, keepdims=False: Max.apply(x, axis=axis, keepdims=keepdims)
Tensor.exp = lambda x: Exp.apply(x)
Tensor.log = lambda x: Log.apply(x)
Tensor.sqrt = lambda x: Sqrt.apply(x)
Tensor.tanh = lambda x: Tanh.apply(x)
Tensor.relu = lambda x: Relu.apply(x)
Tensor.gelu = F.gelu
Tensor.softmax = F.softmax
Tensor.log_softmax = F.log_softmax
Tensor.reshape = lambda x, *shape: Reshape.apply(x, shape=_shape_args(shape))
Tensor.view = Tensor.reshape
Tensor.permute = lambda x, *axes: Permute.apply(x, axes=_shape_args(axes))
Tensor.transpose = _transpose
Tensor.T = property(lambda x: Permute.apply(x, axes=tuple(reversed(range(x.ndim)))))
Tensor.contiguous = lambda x: Contiguous.apply(x)
Tensor.masked_fill = lambda x, mask, value: MaskedFill.apply(x, as_array(mask, x.data), value=value)
Tensor.split = _split
