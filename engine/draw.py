"""Draw the graph behind a tensor as Graphviz DOT text (micrograd's draw_dot, for tensors).

    drawing = engine.draw(loss, names={"W1": W1, "b1": b1})  # before backward(): it frees the graph
    loss.backward()
    drawing.save("graph.dot")  # render it: dot -Tsvg graph.dot -o graph.svg (or save .svg with Graphviz)

A box per tensor (its name from `names`, else the op that made it; its shape; once backward has
run, its gradient's norm) and an oval per op, with arrows input -> op -> output. What is drawn is
what backward walks: tensors that need no gradient, scalars and index arrays are left out.
"""

import shutil
import subprocess
from pathlib import Path

import numpy

from tinygrad_gpt.engine import backend
from tinygrad_gpt.engine.autograd import topological_order


def draw(tensor, names=None):
    """The graph behind `tensor` as it is now; `names` maps names to tensors, leaves or not
    (dict(model.named_parameters()), say). Every non-leaf in it is asked to retain_grad(), so that
    after backward the drawing can show its gradient."""
    if tensor._graph_freed:
        raise RuntimeError("draw(): backward() already freed this tensor's graph; draw it before backward()")
    return Drawing(tensor, {id(t): name for name, t in (names or {}).items()})


class Drawing:
    """A graph as it was drawn: its ops and arrows are fixed; its boxes read .grad each time `dot`
    is asked for, so the same drawing shows the gradients once backward has filled them."""

    def __init__(self, root, names):
        self.root = root
        self.boxes = {}  # id(tensor) -> (DOT node, tensor, title)
        self.lines = []  # the ops and the arrows, as DOT lines
        ops = {}  # id(Function) -> DOT node: a split is one op, however many of its pieces are used
        self._box(root, names)
        for t in [] if root.is_leaf else topological_order(root):
            t.retain_grad()  # so backward fills its .grad, for the boxes to show
            fn = t._ctx
            if id(fn) not in ops:
                ops[id(fn)] = f"op{len(ops)}"
                self.lines.append(f'  {ops[id(fn)]} [label="{type(fn).__name__}"]')
                self.lines += [f"  {self._box(x, names)} -> {ops[id(fn)]}" for x in fn.inputs if x is not None]
            self.lines.append(f"  {ops[id(fn)]} -> {self._box(t, names)}")

    def _box(self, t, names):
        """t's DOT node, made the first time t is met (while its _ctx still says which op made it)."""
        if id(t) not in self.boxes:
            title = names.get(id(t)) or ("leaf" if t.is_leaf else type(t._ctx).__name__)
            if not t.is_leaf and t._ctx.n_outputs > 1:
                title += f"[{t._output_index}]"  # which piece of a split
            self.boxes[id(t)] = (f"t{len(self.boxes)}", t, title)
        return self.boxes[id(t)][0]

    @property
    def dot(self):
        # only once backward has freed this graph are the .grads its own (a leaf's may be older)
        walked = self.root._graph_freed
        boxes = []
        for node, t, title in self.boxes.values():
            label = f"{title}\\n{tuple(t.shape)}"
            if walked and t.grad is not None:
                label += f"\\ngrad norm {numpy.linalg.norm(backend.to_numpy(t.grad)):.4g}"
            boxes.append(f'  {node} [shape=box, label="{label}"]')
        return "\n".join(["digraph {", "  rankdir=LR", *boxes, *self.lines, "}"]) + "\n"

    def save(self, path):
        """Write the DOT text (.dot), or the picture (.svg, .png) with Graphviz's `dot` command."""
        path = Path(path)
        if path.suffix == ".dot":
            path.write_text(self.dot)
            return
        if path.suffix not in (".svg", ".png"):
            raise ValueError(f"save(): {path.name} should end in .dot, .svg or .png")
        if shutil.which("dot") is None:
            raise RuntimeError(
                f"save({path.name}): Graphviz's `dot` is not installed; install Graphviz or save as .dot"
            )
        subprocess.run(["dot", f"-T{path.suffix[1:]}", "-o", str(path)], input=self.dot, text=True, check=True)
