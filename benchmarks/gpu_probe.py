"""Where the baby preset's GPU step goes: CPU (Python) time versus GPU time, and our matmuls
against PyTorch's on the same shapes.

    python3 benchmarks/gpu_probe.py
"""

import cupy
import numpy as np
import torch
from cupyx.profiler import benchmark

from tinygrad_gpt import engine
from tinygrad_gpt.config import preset_config
from tinygrad_gpt.tools.bench import tinygpt_step

engine.set_backend("cupy")
step, _, _ = tinygpt_step(preset_config("baby"))
result = benchmark(step, n_repeat=10, n_warmup=3)
print(
    f"training step: cpu {np.median(result.cpu_times) * 1e3:.1f} ms, gpu {np.median(result.gpu_times[0]) * 1e3:.1f} ms"
)

rows = 64 * 256
print(f"{'shape':<28}{'ours ms':>9}{'torch ms':>9}")
for k, n in [(384, 1152), (384, 384), (384, 1536), (1536, 384), (384, 65)]:
    x, w, g = (cupy.random.standard_normal(s, dtype=cupy.float32) for s in [(rows, k), (k, n), (rows, n)])
    tx, tw, tg = (torch.as_tensor(a, device="cuda") for a in (x, w, g))
    pairs = [
        ("fwd x@w", x.__matmul__, w, tx.__matmul__, tw),
        ("dx g@w.T", g.__matmul__, w.T, tg.__matmul__, tw.T),
        ("dw x.T@g", x.T.__matmul__, g, tx.T.__matmul__, tg),
    ]
    for label, ours, ours_arg, theirs, theirs_arg in pairs:
        a = np.median(benchmark(ours, (ours_arg,), n_repeat=20, n_warmup=3).gpu_times[0]) * 1e3
        b = np.median(benchmark(theirs, (theirs_arg,), n_repeat=20, n_warmup=3).gpu_times[0]) * 1e3
        print(f"{label} {k}x{n:<14}{a:>9.3f}{b:>9.3f}")
    a = np.median(benchmark(g.sum, (), {"axis": 0}, n_repeat=20, n_warmup=3).gpu_times[0]) * 1e3
    b = np.median(benchmark(tg.sum, (0,), n_repeat=20, n_warmup=3).gpu_times[0]) * 1e3
    print(f"db g.sum(0) {k}x{n:<14}{a:>9.3f}{b:>9.3f}")
