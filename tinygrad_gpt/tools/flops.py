"""How much arithmetic a training step is, and how much the machine could do: the two halves of MFU
(model FLOPs utilization, the number nanoGPT's `estimate_mfu` prints), so that "is 30 ms good?" has
an answer that means the same on any machine.

A step's FLOPs are counted op by op from the shapes, for one batch of B sequences of T tokens
(N = B T) through the GPT of GPTConfig (C wide, L layers, H heads, V tokens):
- Linear, x (N, i) @ W (i, o) + b: the product is 2 N i o forward (a multiply and an add per term),
  twice that backward (dx = dout W^T and dW = x^T dout), plus N o for the bias each way;
- Attention: q k^T and att v are 2 N T C each forward, twice that backward, over the whole T x T
  square (the kernels compute the masked half too), plus a few per score for the softmax;
- the rest (LayerNorm, GELU, the softmax of the cross-entropy, the residual adds, the embedding's
  gradient, AdamW) by a stated count per element: they are a few percent of the products, and the
  counts below say what was counted rather than claim to be exact.
The peak is cores x clock x FP32 FLOPs per cycle per core (two fused multiply-adds, each as wide
as the vector instructions BLAS runs with) on the CPU, or CUDA cores x clock x 2 on a GPU;
docs/speed.md says where this estimate falls short.
"""

import os
import re

from tinygrad_gpt.config import GPTConfig
from tinygrad_gpt.engine import backend

# per element, forward and backward: what each op's plain kernel does, rounded
PER_ELEMENT = {
    "LayerNorm": (8, 12),  # mean, variance, normalize, scale and shift; then the three-term backward
    "Gelu": (10, 16),  # the tanh form and its derivative
    "CrossEntropy": (5, 2),  # max, subtract, exp, sum, log per logit; softmax minus one-hot
    "Add": (1, 0),  # the residual stream; its backward hands the gradient on
}
SOFTMAX_PER_SCORE = (5, 4)  # scale, max, exp, sum, divide; the softmax backward
ADAMW_PER_PARAMETER = 14  # moments, bias corrections, square root, weight decay, the update


def step_flops(config, batch_size, vocab_size):
    """{op: {"forward": flops, "backward": flops}} of one training step (forward, backward, and
    AdamW under "(optimizer)"), for GPTConfig-like `config` on a batch of batch_size sequences of
    config.block_size tokens."""
    T, C, L, H, V = config.block_size, config.n_embd, config.n_layer, config.n_head, vocab_size
    N = batch_size * T
    flops = {}

    def add(op, forward, backward):
        counted = flops.setdefault(op, {"forward": 0, "backward": 0})
        counted["forward"] += forward
        counted["backward"] += backward

    for fan_in, fan_out in linear_shapes(L, C):
        add("Linear", 2 * N * fan_in * fan_out + N * fan_out, 4 * N * fan_in * fan_out + N * fan_out)
    add("Linear", 2 * N * C * V, 4 * N * C * V)  # the head, tied to wte, without a bias
    scores = batch_size * H * T * T
    for _ in range(L):
        add("Attention", 4 * N * T * C + SOFTMAX_PER_SCORE[0] * scores, 8 * N * T * C + SOFTMAX_PER_SCORE[1] * scores)
    elements = {"LayerNorm": (2 * L + 1) * N * C, "Gelu": L * N * 4 * C, "CrossEntropy": N * V, "Add": 2 * L * N * C}
    for op, count in elements.items():
        add(op, PER_ELEMENT[op][0] * count, PER_ELEMENT[op][1] * count)
    add("Embedding", N * C, 2 * N * C)  # wte's and wpe's rows added; their gradients scattered back
    parameters = GPTConfig(V, T, L, H, C).parameter_count()
    add("(optimizer)", ADAMW_PER_PARAMETER * parameters, 0)
    return flops


def linear_shapes(n_layer, n_embd):
    """(fan_in, fan_out) of each Linear of the GPT's blocks, each with a bias: per layer attention's
    qkv and output projection, then the MLP's two. (The head is wte's transpose, (n_embd, vocab),
    without a bias.)"""
    c = n_embd
    return [(c, 3 * c), (c, c), (c, 4 * c), (4 * c, c)] * n_layer


def total(flops):
    return sum(sum(passes.values()) for passes in flops.values())


def cpu_peak(flags=None, cores=None, mhz=None, blas_core=None):
    """(FP32 FLOPs per second, how it was reckoned) of this process's cores: two FMA units a core,
    16 floats wide with AVX-512 in use (BLAS's kernels say which: OPENBLAS_CORETYPE=Haswell runs
    AVX2 ones on an AVX-512 machine), 8 with AVX2, 4 with neither; None where the clock is unknown."""
    info = _cpuinfo() if flags is None or mhz is None else ""
    flags = flags if flags is not None else set(re.findall(r"^flags\s*:\s*(.*)$", info, re.M)[0].split())
    mhz = mhz if mhz is not None else _max_mhz(info)
    cores = cores or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    avx512 = "avx512f" in flags and not re.search(r"haswell|zen|sandy", blas_core or "", re.I)
    width = 16 if avx512 else 8 if "avx2" in flags and "fma" in flags else 4
    if not mhz:
        return None, "unknown clock"
    isa = "AVX-512" if width == 16 else "AVX2" if width == 8 else "SSE"
    how = f"{cores} cores x {mhz / 1e3:.2f} GHz x {2 * 2 * width} FLOPs/cycle ({isa}, 2 FMA units)"
    return cores * mhz * 1e6 * 2 * 2 * width, how


def gpu_peak():
    """(FP32 FLOPs per second, how it was reckoned) of the current CUDA device."""
    cuda = backend.get_xp().cuda
    props = cuda.runtime.getDeviceProperties(cuda.Device().id)
    per_sm = {7: 64, 8: 64 if props["minor"] == 0 else 128, 9: 128}.get(props["major"], 128)
    sms, mhz = props["multiProcessorCount"], props["clockRate"] / 1e3
    how = f"{sms} SMs x {per_sm} FP32 cores x {mhz / 1e3:.2f} GHz x 2 (an FMA a cycle)"
    return sms * per_sm * mhz * 1e6 * 2, how


def _cpuinfo():
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return "flags :\n"


def _max_mhz(cpuinfo):
    """The cores' highest clock: cpufreq's maximum where the kernel exposes it, else what
    /proc/cpuinfo says now (a VM's nominal clock)."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") as f:
            return int(f.read()) / 1e3
    except (OSError, ValueError):
        found = re.findall(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)
        return max(map(float, found)) if found else None
