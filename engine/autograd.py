"""Reverse-mode autodiff: the backward walk over the graph that the ops recorded.

Two walks over the same graphs. `reference_grad` is micrograd's (karpathy/micrograd, engine.py)
written for our tensors, to read first: every tensor after the tensors it was made from,
reversed, so a tensor's gradient is complete before its op's backward passes it on, and each
backward's results added into its inputs' gradients. `_walk` is the one backward() and grad()
run: the same loop, with three extras training needs, each a small helper beneath it and each
set out in `_walk`'s docstring as a difference from the reference: a node with several outputs
(split) runs its backward once, after the last of them; the graph is freed as it is walked; and
a leaf's gradient is an array of its own, kept without a copy when nothing else holds it.
tests/test_autograd_walk.py checks that both give a GPT the same gradients.
"""

import collections

from tinygrad_gpt.engine import backend, trace
from tinygrad_gpt.engine.profiler import timed
from tinygrad_gpt.engine.tensor import Tensor, add_grads, add_into_own
from tinygrad_gpt.kernels.array_module import xp_of


def backward(tensor, gradient=None):
    """Add d(tensor)/d(leaf) into `.grad` of every leaf that requires grad (torch's backward()).

    `tensor` must have one element, or `gradient` (its shape) says what to start from. The graph
    behind it is freed as it is walked: a second backward() needs the forward run again."""
    _walk(tensor, gradient, lambda leaf, grad, own: leaf.accumulate_grad(grad, own))


def grad(output, inputs, grad_output=None):
    """d(output)/d(input) for each leaf tensor in `inputs`, as new tensors (None for an input the
    graph does not reach); no `.grad` is touched (torch.autograd.grad). Threads that share
    parameters can each take their own gradients this way. The graph is freed as by backward()."""
    if any(not x.is_leaf for x in inputs):
        raise ValueError("grad(): inputs must be leaf tensors (parameters, or tensors made with requires_grad)")
    found = {}

    def keep(leaf, grad, own):
        found[id(leaf)] = add_into_own(found.get(id(leaf)), grad.astype(leaf.dtype, copy=False), own)

    _walk(output, grad_output, keep)
    return [Tensor._from_array(found[id(x)]) if id(x) in found else None for x in inputs]


def reference_grad(output, inputs):
    """d output / d x for each tensor x of `inputs` (leaf or not), as arrays (None where the
    graph does not reach x); `output` is a one-element tensor an op made. micrograd's walk, for
    study and as the reference `_walk` is tested against: it frees nothing of the graph and
    touches no .grad."""
    grads = {id(output): xp_of(output.data).ones_like(output.data)}  # d output / d t, for each t reached
    for node in reversed(topological_order(output)):  # every use of a tensor has added into its gradient
        fn, douts = node._ctx, [None] * node._ctx.n_outputs
        douts[node._output_index] = grads.get(id(node))
        if douts[node._output_index] is None:  # its op's backward passed it no gradient
            continue
        in_grads = fn.backward(*douts)  # a split's other outputs run it again, each with its own gradient
        in_grads = in_grads if isinstance(in_grads, tuple) else (in_grads,)
        for x, grad_x in zip(fn.inputs, in_grads):
            if x is not None and grad_x is not None:  # each use of x adds in, into a new array
                grads[id(x)] = grads.get(id(x), 0) + sum_to_shape(grad_x, x.shape)
    return [grads.get(id(x)) for x in inputs]


