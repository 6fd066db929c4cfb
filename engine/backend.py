"""The one place that knows about numpy versus cupy.

The active backend decides where new tensors live: `Tensor(data)` turns data into an array of
the active array module ("xp"). Choose it with `set_backend("numpy" | "cupy")` or the environment
variable TINYGPT_BACKEND; numpy is the default. Ops find the module from their arrays, so code
written once against `xp` runs on both.
"""

import ctypes
import os
import sys

import numpy

from tinygrad_gpt.kernels.array_module import xp_of

INSTALL_HINT = 'install it with: pip install -e ".[gpu]" (or the cupy-cuda1Nx wheel for your CUDA)'


class BackendError(RuntimeError):
    """The requested backend cannot run here; the message is one line saying why."""


_active = None  # (name, module), resolved on first use so the env var is read lazily


def _load_cupy():
    try:
        import cupy
    except ImportError as e:
        raise BackendError(f"backend 'cupy' needs CuPy, which is not importable ({e}); {INSTALL_HINT}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:  # no driver, or a driver/runtime mismatch
        raise BackendError(f"backend 'cupy': CuPy is installed but no CUDA GPU is usable ({e})") from None
    if count == 0:
        raise BackendError("backend 'cupy': CuPy is installed but no CUDA GPU is visible")
    return cupy


def set_backend(name):
    """Make `name` ("numpy" or "cupy") the array module for new tensors."""
    global _active
    if name == "numpy":
        _active = ("numpy", numpy)
    elif name == "cupy":
        _active = ("cupy", _load_cupy())
    else:
        raise BackendError(f"unknown backend {name!r}: choose 'numpy' or 'cupy'")


def _resolve():
    if _active is None:
        set_backend(os.environ.get("TINYGPT_BACKEND", "numpy") or "numpy")
    return _active


def name():
    return _resolve()[0]


def get_xp():
    """The active array module."""
    return _resolve()[1]


def device_of(array):
    return "cuda" if xp_of(array) is not numpy else "cpu"


def module_for(device):
    if device == "cpu":
        return numpy
    if device == "cuda":
        return _load_cupy()
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")


def asarray(data, dtype=None, device=None):
    """data (array of either module, list, scalar) as an array on `device` (default: the active backend)."""
    xp = module_for(device) if device is not None else get_xp()
    if xp is not numpy and xp_of(data) is numpy and not isinstance(data, numpy.ndarray):
        data = numpy.asarray(data)
    if xp is numpy and xp_of(data) is not numpy:
        data = data.get()
    return xp.asarray(data, dtype=dtype)


def to_numpy(array):
    """A host numpy copy-or-view of an array of either module."""
    return array.get() if xp_of(array) is not numpy else numpy.asarray(array)


def keep_freed_host_memory():
    """Let glibc keep freed large blocks for reuse instead of unmapping them at once (Linux only;
    the process's malloc setting changes, so training calls this explicitly; importing does not).

    By default a block over 128 KiB is mmap'ed and given back to the OS when freed, so every
    fresh temporary of an activation pays its page faults again, and numpy makes many; with the
    thresholds raised, freed blocks are reused and the faults are paid once. And one arena for
    all threads: another thread's arena holds no block over 64 MiB (its heap's limit), so each
    large temporary of a data-parallel shard (GPT-2's logits, gradients of its 50257-row
    embedding) would be mmap'ed and faulted in afresh. What each saves: docs/benchmarks.md.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    m_trim_threshold, m_mmap_threshold, m_arena_max = -1, -3, -8
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 30)
    libc.mallopt(m_arena_max, 1)


def synchronize():
    """Wait for queued GPU work (a no-op on numpy): call before reading a clock."""
    if name() == "cupy":
        get_xp().cuda.get_current_stream().synchronize()
