"""Where the baby preset's GPU step goes: CPU (Python) time versus GPU time, and our matmuls
against PyTorch's on the same shapes.

    PYTHONPATH=. python3 benchmarks/gpu_probe.py
"""
import cupy
import numpy as np
import torch
from cupyx.profiler import benchmark

import engine
from tinygrad_gpt.bench import tinygpt_step
from tinygrad_gpt.presets import preset_config

engine.set_backend("cupy")
step, _ = tinygpt_step(preset_config("baby"))
result = benchmark(step, n_repeat=10, n_warmup=3)
print(f"training step: cpu {np.median(result.cpu_times) * 1e3:.1f} ms, gpu {np.median(result.gpu_times[0]) * 1e3:.1f} ms")

rows = 64 * 256
print(f"{'shape':<28}{'ours ms':>9}{'torch ms':>9}")
for k, n in [(384, 1152), (384, 384), (384, 1536), (1536, 384), (384, 65)]:
    x, w, g = (cupy.random.standard_normal(s, dtype=cupy.float32) for s in [(rows, k), (k, n), (rows, n)])
    tx, tw, tg = (torch.as_tensor(a, device="cuda") for a in (x, w, g))
    for label, ours, theirs in [("fwd x@w", lambda: x @ w, lambda: tx @ tw), ("dx g@w.T", lambda: g @ w.T, lambda: tg @ tw.T),
                                ("dw x.T@g", lambda: x.T @ g, lambda: tx.T @ tg), ("db g.sum(0)", lambda: g.sum(axis=0), lambda: tg.sum(0))]:
        a = np.median(benchmark(ours, n_repeat=20, n_warmup=3).gpu_times[0]) * 1e3
        b = np.median(benchmark(theirs, n_repeat=20, n_warmup=3).gpu_times[0]) * 1e3
        print(f"{label} {k}x{n:<14}{a:>9.3f}{b:>9.3f}")
