"""Whether ops record the graph: `no_grad()` turns recording off inside its block."""
import contextlib

_enabled = True


def is_grad_enabled():
    return _enabled


@contextlib.contextmanager
def no_grad():
    """Inside this block no graph is built: outputs never require grad (inference, evaluation)."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous
