"""Where a step's time goes: wall time per op, forward and backward, while `profile()` is on.

    with engine.profiler.profile() as prof:
        step()
    print(prof.table())

Each op's time is measured around its forward or backward call (the device is synchronized
first on the GPU, so the time lands on the op that spent it). Time outside any op (Python glue,
the optimizer, data) shows as the difference between the total and the ops' sum.
"""

import collections
import contextlib
import contextvars
import time

from tinygrad_gpt.engine import backend

_active = contextvars.ContextVar("profile", default=None)  # the Profile being filled, per context


class Profile:
    def __init__(self):
        self.seconds = collections.defaultdict(float)
        self.calls = collections.Counter()
        self.total = 0.0

    def table(self, top=25):
        """A text table: op, pass, calls, ms, share of the total."""
        rows = sorted(self.seconds.items(), key=lambda kv: -kv[1])
        total = self.total or sum(self.seconds.values())
        lines = [f"{'op':<16}{'pass':<10}{'calls':>7}{'ms':>10}{'share':>8}"]
        for (op, phase), s in rows[:top]:
            lines.append(f"{op:<16}{phase:<10}{self.calls[op, phase]:>7}{s * 1e3:>10.2f}{s / total:>8.1%}")
        other = total - sum(self.seconds.values())
        lines.append(f"{'(outside ops)':<26}{'':>7}{other * 1e3:>10.2f}{other / total:>8.1%}")
        lines.append(f"{'total':<26}{'':>7}{total * 1e3:>10.2f}")
        return "\n".join(lines)


@contextlib.contextmanager
def profile():
    prof = Profile()
    token = _active.set(prof)
    start = time.perf_counter()
    try:
        yield prof
    finally:
        backend.synchronize()
        prof.total += time.perf_counter() - start
        _active.reset(token)


def timed(op, phase, fn, *args, **kwargs):
    """fn(*args, **kwargs), its time charged to (op, phase) when profiling."""
    prof = _active.get()
    if prof is None:
        return fn(*args, **kwargs)
    backend.synchronize()
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    backend.synchronize()
    prof.seconds[op, phase] += time.perf_counter() - start
    prof.calls[op, phase] += 1
    return out
