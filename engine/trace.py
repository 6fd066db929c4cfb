"""Trace mode: print each node as backward visits it (op, shapes, gradient in and out).

Turn it on with `with engine.trace():` or the environment variable TINYGPT_TRACE=1. The output is
a study aid: read it beside the op's backward in engine/ops_*.py.
"""

import contextlib
import os

_enabled = os.environ.get("TINYGPT_TRACE", "") not in ("", "0")


def is_tracing():
    return _enabled


@contextlib.contextmanager
def trace():
    global _enabled
    previous, _enabled = _enabled, True
    try:
        yield
    finally:
        _enabled = previous


def _summary(array):
    flat = array.reshape(-1)
    head = ", ".join(f"{float(v):+.4f}" for v in flat[:4])
    more = ", ..." if flat.size > 4 else ""
    return f"{tuple(array.shape)} [{head}{more}]"


def report(fn, out_grads, in_grads):
    """One visited node: the gradient arriving at each output and leaving for each input."""
    lines = []
    for i, g in enumerate(out_grads):
        label = "grad out" if len(out_grads) == 1 else f"grad out {i}"
        lines.append(f"{repr(fn) if i == 0 else '':<16} {label} {_summary(g) if g is not None else '(none)'}")
    for i, g in enumerate(in_grads):
        if g is not None:
            lines.append(f"{'':<16}  -> input {i}  {_summary(g)}")
    print("\n".join(lines))
