"""Loops over large arrays shared out over threads: the kernels here are limited by memory, and
one core does not draw all of it. The compiled loops release the GIL (compiler.py), so Python
threads run them at once."""

import threading

from tinygrad_gpt.kernels.blas import blas_threadpools

# An array of at least this many elements is worth cutting over threads; for a smaller one,
# starting a thread costs more than it saves (every parameter of the cpu preset is smaller).
THREADED_MIN = 1 << 18


def threads_allowed():
    """As many threads as BLAS may use in this process now: the cores it was given (data-parallel
    worker processes and MPI ranks hold BLAS to their share of them), 1 where that is unknown."""
    blas = blas_threadpools()
    return max(1, min(lib.num_threads for lib in blas.lib_controllers)) if blas is not None else 1


def run_cut(kernel, calls, threads):
    """kernel(*arrays, *scalars) for each (arrays, scalars) of `calls`, its arrays flat and of one
    size, cut into `threads` contiguous runs: thread k calls kernel on the k-th run of each array
    (k = 0 on this thread). Returns when all are done, raising the first error."""

    def runs(k):
        for arrays, scalars in calls:
            size = arrays[0].size
            run = slice(size * k // threads, size * (k + 1) // threads)
            kernel(*(a[run] for a in arrays), *scalars)

    errors = []

    def guarded(k):
        try:
            runs(k)
        except BaseException as error:  # handed to the caller below
            errors.append(error)

    others = [threading.Thread(target=guarded, args=(k,)) for k in range(1, threads)]
    for t in others:
        t.start()
    try:
        runs(0)
    finally:
        for t in others:
            t.join()
    if errors:
        raise errors[0]
