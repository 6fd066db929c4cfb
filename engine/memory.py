"""Where activation memory goes: what a graph keeps alive for its backward, op by op, and the
peak a step reaches.

    _, loss = model(x, y)
    kept = engine.memory.saved_for_backward(loss)  # after the forward, before backward()
    print(kept.table())
    print(engine.memory.peak_bytes(step))  # the most one full step has in use at once

Between the passes a graph holds two kinds of arrays: the tensors each node keeps as inputs
(`fn.inputs`: only those a gradient goes to) and the arrays an op keeps on itself for its backward
(LayerNorm's mean and rstd, attention's probabilities). Each buffer is counted once, however many
nodes hold it or views of it, and charged to the op that made it; so a recomputation (a backward
that rebuilds an array from its inputs instead of keeping it) shows as a smaller row.
"""

import dataclasses
import tracemalloc

from tinygrad_gpt.engine import backend
from tinygrad_gpt.engine.autograd import topological_order
from tinygrad_gpt.kernels.array_module import xp_of

PARAMETERS = "(parameters)"  # the owner of buffers that leaves requiring grad hold


@dataclasses.dataclass
class SavedMemory:
    """What a graph keeps for its backward, in bytes.

    by_op: op name -> bytes of the activations charged to it: a tensor's buffer to the op whose
        output it is, an array an op made and kept on itself to that op.
    parameters: bytes of the leaves that require grad (the parameters) which the graph holds.
        They are not in `by_op` or `total`: they live on without the graph."""

    by_op: dict
    parameters: int

    @property
    def total(self):
        """Bytes of activations the graph keeps alive: what the backward frees as it walks."""
        return sum(self.by_op.values())

    def table(self):
        """A text table: op, MB kept, share of the total, largest first; then the total."""
        total = max(self.total, 1)  # no division by zero for a graph that keeps nothing
        lines = [f"{'op':<16}{'MB':>10}{'share':>8}"]
        for op, nbytes in sorted(self.by_op.items(), key=lambda kv: -kv[1]):
            lines.append(f"{op:<16}{nbytes / 2**20:>10.2f}{nbytes / total:>8.1%}")
        lines.append(f"{'total':<16}{self.total / 2**20:>10.2f}")
        return "\n".join(lines)


def saved_for_backward(root):
    """The arrays the graph behind `root` (say the loss, before backward) keeps for its backward,
    as a SavedMemory. Works on numpy and cupy arrays; a leaf keeps nothing."""
    if root._ctx is None:
        return SavedMemory(by_op={}, parameters=0)
    order = topological_order(root)
    made_by = _buffer_makers(order)
    kept = {}  # id of each buffer kept -> (its bytes, who it is charged to)
    for fn in _nodes(order):
        for x in fn.inputs:
            if x is not None:  # every input kept is a graph tensor or a leaf: made_by knows it
                _keep(kept, x.data, made_by, None)
        for array in _saved_arrays(fn):
            _keep(kept, array, made_by, type(fn).__name__)
    by_op = {}
    for nbytes, op in kept.values():
        by_op[op] = by_op.get(op, 0) + nbytes
    parameters = by_op.pop(PARAMETERS, 0)
    return SavedMemory(by_op, parameters)


def _buffer_makers(order):
    """id of each buffer in the graph -> the op that allocated it (PARAMETERS for leaves). In
    topological order the op that made a buffer comes before any view of it (a transpose, a split),
    so the first tensor found in a buffer names its maker."""
    made_by = {}
    for t in order:
        for x in t._ctx.inputs:
            if x is not None and x._ctx is None:
                made_by.setdefault(id(_owner(x.data)), PARAMETERS)
        made_by.setdefault(id(_owner(t.data)), type(t._ctx).__name__)
    return made_by


def _nodes(order):
    """Each node once (an op with several outputs, like split, is behind several tensors)."""
    return {id(t._ctx): t._ctx for t in order}.values()


def _saved_arrays(fn):
    """The arrays fn keeps on itself: attributes that are arrays or tuples of arrays (attention's
    `saved` may be a NamedTuple). Anything else (the kernels, shapes, flags) holds no buffer."""
    for value in vars(fn).values():
        for item in value if isinstance(value, tuple) else (value,):
            if _is_array(item):
                yield item


def _keep(kept, array, made_by, saver):
    """Count `array`'s buffer once, charged to its maker if it is a graph tensor's, else to `saver`."""
    owner = _owner(array)
    kept.setdefault(id(owner), (owner.nbytes, made_by.get(id(owner), saver)))


def _owner(array):
    """The array that owns `array`'s memory: a view (reshape, transpose, slice) has none of its own."""
    while _is_array(array.base):
        array = array.base
    return array


def _is_array(value):
    return isinstance(value, xp_of(value).ndarray)


def peak_bytes(fn):
    """Run fn() once; the most memory it had in use at any moment beyond what was in use when it
    began, in bytes.

    numpy: NumPy reports each array buffer it allocates and frees to tracemalloc, which keeps the
    peak of what was traced (Python's own objects count too: a little). A buffer allocated before
    fn and freed inside it is not subtracted, so this errs high, never low."""
    if backend.name() == "cupy":
        return _cupy_pool_peak(fn)
    already_tracing = tracemalloc.is_tracing()
    if not already_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        in_use = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - in_use
    finally:
        if not already_tracing:
            tracemalloc.stop()


def _cupy_pool_peak(fn):
    """CuPy's pool keeps freed blocks for reuse, so once emptied what it holds after fn() is the most
    fn needed at once (rounded up to its block sizes). Untested: written without a GPU at hand."""
    pool = backend.get_xp().get_default_memory_pool()
    pool.free_all_blocks()
    in_use = pool.used_bytes()
    fn()
    return pool.total_bytes() - in_use
