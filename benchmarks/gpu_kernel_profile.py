"""Which GPU kernels a baby-preset training step spends its time in (ours and PyTorch's twin).

    python3 benchmarks/gpu_kernel_profile.py

PyTorch's profiler records every CUDA kernel of the process through CUPTI, CuPy's included, so it
can time our step too. Prints the top kernels by total GPU time over 5 steps, for each side.
"""

from torch.profiler import ProfilerActivity, profile

from tinygrad_gpt import engine
from tinygrad_gpt.config import preset_config
from tinygrad_gpt.engine import backend
from tinygrad_gpt.tools.bench import random_batch, tinygpt_step
from tinygrad_gpt.tools.torch_twin import TorchTwin


def _gpu_us(event):
    """An event's own GPU time in microseconds (the attribute's name changed across versions)."""
    return getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0) or 0


engine.set_backend("cupy")
config = preset_config("baby")
ours, model, _ = tinygpt_step(config)
weights = {name: backend.to_numpy(a).copy() for name, a in model.state_dict().items()}
theirs = TorchTwin(model.config, config, weights, *random_batch(config), "cuda")
for name, step, sync in [("ours", ours, backend.synchronize), ("torch", theirs.step, theirs.synchronize)]:
    for _ in range(3):
        step()
    sync()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            step()
        sync()
    events = [e for e in prof.key_averages() if _gpu_us(e) > 0]
    total = sum(_gpu_us(e) for e in events)
    kernels = sum(e.count for e in events) // 5
    print(f"== {name}: GPU kernel time {total / 5 / 1e3:.1f} ms per step, {kernels} kernels per step")
    for e in sorted(events, key=lambda e: -_gpu_us(e))[:18]:
        print(f"{_gpu_us(e) / 5 / 1e3:8.2f} ms {e.count // 5:5d}x  {e.key[:110]}")
