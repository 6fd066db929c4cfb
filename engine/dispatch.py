"""Which implementation of a kernel runs: the CUDA one on GPU arrays, else the xp reference.

`K.layernorm_forward(x, ...)` looks at its first argument (or the first array of a list): a cupy array gets
`kernels.cuda.layernorm_forward` when that exists, unless TINYGPT_KERNELS=xp forces the
reference (for study and debugging). Everything else gets the function in `kernels/`.
"""

import os

from kernels import adamw, attention, cross_entropy, dropout, embedding, gelu, layernorm, matmul, softmax
from kernels.array_module import xp_of

_REFERENCE_MODULES = (adamw, attention, cross_entropy, dropout, embedding, gelu, layernorm, matmul, softmax)


def _reference(name):
    for module in _REFERENCE_MODULES:
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"no kernel named {name!r}")


def _cuda_for(name, array):
    """kernels.cuda's `name` for a cupy array (unless TINYGPT_KERNELS=xp or it has none), else None."""
    if xp_of(array).__name__ != "cupy" or os.environ.get("TINYGPT_KERNELS", "") == "xp":
        return None
    from kernels import cuda

    return getattr(cuda, name, None)


def pick(name, array):
    """The implementation of kernel `name` for arrays like `array`."""
    return _cuda_for(name, array) or _reference(name)


class _Kernels:
    def __getattr__(self, name):
        reference = _reference(name)

        def call(first, *args, **kwargs):
            probe = first[0] if isinstance(first, (list, tuple)) and first else first
            return (_cuda_for(name, probe) or reference)(first, *args, **kwargs)

        call.__name__ = name
        setattr(self, name, call)  # later lookups skip __getattr__
        return call


K = _Kernels()
