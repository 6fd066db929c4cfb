"""Whether ops record the graph: `no_grad()` turns recording off inside its block.

The flag is a context variable, like NumPy's errstate: each thread has its own, and a task run in a
copy of its caller's context (as the data-parallel step's workers do) starts from the caller's.
"""

import contextlib
import contextvars

_enabled = contextvars.ContextVar("grad_enabled", default=True)


def is_grad_enabled():
    return _enabled.get()


@contextlib.contextmanager
def no_grad():
    """Inside this block no graph is built: outputs never require grad (inference, evaluation)."""
    token = _enabled.set(False)
    try:
        yield
    finally:
        _enabled.reset(token)
