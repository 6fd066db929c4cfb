"""AdamW: Adam with decoupled weight decay (Loshchilov & Hutter), updated in place."""

import math

from kernels.array_module import xp_of


def adamw_update(param, grad, exp_avg, exp_avg_sq, *, lr, beta1, beta2, eps, weight_decay, step):
    """One step for one parameter array; param, exp_avg, exp_avg_sq are modified in place.

    m <- b1 m + (1-b1) g;  v <- b2 v + (1-b2) g^2            (moment estimates)
    p <- p (1 - lr wd) - lr * m_hat / (sqrt(v_hat) + eps)     (decay is not scaled by Adam)
    with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t), t = step >= 1.
    """
    exp_avg *= beta1
    exp_avg += (1.0 - beta1) * grad
    exp_avg_sq *= beta2
    exp_avg_sq += (1.0 - beta2) * grad * grad
    if weight_decay:
        param *= 1.0 - lr * weight_decay
    bias1 = 1.0 - beta1**step
    bias2 = 1.0 - beta2**step
    # m_hat / (sqrt(v_hat) + eps) = (sqrt(bias2) / bias1) * m / (sqrt(v) + eps sqrt(bias2)):
    # the bias corrections become two scalars, and no pass divides v by bias2
    xp = xp_of(param)
    update = xp.sqrt(exp_avg_sq)
    update += eps * math.sqrt(bias2)
    xp.divide(exp_avg, update, out=update)
    update *= lr * math.sqrt(bias2) / bias1
    param -= update


def adamw_update_multi(params, grads, exp_avgs, exp_avg_sqs, **hyper):
    """adamw_update over lists of arrays sharing one set of hyper-parameters (on the GPU, the CUDA
    version does them all in one launch)."""
    for param, grad, exp_avg, exp_avg_sq in zip(params, grads, exp_avgs, exp_avg_sqs, strict=True):
        adamw_update(param, grad, exp_avg, exp_avg_sq, **hyper)
