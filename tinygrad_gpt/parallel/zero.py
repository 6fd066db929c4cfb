"""ZeRO-1 (`--zero 1`, llm.c's name for stage 1 of the ZeRO paper): the ranks share AdamW's moments
out instead of each holding them all.

The parameters, in model order, make one flat vector, padded to a multiple of the ranks and cut in
equal shards, one per rank. A step: every rank's weighted gradients (its rows of the batch, as in
DistributedDataParallel) go through one reduce-scatter, which leaves each rank the summed gradient
of its own shard alone; the gradient norm adds the shards' squares up over the ranks; AdamW updates
the rank's shard of the parameters, keeping moments for that shard only (1/N of them); and an
all-gather hands every rank the whole updated vector. Under gradient accumulation the
micro-batches' gradients add up on each rank and the one reduce-scatter comes with the last.
Element by element this is plain data parallelism's arithmetic, but for the order of the sums.
Checkpoints keep the one format: saving gathers the moments whole, so state_dict() is a collective
that every rank must call.
"""

from tinygrad_gpt.engine import Tensor
from tinygrad_gpt.errors import UsageError
from tinygrad_gpt.kernels.array_module import xp_of
from tinygrad_gpt.optim import AdamW
from tinygrad_gpt.parallel.mpi import DistributedDataParallel


class ShardedAdamW(AdamW):
    """`optimizer`'s AdamW (its parameters and settings; its moments are dropped) over this rank's
    shard of the flat parameter vector: `pieces`, the parts of parameters in the shard, are what
    AdamW updates and gradient clipping sees. After each step every parameter holds the whole
    update."""

    def __init__(self, optimizer, world):
        if not world.distributed:
            raise UsageError("--zero 1 shares the optimizer's state out over MPI ranks: run it under mpiexec")
        self.world, self.model_parameters = world, optimizer.named_parameters
        data = self.model_parameters[0][1].data
        xp, count = xp_of(data), sum(p.size for _, p in self.model_parameters)
        size = -(-count // world.size)  # a shard: the count over the ranks, rounded up
        self.shard = slice(world.rank * size, (world.rank + 1) * size)
        self.flat = xp.zeros(size * world.size, data.dtype)  # every parameter, then zeros
        self.grad = xp.zeros(size, data.dtype)  # this rank's shard of the summed gradient
        self.moments = {kind: xp.zeros(size, data.dtype) for kind in ("exp_avg", "exp_avg_sq")}  # and AdamW's
        self.spans, pieces, views, offset = [], [], [], 0  # spans: where each parameter lies in flat
        for name, p in self.model_parameters:
            self.spans.append((name, p, slice(offset, offset + p.size)))
            self.flat[offset : offset + p.size] = p.data.ravel()
            low, high = max(offset, self.shard.start), min(offset + p.size, self.shard.stop)
            if low < high:  # the part of p in this rank's shard
                here = slice(low - self.shard.start, high - self.shard.start)
                pieces.append((name, _Piece(self.flat[low:high], self.grad[here], p.ndim)))
                views.append((name, here))
            offset += p.size
        super().__init__(
            pieces, optimizer.lr, (optimizer.beta1, optimizer.beta2), optimizer.eps, optimizer.weight_decay
        )
        self.exp_avg = {name: self.moments["exp_avg"][here] for name, here in views}
        self.exp_avg_sq = {name: self.moments["exp_avg_sq"][here] for name, here in views}
        self.pieces = [piece for _, piece in pieces]

    def step(self):
        super().step()  # this rank's shard of the parameters, in flat
        self.world.all_gather(self.flat)
        for _, p, span in self.spans:
            p.data[...] = self.flat[span].reshape(p.shape)

    def zero_grad(self):
        self.grad[...] = 0  # the shard's summed gradient, which ZeroDataParallel adds into
        for _, p in self.model_parameters:
            p.zero_grad()

    def state_dict(self):
        """AdamW's whole state, in its format, gathered from every rank (so every rank calls this)."""
        tensors = {}
        for kind, shard in self.moments.items():
            whole = xp_of(self.flat).zeros_like(self.flat)
            whole[self.shard] = shard
            self.world.all_gather(whole)
            tensors.update({f"{kind}.{name}": whole[span].reshape(p.shape) for name, p, span in self.spans})
        return {"step": self.step_count, "tensors": tensors}

    def load_state_dict(self, state_dict):
        """Keep this rank's shard of AdamW's whole saved state, checked as AdamW checks it."""
        whole = AdamW(self.model_parameters)
        whole.load_state_dict(state_dict)
        for kind, shard in self.moments.items():
            flat = xp_of(self.flat).zeros_like(self.flat)
            for name, _, span in self.spans:
                flat[span] = getattr(whole, kind)[name].ravel()
            shard[...] = flat[self.shard]
        self.step_count = whole.step_count


class _Piece:
    """The part of a parameter inside this rank's shard, as AdamW sees a parameter: its values and
    gradient are views of the shard's, ndim is the whole parameter's (AdamW decays matrices)."""

    def __init__(self, data, grad, ndim):
        self.data, self.grad, self.ndim = data, grad, ndim


class ZeroDataParallel(DistributedDataParallel):
    """step(x, y, seed, scale=1, sync=True): DistributedDataParallel's, but with sync one
    reduce-scatter of the gradients leaves this rank the summed gradient of `optimizer`'s shard
    alone (a ShardedAdamW, into whose gradient it is added), and a small Allreduce sums the loss;
    without sync, as there, the gradients and loss only add up on this rank."""

    def __init__(self, model, world, threads, optimizer):
        super().__init__(model, world, threads, length=optimizer.flat.size)  # the gradients, then zeros
        self.optimizer = optimizer
        self.shard_grad = xp_of(self.flat).zeros_like(optimizer.grad)  # what one reduce-scatter leaves here
        self.loss = xp_of(self.flat).zeros(1, self.flat.dtype)

    def step(self, x, y, seed, scale=1.0, sync=True):
        self.forward_backward(x, y, seed, scale, self.loss)
        if not sync:
            return self.no_loss_yet()
        self.world.reduce_scatter_sum(self.flat, self.shard_grad)
        self.pending = False
        self.optimizer.grad += self.shard_grad  # zeroed by the optimizer's zero_grad: syncs add up
        self.world.allreduce_sum(self.loss)
        return Tensor._from_array(self.loss[0].copy())
