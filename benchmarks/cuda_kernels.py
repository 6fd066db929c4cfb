"""Time each CUDA kernel (kernels/cuda) against its xp reference on the same cupy arrays.

    python3 benchmarks/cuda_kernels.py

Shapes are the GPT baby's (shakespeare_char: B=64, T=256, C=384, H=6, vocab 65). Each time is the
median of many runs between CUDA events, after warm-up (compilation stays out). Prints a markdown
table for docs/cuda_kernels.md.
"""

import cupy
import numpy as np

from tinygrad_gpt.kernels import adamw, attention, cross_entropy, cuda, gelu, layernorm, softmax

B, T, C, H, V, LAYERS = 64, 256, 384, 6, 65, 6
HD = C // H
ADAM = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "step": 10}


def median_ms(fn, reps=50, warmup=5):
    for _ in range(warmup):
        fn()
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    times = []
    for _ in range(reps):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop))
    return float(np.median(times))


def randn(*shape, scale=1.0):
    return cupy.random.standard_normal(shape, dtype=cupy.float32) * scale


def gpt_parameter_shapes():
    per_layer = [(C,), (C,), (C, 3 * C), (3 * C,), (C, C), (C,), (C,), (C,), (C, 4 * C), (4 * C,), (4 * C, C), (C,)]
    return [(V, C), (T, C)] + per_layer * LAYERS + [(C,), (C,)]


def cases():
    """(name, shape, reference call, CUDA call) for each kernel."""
    x = randn(B * T, C)
    w, b = randn(C), randn(C)
    y, mean, rstd = layernorm.layernorm_forward(x, w, b)
    yield (
        "layernorm_forward",
        "(16384, 384)",
        lambda: layernorm.layernorm_forward(x, w, b),
        lambda: cuda.layernorm_forward(x, w, b),
    )
    yield (
        "layernorm_backward",
        "(16384, 384)",
        lambda: layernorm.layernorm_backward(y, x, w, mean, rstd),
        lambda: cuda.layernorm_backward(y, x, w, mean, rstd),
    )

    logits = randn(B * T, V, scale=3.0)
    p = softmax.softmax_forward(logits)
    for name in ("softmax", "log_softmax"):
        fwd, bwd = f"{name}_forward", f"{name}_backward"
        yield (fwd, "(16384, 65)", lambda f=fwd: getattr(softmax, f)(logits), lambda f=fwd: getattr(cuda, f)(logits))
        yield (
            bwd,
            "(16384, 65)",
            lambda f=bwd: getattr(softmax, f)(logits, p),
            lambda f=bwd: getattr(cuda, f)(logits, p),
        )

    targets = cupy.random.randint(0, V, B * T)
    _, lse = cross_entropy.cross_entropy_forward(logits, targets)
    dloss = cupy.ones((), cupy.float32)
    yield (
        "cross_entropy_forward",
        "(16384, 65)",
        lambda: cross_entropy.cross_entropy_forward(logits, targets),
        lambda: cuda.cross_entropy_forward(logits, targets),
    )
    yield (
        "cross_entropy_backward",
        "(16384, 65)",
        lambda: cross_entropy.cross_entropy_backward(dloss, logits, targets, lse),
        lambda: cuda.cross_entropy_backward(dloss, logits, targets, lse),
    )

    h = randn(B * T, 4 * C)
    yield ("gelu_forward", "(16384, 1536)", lambda: gelu.gelu_forward(h), lambda: cuda.gelu_forward(h))
    yield ("gelu_backward", "(16384, 1536)", lambda: gelu.gelu_backward(h, h), lambda: cuda.gelu_backward(h, h))

    state = [
        (randn(*s), randn(*s), cupy.zeros(s, cupy.float32), cupy.zeros(s, cupy.float32)) for s in gpt_parameter_shapes()
    ]
    n = sum(p.size for p, *_ in state)

    def each(update):
        for p_, g_, m_, v_ in state:
            update(p_, g_, m_, v_, **ADAM)

    yield (
        "adamw_update, per array",
        f"{len(state)} arrays, {n / 1e6:.2f}M",
        lambda: each(adamw.adamw_update),
        lambda: each(cuda.adamw_update),
    )
    yield (
        "adamw_update_multi",
        f"{len(state)} arrays, {n / 1e6:.2f}M",
        lambda: each(adamw.adamw_update),
        lambda: cuda.adamw_update_multi(*zip(*state), **ADAM),
    )

    proj = randn(B, T, 3 * C)
    q, k, v = (proj[:, :, i * C : (i + 1) * C].reshape(B, T, H, HD).transpose(0, 2, 1, 3) for i in range(3))
    dout = randn(B, H, T, HD)
    _, att = attention.attention_forward(q, k, v)
    _, flash_saved = cuda.attention_forward(q, k, v)
    shape = f"({B}, {H}, {T}, {HD}) causal"
    yield (
        "attention_forward (flash)",
        shape,
        lambda: attention.attention_forward(q, k, v),
        lambda: cuda.attention_forward(q, k, v),
    )
    yield (
        "attention_backward (flash)",
        shape,
        lambda: attention.attention_backward(dout, q, k, v, att),
        lambda: cuda.attention_backward(dout, q, k, v, flash_saved),
    )
    mask = (cupy.random.rand(B, H, T, T, dtype=cupy.float32) >= 0.2).astype(cupy.float32) / 0.8
    _, att_mask = attention.attention_forward(q, k, v, True, mask)
    yield (
        "attention_forward (fused, dropout)",
        shape,
        lambda: attention.attention_forward(q, k, v, True, mask),
        lambda: cuda.attention_forward(q, k, v, True, mask),
    )
    yield (
        "attention_backward (fused, dropout)",
        shape,
        lambda: attention.attention_backward(dout, q, k, v, att_mask, mask),
        lambda: cuda.attention_backward(dout, q, k, v, att_mask, mask),
    )


def main():
    props = cupy.cuda.runtime.getDeviceProperties(0)
    print(f"device: {props['name'].decode()}, CuPy {cupy.__version__}, float32\n")
    print("| kernel | shape | xp reference (ms) | CUDA (ms) | speedup |")
    print("| --- | --- | ---: | ---: | ---: |")
    for name, shape, ref, mine in cases():
        t_ref, t_mine = median_ms(ref), median_ms(mine)
        print(f"| {name} | {shape} | {t_ref:.3f} | {t_mine:.3f} | {t_ref / t_mine:.1f}x |", flush=True)
    flash_bytes, att_bytes = B * H * T * 4, B * H * T * T * 4
    print(
        f"\nsaved for attention's backward: {att_bytes / 2**20:.0f} MiB of probabilities (reference, "
        f"fused) vs {flash_bytes / 2**20:.2f} MiB of row log-sum-exp (flash)"
    )


if __name__ == "__main__":
    main()
