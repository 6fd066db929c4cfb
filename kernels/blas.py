"""The BLAS NumPy multiplies with, as threadpoolctl sees it: data parallelism holds its threads to a
share of the cores, and the cpu kernels that split their own loops over threads take as many as it
may use."""

import functools

from threadpoolctl import ThreadpoolController


@functools.cache
def blas_threadpools():
    """threadpoolctl's controller of the loaded BLAS libraries, or None where it sees none (found
    once: it scans the loaded libraries)."""
    controller = ThreadpoolController().select(user_api="blas")
    return controller if controller.lib_controllers else None
