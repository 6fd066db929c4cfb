"""AdamW (kernels/adamw.py has the update) in one loop per parameter: each element's moment
estimates and parameter are read once and written once, where the fast NumPy kernel makes ten
passes. The bias corrections fold into two scalars, as in adamw_update_fast:
m_hat / (sqrt(v_hat) + eps) = (sqrt(1 - b2^t) / (1 - b1^t)) m / (sqrt(v) + eps sqrt(1 - b2^t))."""

import math

import numpy

from tinygrad_gpt.kernels.adamw import adamw_update_fast
from tinygrad_gpt.kernels.cpu.compiler import compiled, flat
from tinygrad_gpt.kernels.cpu.threads import THREADED_MIN, run_cut, threads_allowed


@compiled
def _update(param, grad, exp_avg, exp_avg_sq, beta1, beta2, decay, step_size, eps_hat):
    one = param.dtype.type(1)
    for i in range(param.size):
        g = grad[i]
        m = beta1 * exp_avg[i] + (one - beta1) * g
        v = beta2 * exp_avg_sq[i] + (one - beta2) * g * g
        exp_avg[i], exp_avg_sq[i] = m, v
        param[i] = param[i] * decay - step_size * m / (numpy.sqrt(v) + eps_hat)


def adamw_update_multi(params, grads, exp_avgs, exp_avg_sqs, *, lr, beta1, beta2, eps, weight_decay, step):
    """Updates each param, exp_avg and exp_avg_sq in place; an array the loop cannot update through
    a flat view (not C-contiguous) goes to the fast kernel. Large parameters (THREADED_MIN) are cut
    into one contiguous run per thread (threads_allowed()); each element's update is the same loop
    either way, so the bits do not depend on the cut."""
    bias1, bias2 = 1.0 - beta1**step, 1.0 - beta2**step
    scalars = (beta1, beta2, 1.0 - lr * weight_decay, lr * math.sqrt(bias2) / bias1, eps * math.sqrt(bias2))
    hyper = {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": weight_decay, "step": step}
    threads = threads_allowed()
    large = []
    for param, grad, exp_avg, exp_avg_sq in zip(params, grads, exp_avgs, exp_avg_sqs, strict=True):
        if not all(a.flags.c_contiguous for a in (param, exp_avg, exp_avg_sq)):
            adamw_update_fast(param, grad, exp_avg, exp_avg_sq, **hyper)
            continue
        arrays, typed = tuple(map(flat, (param, grad, exp_avg, exp_avg_sq))), tuple(map(param.dtype.type, scalars))
        if threads > 1 and param.size >= THREADED_MIN:
            large.append((arrays, typed))
        else:
            _update(*arrays, *typed)
    if large:
        run_cut(_update, large, threads)