def _walk(root, root_grad, on_leaf):
    """reference_grad's loop, with what backward() and grad() need beyond it:

    - several outputs of one node (split): the reference runs a node's backward once per output,
      the others' gradients None (right, since a backward is linear in them, but a split would
      concatenate a whole input's worth of zeros per piece); here each output's gradient waits in
      `pending` and the backward runs once, after the last of them, with all of them.
    - freeing the graph as it goes: the reference leaves every tensor, node and saved array alive
      until the caller drops the output, and keeps every gradient to the end; here each tensor is
      cut from its node as it is passed (_free), its gradient is dropped once handed on, and a node
      drops its inputs once all its outputs are walked, so activations go while the walk runs and
      memory stays flat from step to step (a second backward through the graph raises).
    - gradient ownership: the reference adds every contribution into a new array; here what
      reaches a leaf goes to `on_leaf` with whether the array is the leaf's to keep (_fresh), so
      .grad takes it without a copy when nothing else holds it, and later contributions add into
      .grad in place (tensor.add_into_own). Between nodes gradients still add out of place
      (add_grads): an op may hand one array to two inputs.

    And the plumbing: a starting gradient other than ones (or a leaf as root), .grad for tensors
    that retain_grad(), and each backward timed when profiling, printed when tracing."""
    root_grad = _starting_grad(root, root_grad)
    if root.is_leaf:
        on_leaf(root, root_grad, False)  # not its to keep: the caller holds root_grad
        return
    order = topological_order(root)  # every tensor after the tensors it was made from
    grads = {id(root): root_grad}  # d root / d t for each tensor t reached and not yet passed on
    pending = _PendingOutputs(order)
    for node in reversed(order):  # so every use of a tensor has added into its gradient first
        fn, grad = _free(node), grads.pop(id(node), None)  # freeing: node is a leaf of nothing now
        _retain(node, grad)
        out_grads = pending.arrive(fn, node._output_index, grad)
        if out_grads is not None:  # fn's last output: run its backward, once (several outputs)
            in_grads = _call_backward(fn, out_grads)
            for x, grad_x in zip(fn.inputs, in_grads):
                if x is None or grad_x is None:
                    continue
                if x.is_leaf:  # ownership: whether the leaf may keep grad_x itself
                    on_leaf(x, grad_x, _fresh(grad_x, out_grads, in_grads))
                else:
                    grads[id(x)] = add_grads(grads.get(id(x)), grad_x)
        if fn.outputs_walked == fn.n_outputs:  # freeing; an output this walk did not reach may come later
            fn.inputs = ()


def _starting_grad(root, grad):
    if not root.requires_grad:
        raise RuntimeError("backward() on a tensor that does not require grad (no graph leads to it)")
    if root._graph_freed:
        raise RuntimeError("backward() through a graph that was already freed by an earlier backward()")
    if grad is None:
        if root.size != 1:
            raise RuntimeError(f"backward() without a gradient needs a single-element tensor, not shape {root.shape}")
        return xp_of(root.data).ones_like(root.data)
    return grad.data if isinstance(grad, Tensor) else backend.asarray(grad, dtype=root.dtype, device=root.device)


def topological_order(root):
    """Tensors with a graph behind them, each after all of its inputs (an iterative DFS: a graph
    deeper than Python's recursion limit is fine)."""
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
            if x is None:
                continue
            if x._graph_freed:
                raise RuntimeError(
                    "backward() through a tensor whose graph an earlier backward() freed; "
                    "build the graph again (rerun the forward)"
                )
            if x._ctx is not None and id(x) not in seen:
                stack.append((x, False))
    return order


def _free(node):
    """Cut `node` from the node that made it (returned): once walked, it is a leaf of nothing."""
    fn = node._ctx
    node._ctx, node._graph_freed = None, True
    fn.outputs_walked += 1
    return fn


def _retain(node, grad):
    """Keep an intermediate tensor's gradient in its .grad if it asked to (Tensor.retain_grad)."""
    if node._retains_grad and grad is not None:
        node.grad = add_grads(node.grad, grad.copy())


class _PendingOutputs:
    """The gradients of a node's outputs, gathered until the walk reaches the last of them."""

    def __init__(self, order):
        self.left = collections.Counter(id(t._ctx) for t in order)  # outputs of each node to be walked
        self.grads = {}

    def arrive(self, fn, index, grad):
        """Note output `index`'s gradient; at fn's last output, all of them (None if none arrived)."""
        slots = self.grads.setdefault(id(fn), [None] * fn.n_outputs)
        slots[index] = grad
        self.left[id(fn)] -= 1
        if self.left[id(fn)]:
            return None
        del self.grads[id(fn)]
        return None if all(g is None for g in slots) else slots


def _call_backward(fn, out_grads):
    """fn's backward (timed when profiling, printed when tracing), each result summed back to its
    input's shape; None for inputs that take no gradient."""
    in_grads = timed(type(fn).__name__, "backward", fn.backward, *out_grads)
    in_grads = in_grads if isinstance(in_grads, tuple) else (in_grads,)
    in_grads = [
        sum_to_shape(grad, x.shape) if x is not None and grad is not None else None
        for x, grad in zip(fn.inputs, in_grads)
    ]
    trace.report(fn, out_grads, in_grads)
    return in_grads


def _fresh(grad, out_grads, in_grads):
    """Whether a gradient headed for a leaf is an array only that leaf will hold: not a gradient
    handed in, not a view of one, not given to two inputs. Anything else is copied if the leaf
    keeps it, since .grad is the leaf's own (the optimizer and gradient clipping change it in
    place); added to a .grad already there, it is only read."""
    return all(grad is not g for g in out_grads) and grad.base is None and sum(g is grad for g in in_grads) == 1


def sum_to_shape(grad, shape):
    """Reduce a broadcast gradient back to `shape` (sum the axes broadcasting added or stretched)."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and grad.shape[i + lead] != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape) if axes else grad.reshape(shape)
