"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter), updated in place."""

import math

import numpy

from tinygrad_gpt.kernels.array_module import xp_of


def adamw_update(param, grad, exp_avg, exp_avg_sq, *, lr, beta1, beta2, eps, weight_decay, step):
    """One step for one parameter array; param, exp_avg (m) and exp_avg_sq (v) change in place.

    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2             (moment estimates)
    m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)            (bias corrections, t = step >= 1)
    p <- p - lr wd p - lr m_hat / (sqrt(v_hat) + eps)         (the decay is not scaled by Adam)
    """
    xp = xp_of(param)
    exp_avg[...] = beta1 * exp_avg + (1.0 - beta1) * grad
    exp_avg_sq[...] = beta2 * exp_avg_sq + (1.0 - beta2) * grad * grad
    m_hat = exp_avg / (1.0 - beta1**step)
    v_hat = exp_avg_sq / (1.0 - beta2**step)
    param -= lr * weight_decay * param
    param -= lr * m_hat / (xp.sqrt(v_hat) + eps)


def adamw_update_multi(params, grads, exp_avgs, exp_avg_sqs, **hyper):
    """adamw_update over lists of arrays sharing one set of hyper-parameters (the CUDA version does
    them all in one launch)."""
    for param, grad, exp_avg, exp_avg_sq in zip(params, grads, exp_avgs, exp_avg_sqs, strict=True):
        adamw_update(param, grad, exp_avg, exp_avg_sq, **hyper)


# --- fast ---------------------------------------------------------------------------------------

BLOCK = 1 << 15  # elements: 128 KiB of float32 per array, the ~6 arrays a block touches within a core's L2


def adamw_update_fast(param, grad, exp_avg, exp_avg_sq, *, lr, beta1, beta2, eps, weight_decay, step):
    """adamw_update in place with fewer passes: m_hat / (sqrt(v_hat) + eps) is
    (sqrt(1 - b2^t) / (1 - b1^t)) * m / (sqrt(v) + eps sqrt(1 - b2^t)), so the bias corrections
    become two scalars and no pass divides m or v; the decay is one multiply."""
    exp_avg *= beta1
    exp_avg += (1.0 - beta1) * grad
    exp_avg_sq *= beta2
    exp_avg_sq += (1.0 - beta2) * grad * grad
    if weight_decay:
        param *= 1.0 - lr * weight_decay
    bias1 = 1.0 - beta1**step
    bias2 = 1.0 - beta2**step
    update = xp_of(param).sqrt(exp_avg_sq)
    update += eps * math.sqrt(bias2)
    xp_of(param).divide(exp_avg, update, out=update)
    update *= lr * math.sqrt(bias2) / bias1
    param -= update


def adamw_update_multi_fast(params, grads, exp_avgs, exp_avg_sqs, **hyper):
    """adamw_update_fast over the lists, host arrays in blocks of BLOCK elements: each of its ten
    passes then reads and writes the cache instead of memory, which matters most for a large
    model (docs/benchmarks.md). CuPy arrays go whole: a block is a kernel launch there."""
    for param, grad, exp_avg, exp_avg_sq in zip(params, grads, exp_avgs, exp_avg_sqs, strict=True):
        block = BLOCK if xp_of(param) is numpy else param.size
        flat = [a.reshape(-1) for a in (param, grad, exp_avg, exp_avg_sq)]  # views: param and moments are contiguous
        for start in range(0, param.size, block):
            adamw_update_fast(*(a[start : start + block] for a in flat), **hyper)
