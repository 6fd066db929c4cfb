"""Gradient accumulation through DistributedDataParallel or ZeroDataParallel, the ranks' gradients
summed on every micro-step or once, on the last, with the wrappers' collectives counted.

Imported, it gives the tests `accumulate`; run under mpiexec (`mpiexec -n N python
tests/accumulation_check.py`) it trains both ways over the ranks, checks that they agree to float32
rounding (summed over micro-batches first and ranks second, the additions come in another order)
and that one sync makes one gradient collective, and rank 0 prints one line."""

import collections

import numpy as np

from tinygrad_gpt.model import GPT, GPTConfig
from tinygrad_gpt.optim import AdamW
from tinygrad_gpt.parallel.mpi import DistributedDataParallel, World
from tinygrad_gpt.parallel.zero import ShardedAdamW, ZeroDataParallel

MICRO_STEPS, BATCHES = 4, 2


class Counted:
    """Collectives that count their calls and pass them on to `inner` (None: a job of one rank,
    where each sum is the buffer itself)."""

    def __init__(self, inner=None):
        self.inner, self.calls = inner, collections.Counter()

    def _pass(self, name, *args):
        self.calls[name] += 1
        if self.inner is not None:
            getattr(self.inner, name)(*args)

    def allreduce_sum(self, buffer):
        self._pass("allreduce_sum", buffer)

    def reduce_scatter_sum(self, buffer, part):
        if self.inner is None:
            part[...] = buffer
        self._pass("reduce_scatter_sum", buffer, part)

    def all_gather(self, buffer):
        self._pass("all_gather", buffer)


def accumulate(world, zero, sync_every):
    """BATCHES AdamW steps of MICRO_STEPS micro-batches each (dropout on), syncing on every
    micro-step or on the last alone: per batch (its loss, the gradients the optimizer steps on, the
    counts of the collectives its micro-steps made), and the parameters at the end."""
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.1), seed=3)
    optimizer = AdamW(model.named_parameters())
    if zero:
        optimizer = ShardedAdamW(optimizer, world)
        parallel = ZeroDataParallel(model, world, 1, optimizer)
    else:
        parallel = DistributedDataParallel(model, world, 1)
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(BATCHES):
        x, y = rng.integers(0, 11, (2, 2 * MICRO_STEPS * world.size, 8))  # 2 rows per rank per micro-step
        before, loss = world.collectives.calls.copy(), 0.0
        for i, (xm, ym) in enumerate(zip(np.split(x, MICRO_STEPS), np.split(y, MICRO_STEPS))):
            sync = sync_every or i == MICRO_STEPS - 1
            loss = loss + parallel.step(xm, ym, seed=i, scale=1 / MICRO_STEPS, sync=sync).data
        grads = [optimizer.grad.copy()] if zero else [p.grad.copy() for p in model.parameters()]
        batches.append((loss, grads, world.collectives.calls - before))
        optimizer.step()
        optimizer.zero_grad()
    return batches, [p.data.copy() for p in model.parameters()]


if __name__ == "__main__":
    from mpi4py import MPI

    from tinygrad_gpt.parallel.collectives import MPICollectives

    comm = MPI.COMM_WORLD
    for zero in (0, 1):
        runs = []
        for sync_every in (True, False):
            world = World(comm.Get_rank(), comm.Get_size(), comm=comm, collectives=Counted(MPICollectives(comm)))
            runs.append(accumulate(world, zero, sync_every))
        (every, every_params), (once, once_params) = runs
        for (loss, grads, _), (want_loss, want_grads, _) in zip(once, every, strict=True):
            np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
            for got, want in zip(grads, want_grads, strict=True):
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
        # AdamW steps a parameter by about lr whatever its gradient's size, rounding and all: an
        # element whose gradient is near 0 can differ by far more than its gradient did
        for got, want in zip(once_params, every_params, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        gradients = "reduce_scatter_sum" if zero else "allreduce_sum"
        assert all(calls[gradients] == 1 for _, _, calls in once), [calls for _, _, calls in once]
        assert all(calls[gradients] == MICRO_STEPS for _, _, calls in every), [calls for _, _, calls in every]
    agreed = comm.allreduce(1)
    if comm.Get_rank() == 0:
        print(f"one sync per batch agrees on {agreed} ranks")
