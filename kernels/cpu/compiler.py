"""Numba, the one place it is imported: `compiled` turns a loop written in Python into machine code;
`rows` and `flat` give the loops the C-ordered arrays they index.

Numba compiles a function on its first call with each set of argument types (float32 and float64
get one copy each), for the CPU it runs on: LLVM picks AVX-512, AVX2, or what the machine has, as
a C compiler with -march=native would. The machine code is cached on disk (`cache=True`), so the
next process loads it instead of compiling again (the cache is keyed by each kernel file's time of
change: after editing the options below, delete kernels/cpu/__pycache__). The options:
    nogil       the GIL is released while a kernel runs, so data-parallel threads overlap
    fastmath    only "reassoc": sums may be reordered, which lets LLVM run them in SIMD lanes. Not
                "contract" (a * b + c as one fused multiply-add, whose product is not rounded: the
                difference of two equal products would no longer be 0), and NaN and inf behave
                as in NumPy, unlike Numba's fastmath=True
    error_model "numpy": x / 0 is inf, as in NumPy, instead of a check that stops vectorizing
Without Numba (not installed, or one that refuses this NumPy version) `compiled` leaves the
function as Python, MISSING says why, and engine.dispatch runs the fast NumPy kernels instead.
"""

import numpy

try:
    import numba
except ImportError as error:  # Numba raises ImportError for a NumPy newer than it supports, too
    numba = None
    MISSING = f"the cpu kernels need Numba: {error} (pip install numba)"
else:
    MISSING = None

AVAILABLE = numba is not None


def compiled(function):
    if numba is None:
        return function
    return numba.njit(cache=True, nogil=True, fastmath={"reassoc"}, error_model="numpy")(function)


def target():
    """What Numba compiles for, as `tinygpt bench` reports it: 'Numba 0.68.1 icelake-server', or None.
    NUMBA_CPU_NAME (e.g. haswell) makes it compile for another CPU of the same family."""
    if numba is None:
        return None
    from llvmlite import binding

    return f"Numba {numba.__version__} {numba.config.CPU_NAME or binding.get_host_cpu_name()}"


def rows(a):
    """a as a C-ordered (rows, last axis) array: a view when a is C-ordered already (so a loop may
    write into it), else a copy."""
    return numpy.ascontiguousarray(a).reshape(-1, a.shape[-1])


def flat(a):
    """a as a C-ordered 1-D array: a view when a is C-ordered already, else a copy."""
    return numpy.ascontiguousarray(a).reshape(-1)
