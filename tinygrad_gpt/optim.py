"""AdamW, the learning-rate schedule and gradient clipping, working in place on parameter arrays."""

import math

from tinygrad_gpt.engine import backend
from tinygrad_gpt.engine.dispatch import kernels_for
from tinygrad_gpt.kernels.array_module import xp_of
from tinygrad_gpt.nn import load_arrays


class AdamW:
    """AdamW over `model.named_parameters()`. Matrices (ndim >= 2: embeddings and Linear weights)
    are decayed; biases and LayerNorm gains are not. The training loop sets `opt.lr` each step."""

    def __init__(self, named_parameters, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1):
        self.named_parameters = list(named_parameters)
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.weight_decay = weight_decay
        self.step_count = 0
        # moment estimates, zeros on each parameter's own backend and dtype
        self.exp_avg = {name: xp_of(p.data).zeros_like(p.data) for name, p in self.named_parameters}
        self.exp_avg_sq = {name: xp_of(p.data).zeros_like(p.data) for name, p in self.named_parameters}

    def step(self):
        self.step_count += 1
        self.update(self.named_parameters)

    def update(self, named_parameters):
        """AdamW's update at this lr and step count of these of the parameters (those with a .grad)."""
        for decayed in (True, False):  # two groups, each one call (one kernel launch on the GPU)
            group = [(name, p) for name, p in named_parameters if p.grad is not None and (p.ndim >= 2) == decayed]
            if not group:
                continue
            kernels_for(group[0][1].data).adamw_update_multi(
                [p.data for _, p in group],
                [p.grad for _, p in group],
                [self.exp_avg[name] for name, _ in group],
                [self.exp_avg_sq[name] for name, _ in group],
                lr=self.lr,
                beta1=self.beta1,
                beta2=self.beta2,
                eps=self.eps,
                weight_decay=self.weight_decay if decayed else 0.0,
                step=self.step_count,
            )

    def zero_grad(self):
        for _, p in self.named_parameters:
            p.zero_grad()

    def state_dict(self):
        """{"step": int, "tensors": {"exp_avg.<name>": array, "exp_avg_sq.<name>": array}}, the
        arrays being the live moment buffers (not copies)."""
        tensors = {f"exp_avg.{name}": a for name, a in self.exp_avg.items()}
        tensors.update({f"exp_avg_sq.{name}": a for name, a in self.exp_avg_sq.items()})
        return {"step": self.step_count, "tensors": tensors}

    def load_state_dict(self, state_dict):
        """Copy saved moments (numpy or cupy arrays) into the buffers; names and shapes must match."""
        step = state_dict.get("step")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"optimizer state: 'step' must be a non-negative integer, got {step!r}")
        load_arrays(self.state_dict()["tensors"], state_dict.get("tensors", {}))
        self.step_count = step


def get_lr(step, learning_rate, min_lr, warmup_iters, lr_decay_iters):
    """Linear warmup to learning_rate, cosine decay to min_lr at lr_decay_iters, min_lr after."""
    if step < warmup_iters:
        return learning_rate * (step + 1) / (warmup_iters + 1)
    if step >= lr_decay_iters:
        return min_lr
    progress = (step - warmup_iters) / (lr_decay_iters - warmup_iters)  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (learning_rate - min_lr)


def grad_norm(parameters, sum_over=None):
    """The global L2 norm of all gradients, as a 0-d array on their device (no sync with the host).
    sum_over: where each process holds a part of the gradients (ZeRO-1), what adds a 0-d array up
    over the processes, in place (World.allreduce_sum)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    xp = xp_of(grads[0]) if grads else backend.get_xp()
    squares = xp.asarray(sum(xp.vdot(g.ravel(), g.ravel()) for g in grads)) if grads else xp.zeros(())
    if sum_over is not None:
        sum_over(squares)
    return xp.asarray(xp.sqrt(squares))


def clip_grad_norm_(parameters, max_norm, sum_over=None):
    """Scale all gradients together so their global L2 norm is at most max_norm; return the norm
    before clipping as a 0-d array. Everything stays on the device: no sync with the host.
    sum_over: as for grad_norm."""
    parameters = list(parameters)
    total_norm = grad_norm(parameters, sum_over)
    scale = xp_of(total_norm).minimum(1.0, max_norm / (total_norm + 1e-6))
    grads = [p.grad for p in parameters if p.grad is not None]
    if grads:
        kernels_for(grads[0]).scale_multi(grads, scale)
    return total_norm
