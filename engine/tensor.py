"""Tensor: an array plus what reverse-mode autodiff needs (the node that made it, its gradient)."""

import collections

import numpy

from engine import backend, trace
from engine.profiler import timed
from kernels.array_module import xp_of


class Tensor:
    __array_priority__ = 1000  # numpy scalar/array on the left defers to our operators

    def __init__(self, data, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        if not hasattr(data, "dtype"):  # a Python scalar or (nested) list
            data = numpy.asarray(data)
            if data.dtype == numpy.float64:  # Python floats become float32, like torch
                data = data.astype(numpy.float32)
        self.data = backend.asarray(data)  # onto the active backend (no copy if already there)
        self.grad = None
        self._ctx = None  # the Function that produced this tensor; None for leaves
        self._output_index = 0  # which of _ctx's outputs this is
        self._graph_freed = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _from_array(cls, array):
        """Wrap an op's output without any conversion."""
        t = cls.__new__(cls)
        t.data, t.grad, t._ctx, t._graph_freed, t.requires_grad = array, None, None, False, False
        t._output_index = 0
        return t

    def requires_grad_(self, flag=True):
        if flag and self.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad (this one is {self.dtype})")
        self.requires_grad = flag
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

    def accumulate_grad(self, grad, copy=False):
        """self.grad += grad (an array of this tensor's shape, cast to its dtype). A first gradient
        becomes .grad as it is, unless copy (the caller keeps using that array: later gradients
        are added into .grad in place)."""
        self.grad = _sum_grads(self.grad, grad, self.dtype, copy)

    # --- backward ----------------------------------------------------------------------------
    def backward(self, grad=None):
        """Fill `.grad` of every leaf that requires grad with d(self)/d(leaf), accumulating (+=).

        The graph is ordered once (iteratively: no recursion limit), walked from this tensor back,
        and freed node by node as it is walked, so memory stays flat across training steps.
        """
        _backprop(self, grad, lambda leaf, g, shared: leaf.accumulate_grad(g, copy=shared))

    # Operators, methods and indexing are attached in engine/methods.py.


def grad(output, inputs, grad_output=None):
    """d(output)/d(input) for each leaf tensor in `inputs`, as new tensors (None for an input the
    graph does not reach); nothing is written to any `.grad` (torch.autograd.grad). Threads that
    share parameters can each take their own gradients this way. The graph is freed as by backward()."""
    if any(x._ctx is not None for x in inputs):
        raise ValueError("grad(): inputs must be leaf tensors (parameters, or tensors made with requires_grad)")
    found = {}

    def keep(leaf, g, shared):
        found[id(leaf)] = _sum_grads(found.get(id(leaf)), g, leaf.dtype, shared)

    _backprop(output, grad_output, keep)
    return [Tensor._from_array(found[id(x)]) if id(x) in found else None for x in inputs]


def _backprop(root, grad, on_leaf):
    """Walk the graph from root back, calling on_leaf(leaf, gradient, shared) for each gradient
    that reaches a leaf requiring grad (`shared`: the array may be referenced elsewhere)."""
    if not root.requires_grad:
        raise RuntimeError("backward() on a tensor that does not require grad (no graph leads to it)")
    if root._graph_freed:
        raise RuntimeError("backward() through a graph that was already freed by an earlier backward()")
    if grad is None:
        if root.size != 1:
            raise RuntimeError(f"backward() without a gradient needs a single-element tensor, not shape {root.shape}")
        grad = xp_of(root.data).ones_like(root.data)
    else:
        grad = grad.data if isinstance(grad, Tensor) else backend.asarray(grad, dtype=root.dtype, device=root.device)
    if root._ctx is None:  # backward on a leaf
        on_leaf(root, grad, True)
        return
    grads = {id(root): grad}
    order = _topological_order(root)
    # a node with several outputs runs its backward once, at the last of them to be walked
    outputs_left = collections.Counter(id(node._ctx) for node in order)
    output_grads = {}
    tracing = trace.is_tracing()
    for node in reversed(order):
        fn, g = node._ctx, grads.pop(id(node), None)
        node._ctx, node._graph_freed = None, True
        fn.outputs_walked += 1
        slots = output_grads.setdefault(id(fn), [None] * fn.n_outputs)
        slots[node._output_index] = g
        outputs_left[id(fn)] -= 1
        if outputs_left[id(fn)]:
            continue
        del output_grads[id(fn)]
        if all(s is None for s in slots):
            continue
        in_grads = timed(type(fn).__name__, "backward", fn.backward, *slots)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        in_grads = [
            sum_to_shape(gx, x.shape) if gx is not None and isinstance(x, Tensor) and x.requires_grad else None
            for x, gx in zip(fn.inputs, in_grads)
        ]
        if tracing:
            trace.report(fn, slots, in_grads)
        for x, gx in zip(fn.inputs, in_grads):
            if gx is None:
                continue
            if x._ctx is None:
                # a fresh array only this input got can become its gradient as it is; anything
                # else (an incoming gradient, a view, one array handed to two inputs) is copied first
                shared = (
                    any(gx is s for s in slots) or gx.base is not None or sum(other is gx for other in in_grads) > 1
                )
                on_leaf(x, gx, shared)
            elif id(x) in grads:
                grads[id(x)] = grads[id(x)] + gx
            else:
                grads[id(x)] = gx
        if fn.outputs_walked == fn.n_outputs:  # an output this pass did not reach may come later
            fn.inputs = ()


def _topological_order(root):
    """Nodes with a graph behind them, every node after all of its inputs (iterative DFS)."""
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for x in node._ctx.inputs:
            if isinstance(x, Tensor) and x._graph_freed:
                raise RuntimeError(
                    "backward() through a tensor whose graph an earlier backward() freed; "
                    "build the graph again (rerun the forward)"
                )
            if isinstance(x, Tensor) and x._ctx is not None and id(x) not in seen:
                stack.append((x, False))
    return order


def _sum_grads(current, grad, dtype, shared):
    """current + grad, added into current in place; a first gradient (current None) is kept as it
    is unless `shared` (then copied, since later ones are added into it in place)."""
    if grad.dtype != dtype:
        grad, shared = grad.astype(dtype), False
    if current is None:
        return grad.copy() if shared else grad
    current += grad
    return current


def sum_to_shape(grad, shape):
    """Reduce a broadcast gradient back to `shape` (sum the axes broadcasting added or stretched)."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and grad.shape[i + lead] != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape) if axes else grad.reshape(shape)


def check_same_device(op_name, inputs):
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
