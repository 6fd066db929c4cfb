"""The kernel ladder: for each rung, the function that runs for every kernel the engine calls.

    plain  the textbook forward and backward, one line of code per line of the derivation above
           it: read these first (docs/backprop.md walks through them)
    fast   the same math rearranged for speed with NumPy or CuPy (BLAS sums, buffers reused in
           place, a per-head softmax shift, a saved tanh, ...); each says what it trades and is
           tested against plain (tests/test_kernels.py)
    cpu    fused loops compiled by Numba for host arrays (kernels/cpu/), tested against plain
           (tests/test_kernels.py); the kernels it has no loop for are the fast ones
    cuda   hand-written CUDA kernels for CuPy arrays (kernels/cuda/), tested against plain
           (tests/test_cuda_kernels.py); each hands what it does not cover to its fast twin

A kernel with one version only (matmul, softmax, dropout) serves every rung. All versions of a
kernel take the same arguments and return the same results, and what a forward returns for its
backward (layernorm's mean and rstd, attention's `saved`) is passed back to the backward of the
same rung untouched: the engine never looks inside it. engine/dispatch.py picks the rung.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace

from tinygrad_gpt.kernels import (
    adamw,
    attention,
    clipping,
    cpu,
    cross_entropy,
    cuda,
    dropout,
    embedding,
    gelu,
    layernorm,
    matmul,
    softmax,
)


@dataclass(frozen=True)
class Rung:
    name: str
    matmul_forward: Callable
    matmul_backward: Callable
    linear_forward: Callable
    linear_backward: Callable
    layernorm_forward: Callable
    layernorm_backward: Callable
    gelu_forward: Callable
    gelu_backward: Callable
    softmax_forward: Callable
    softmax_backward: Callable
    log_softmax_forward: Callable
    log_softmax_backward: Callable
    cross_entropy_forward: Callable
    cross_entropy_backward: Callable
    embedding_forward: Callable
    embedding_backward: Callable
    dropout_mask: Callable
    dropout_forward: Callable
    dropout_backward: Callable
    attention_forward: Callable
    attention_backward: Callable
    adamw_update_multi: Callable
    scale_multi: Callable


PLAIN = Rung(
    name="plain",
    matmul_forward=matmul.matmul_forward,
    matmul_backward=matmul.matmul_backward,
    linear_forward=matmul.linear_forward,
    linear_backward=matmul.linear_backward,
    layernorm_forward=layernorm.layernorm_forward,
    layernorm_backward=layernorm.layernorm_backward,
    gelu_forward=gelu.gelu_forward,
    gelu_backward=gelu.gelu_backward,
    softmax_forward=softmax.softmax_forward,
    softmax_backward=softmax.softmax_backward,
    log_softmax_forward=softmax.log_softmax_forward,
    log_softmax_backward=softmax.log_softmax_backward,
    cross_entropy_forward=cross_entropy.cross_entropy_forward,
    cross_entropy_backward=cross_entropy.cross_entropy_backward,
    embedding_forward=embedding.embedding_forward,
    embedding_backward=embedding.embedding_backward,
    dropout_mask=dropout.dropout_mask,
    dropout_forward=dropout.dropout_forward,
    dropout_backward=dropout.dropout_backward,
    attention_forward=attention.attention_forward,
    attention_backward=attention.attention_backward,
    adamw_update_multi=adamw.adamw_update_multi,
    scale_multi=clipping.scale_multi,
)

FAST = replace(
    PLAIN,
    name="fast",
    linear_backward=matmul.linear_backward_fast,
    layernorm_forward=layernorm.layernorm_forward_fast,
    layernorm_backward=layernorm.layernorm_backward_fast,
    gelu_forward=gelu.gelu_forward_fast,
    gelu_backward=gelu.gelu_backward_fast,
    cross_entropy_forward=cross_entropy.cross_entropy_forward_fast,
    cross_entropy_backward=cross_entropy.cross_entropy_backward_fast,
    embedding_backward=embedding.embedding_backward_fast,
    attention_forward=attention.attention_forward_fast,
    attention_backward=attention.attention_backward_fast,
    adamw_update_multi=adamw.adamw_update_multi_fast,
)

CPU = replace(
    FAST,
    name="cpu",
    layernorm_forward=cpu.layernorm_forward,
    layernorm_backward=cpu.layernorm_backward,
    gelu_forward=cpu.gelu_forward,
    gelu_backward=cpu.gelu_backward,
    attention_forward=cpu.attention_forward,
    attention_backward=cpu.attention_backward,
    cross_entropy_forward=cpu.cross_entropy_forward,
    cross_entropy_backward=cpu.cross_entropy_backward,
    adamw_update_multi=cpu.adamw_update_multi,
    scale_multi=cpu.scale_multi,
)

CUDA = replace(
    FAST,
    name="cuda",
    layernorm_forward=cuda.layernorm_forward,
    layernorm_backward=cuda.layernorm_backward,
    gelu_forward=cuda.gelu_forward,
    gelu_backward=cuda.gelu_backward,
    softmax_forward=cuda.softmax_forward,
    softmax_backward=cuda.softmax_backward,
    log_softmax_forward=cuda.log_softmax_forward,
    log_softmax_backward=cuda.log_softmax_backward,
    cross_entropy_forward=cuda.cross_entropy_forward,
    cross_entropy_backward=cuda.cross_entropy_backward,
    dropout_mask=cuda.dropout_mask,
    attention_forward=cuda.attention_forward,
    attention_backward=cuda.attention_backward,
    adamw_update_multi=cuda.adamw_update_multi,
)

RUNGS = {rung.name: rung for rung in (PLAIN, FAST, CPU, CUDA)}
