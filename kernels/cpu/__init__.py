"""Fused CPU kernels: each kernel's loops, as llm.c writes them in C, compiled by Numba.

A fast NumPy kernel (kernels/*.py) runs one pass over memory per NumPy call and allocates a fresh
array for most of them: for the (B, T, C) activations of a step, that traffic, not the arithmetic,
is the cost. A kernel here goes over its inputs once per loop and keeps everything else in
registers, as the CUDA twins in kernels/cuda/ do on the GPU. Matrix products stay with BLAS.

Each public function has the name, arguments and results of its NumPy twin and is tested against
the plain one (tests/test_kernels.py). kernels/cpu/compiler.py says how Numba compiles them, and
what happens without Numba: AVAILABLE is then False and engine.dispatch runs the fast kernels.
"""

from tinygrad_gpt.kernels.cpu.adamw import adamw_update_multi
from tinygrad_gpt.kernels.cpu.attention import attention_backward, attention_forward
from tinygrad_gpt.kernels.cpu.clipping import scale_multi
from tinygrad_gpt.kernels.cpu.compiler import AVAILABLE, MISSING, target
from tinygrad_gpt.kernels.cpu.cross_entropy import cross_entropy_backward, cross_entropy_forward
from tinygrad_gpt.kernels.cpu.gelu import gelu_backward, gelu_forward
from tinygrad_gpt.kernels.cpu.layernorm import layernorm_backward, layernorm_forward

__all__ = [
    "AVAILABLE",
    "MISSING",
    "adamw_update_multi",
    "attention_backward",
    "attention_forward",
    "cross_entropy_backward",
    "cross_entropy_forward",
    "gelu_backward",
    "gelu_forward",
    "layernorm_backward",
    "layernorm_forward",
    "scale_multi",
    "target",
]
