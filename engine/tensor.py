"""Tensor: an array plus what reverse-mode autodiff needs (the node that made it, its gradient).

Operators and methods are attached in engine/methods.py; backward() is engine/autograd.py's walk.
"""

import numpy

from tinygrad_gpt.engine import backend
from tinygrad_gpt.kernels.array_module import xp_of


class Tensor:
    __array_priority__ = 1000  # numpy scalar/array on the left defers to our operators

    def __init__(self, data, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        if not hasattr(data, "dtype"):  # a Python scalar or (nested) list
            data = numpy.asarray(data)
            if data.dtype == numpy.float64:  # Python floats become float32, like torch
                data = data.astype(numpy.float32)
        self._init(backend.asarray(data))  # onto the active backend (no copy if already there)
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _from_array(cls, array):
        """Wrap an op's output without any conversion."""
        t = cls.__new__(cls)
        t._init(array)
        return t

    def _init(self, array):
        self.data = array
        self.grad = None
        self.requires_grad = False
        self._ctx = None  # the Function that produced this tensor; None for leaves
        self._output_index = 0  # which of _ctx's outputs this is
        self._graph_freed = False  # backward walked through it (its _ctx is gone)
        self._retains_grad = False

    def requires_grad_(self, flag=True):
        if flag and self.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad (this one is {self.dtype})")
        self.requires_grad = flag
        return self

    def retain_grad(self):
        """Let backward() fill this tensor's .grad although it is not a leaf (torch's name); for study
        (engine.draw shows them), since it keeps an array per tensor alive."""
        self._retains_grad = True
        return self

    # --- what it is --------------------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    device = property(lambda self: backend.device_of(self.data))
    is_leaf = property(lambda self: self._ctx is None)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{grad})"

    def numpy(self):
        """A host numpy copy of the data."""
        return backend.to_numpy(self.data).copy()

    def item(self):
        return self.data.item()

    def detach(self):
        """The same data, cut off from the graph."""
        return Tensor._from_array(self.data)

    def to(self, device):
        """This tensor on `device` ("cpu" or "cuda"), as a new leaf (same requires_grad)."""
        if device == self.device:
            return self
        out = Tensor._from_array(backend.asarray(self.data, device=device))
        out.requires_grad = self.requires_grad
        return out

    def zero_grad(self):
        self.grad = None

    def accumulate_grad(self, grad, own=True):
        """Add `grad` (an array of this tensor's shape) into .grad, in .grad's dtype. own: whether
        the tensor may keep the array itself as .grad (else a copy is kept)."""
        self.grad = add_into_own(self.grad, grad.astype(self.dtype, copy=False), own)


def add_grads(total, grad):
    """The rule for gradients that meet inside the backward walk (a tensor used twice): they add,
    out of place, since either array may be shared (an op may hand one array to two inputs); the
    first is taken as it is."""
    return grad if total is None else total + grad


def add_into_own(total, grad, own=True):
    """The rule for a leaf's gradient (.grad, or what engine.grad collects): it is an array of its
    own (clipping and the optimizer change .grad in place), so the first contribution becomes it
    if the leaf may keep that array (own), else a copy of it, and later ones add into it in place,
    only read. No new array per addition: for GPT-2's 124M parameters, shards and micro-batches
    would otherwise allocate half a gigabyte each, and fresh memory is slow to fault in."""
    if total is None:
        return grad if own else grad.copy()
    total += grad
    return total


def check_same_device(op_name, inputs):
    if len({type(x.data) for x in inputs if isinstance(x, Tensor)}) <= 1:  # arrays of one type: one device
        return
    devices = {x.device for x in inputs if isinstance(x, Tensor)}
    if len(devices) > 1:
        raise RuntimeError(
            f"{op_name}: inputs live on different devices ({', '.join(sorted(devices))}); move them with .to()"
        )


def as_array(x, like):
    """An index, target or mask argument (Tensor, array or list) as an array of `like`'s module."""
    if isinstance(x, Tensor):
        x = x.data
    xp = xp_of(like)
    return x if xp_of(x) is xp and hasattr(x, "dtype") else backend.asarray(x, device=backend.device_of(like))
