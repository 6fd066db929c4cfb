"""Which rung of the kernel ladder (kernels/rungs.py) the ops run: plain, fast or cuda.

`set_kernels(name)` or the environment variable TINYGPT_KERNELS chooses for the whole process.
The default is cuda, the fastest there is: the hand-written CUDA kernels on GPU arrays and the
fast ones elsewhere. plain runs the textbook kernels everywhere, for study and as the reference;
fast runs the fast NumPy/CuPy kernels on the GPU too, to tell a CUDA kernel's bug from the math's.
"""

import os

import numpy

from engine.backend import BackendError
from kernels.array_module import xp_of
from kernels.rungs import CUDA, FAST, RUNGS

_chosen = None  # the Rung set by set_kernels, or None: read TINYGPT_KERNELS on first use


def set_kernels(name=None):
    """Run the kernels of rung `name` ("plain", "fast" or "cuda") from now on; None: the default,
    TINYGPT_KERNELS if set, else cuda."""
    global _chosen
    name = name or os.environ.get("TINYGPT_KERNELS") or CUDA.name
    if name not in RUNGS:
        raise BackendError(f"unknown kernels {name!r} (TINYGPT_KERNELS or --kernels): choose {', '.join(RUNGS)}")
    _chosen = RUNGS[name]


def chosen():
    """The rung chosen for the process (what kernels_for uses on GPU arrays)."""
    if _chosen is None:
        set_kernels()
    return _chosen


def kernels_for(array):
    """The kernels that run on arrays like `array`: the chosen rung, with fast standing in for
    cuda on NumPy arrays (no CUDA kernel takes them)."""
    rung = chosen()
    return FAST if rung is CUDA and xp_of(array) is numpy else rung
