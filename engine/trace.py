"""Trace mode: print each node as backward visits it (op, shapes, gradient in and out).

Turn it on with `with engine.trace():` or the environment variable TINYGPT_TRACE=1. Like grad mode
it belongs to the context (each thread its own). The output is a study aid: read it beside the
op's backward in engine/ops_*.py.
"""

import contextlib
import contextvars
import os

_enabled = contextvars.ContextVar("tracing", default=os.environ.get("TINYGPT_TRACE", "") not in ("", "0"))


def is_tracing():
    return _enabled.get()


@contextlib.contextmanager
def trace():
    token = _enabled.set(True)
    try:
        yield
    finally:
        _enabled.reset(token)


def _summary(array):
    flat = array.reshape(-1)
    head = ", ".join(f"{float(v):+.4f}" for v in flat[:4])
    more = ", ..." if flat.size > 4 else ""
    return f"{tuple(array.shape)} [{head}{more}]"


def report(fn, out_grads, in_grads):
    """While tracing, print one visited node: the gradient arriving at each output and leaving for
    each input."""
    if not _enabled.get():
        return
    lines = []
    for i, g in enumerate(out_grads):
        label = "grad out" if len(out_grads) == 1 else f"grad out {i}"
        lines.append(f"{repr(fn) if i == 0 else '':<16} {label} {_summary(g) if g is not None else '(none)'}")
    for i, g in enumerate(in_grads):
        if g is not None:
            lines.append(f"{'':<16}  -> input {i}  {_summary(g)}")
    print("\n".join(lines))
