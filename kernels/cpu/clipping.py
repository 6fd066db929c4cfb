"""Gradient clipping's scaling (kernels/clipping.py) with large arrays shared out over threads
(threads.py): it reads and writes every gradient once, so it is limited by memory, which one core
does not draw all of. The same multiplication of each number, so the same bits as NumPy's."""

from tinygrad_gpt.kernels.cpu.compiler import compiled, flat
from tinygrad_gpt.kernels.cpu.threads import THREADED_MIN, run_cut, threads_allowed


@compiled
def _scale(a, scale):
    for i in range(a.size):
        a[i] *= scale


def scale_multi(arrays, scale):
    """As kernels/clipping.py's. A scale of 1 (the norm within the limit, as it mostly is once
    training settles) changes no number, so then nothing is read or written: on the host, looking
    at the scale costs nothing (on a GPU it would be a sync)."""
    if scale == 1:
        return
    threads = threads_allowed()
    large = []
    for a in arrays:
        if threads > 1 and a.size >= THREADED_MIN and a.flags.c_contiguous:
            large.append(((flat(a),), (a.dtype.type(scale),)))
        else:
            a *= scale
    if large:
        run_cut(_scale, large, threads)
