"""C = A @ B for float32 matrices through Intel MKL's cblas_sgemm, where the `mkl` extra is installed.

NumPy's wheels multiply with OpenBLAS. On our AVX-512 machine MKL, which PyTorch multiplies with on
x86, ran the Linear layers' products 1.1-1.25x faster (docs/benchmarks.md): most of a step's
time there. MKL comes as a 221 MB wheel of Intel's, so it is optional (pip install -e ".[mkl]").
When its library is there and TINYGPT_MKL is not 0, `matmul` sends 2-D float32 operands to it
through ctypes; anything else, and every product without it, goes to NumPy's `@`. The numbers
are those of a product in another order of its sums: tested against NumPy's to rounding.

MKL is loaded once, at import, before threadpoolctl looks for the BLAS libraries to limit
(tinygrad_gpt/parallel/shards.py), so that its threads are limited with OpenBLAS's. Its default
threading layer (Intel's OpenMP, installed with it) is kept.
"""

import ctypes
import importlib.metadata
import os
import sys

import numpy

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS's enum values


def _load():
    """(the loaded library, its real path, None), or (None, None, why not)."""
    if os.environ.get("TINYGPT_MKL", "1") == "0":
        return None, None, "TINYGPT_MKL=0"
    if not sys.platform.startswith("linux"):
        return None, None, "MKL is used on Linux only"
    try:
        files = importlib.metadata.files("mkl") or []
    except importlib.metadata.PackageNotFoundError:
        return None, None, 'MKL is not installed (pip install -e ".[mkl]")'
    paths = [f.locate() for f in files if f.name.startswith("libmkl_rt.so")]
    if not paths:
        return None, None, "the mkl package has no libmkl_rt.so"
    try:
        library = ctypes.CDLL(str(paths[0]))
    except OSError as error:
        return None, None, f"MKL did not load: {error}"
    sgemm = library.cblas_sgemm
    sgemm.restype = None
    word, pointer, scalar = ctypes.c_int, ctypes.c_void_p, ctypes.c_float
    sgemm.argtypes = [word] * 6 + [scalar, pointer, word, pointer, word, scalar, pointer, word]
    return library, os.path.realpath(paths[0]), None


_library, PATH, MISSING = _load()
AVAILABLE = _library is not None


# mkl_cbwr_get_auto_branch's answers (mkl_cbwr.h): the code path MKL picked for this CPU, which
# MKL_ENABLE_INSTRUCTIONS (e.g. AVX2) may hold back, as NPY_DISABLE_CPU_FEATURES does NumPy's
CODE_PATHS = {4: "SSE2", 6: "SSSE3", 7: "SSE4_1", 8: "SSE4_2", 9: "AVX", 10: "AVX2", 12: "AVX512", 14: "AVX512_E1"}


def version():
    """'MKL 2026.2.0 AVX512_E1' (its version and code path), or None without MKL."""
    if not AVAILABLE:
        return None
    branch = _library.mkl_cbwr_get_auto_branch()
    return f"MKL {importlib.metadata.version('mkl')} {CODE_PATHS.get(branch, f'code path {branch}')}"


def _as_operand(a):
    """(a CBLAS transpose flag, the leading dimension, the array) for a row-major read of a: a
    C-ordered matrix as it is, a transposed one (a.T of a C-ordered array) flagged, else a copy."""
    rows, columns = a.shape
    row_step, column_step = (s // a.itemsize if s % a.itemsize == 0 else 0 for s in a.strides)
    if column_step == 1 and row_step >= max(columns, 1):
        return NO_TRANS, row_step, a
    if row_step == 1 and column_step >= max(rows, 1):
        return TRANS, column_step, a
    a = numpy.ascontiguousarray(a)
    return NO_TRANS, max(columns, 1), a


def matmul(a, b):
    """a @ b: by MKL for two float32 matrices of which none is empty, else by NumPy."""
    if (
        not AVAILABLE
        or a.dtype != numpy.float32
        or b.dtype != numpy.float32
        or a.ndim != 2
        or b.ndim != 2
        or 0 in a.shape
        or b.shape[1] == 0
        or a.shape[1] != b.shape[0]
    ):
        return a @ b
    (m, k), n = a.shape, b.shape[1]
    transpose_a, lda, a = _as_operand(a)
    transpose_b, ldb, b = _as_operand(b)
    out = numpy.empty((m, n), numpy.float32)
    _library.cblas_sgemm(
        ROW_MAJOR,
        transpose_a,
        transpose_b,
        m,
        n,
        k,
        1.0,
        a.ctypes.data,
        lda,
        b.ctypes.data,
        ldb,
        0.0,
        out.ctypes.data,
        n,
    )
    return out
