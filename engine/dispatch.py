"""Which rung of the kernel ladder (kernels/rungs.py) the ops run: auto, plain, fast, cpu or cuda.

`set_kernels(name)` or the environment variable TINYGPT_KERNELS chooses for the whole process.
The default, auto, is the fastest there is: the compiled kernels of the arrays' device, cuda on
GPU arrays and cpu on host arrays (fast there when Numba is missing). plain runs the textbook
kernels everywhere, for study and as the reference; fast runs the fast NumPy/CuPy kernels, to tell
a compiled kernel's bug from the math's. cpu or cuda named for arrays of the other device (cuda
for a numpy model) runs the fast kernels on them.
"""

import os

import numpy

from tinygrad_gpt.engine.backend import BackendError
from tinygrad_gpt.kernels import cpu
from tinygrad_gpt.kernels.array_module import xp_of
from tinygrad_gpt.kernels.rungs import CPU, CUDA, FAST, RUNGS

AUTO = "auto"
CHOICES = (AUTO, *RUNGS)
_chosen = None  # the name set by set_kernels, or None: read TINYGPT_KERNELS on first use


def set_kernels(name=None):
    """Run the kernels of rung `name` (one of CHOICES) from now on; None: TINYGPT_KERNELS if set,
    else auto."""
    global _chosen
    name = name or os.environ.get("TINYGPT_KERNELS") or AUTO
    if name not in CHOICES:
        raise BackendError(f"unknown kernels {name!r} (TINYGPT_KERNELS or --kernels): choose {', '.join(CHOICES)}")
    if name == CPU.name and not cpu.AVAILABLE:
        raise BackendError(cpu.MISSING)
    _chosen = name


def chosen():
    """The name chosen for the process (one of CHOICES)."""
    if _chosen is None:
        set_kernels()
    return _chosen


def kernels_for(array):
    """The Rung that runs on arrays like `array`."""
    on_host = xp_of(array) is numpy
    name = chosen()
    if name == AUTO:
        return (CPU if cpu.AVAILABLE else FAST) if on_host else CUDA
    rung = RUNGS[name]
    return FAST if rung is (CUDA if on_host else CPU) else rung
