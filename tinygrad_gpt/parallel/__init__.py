"""Data parallelism, the part the training loop calls: how one step's forward and backward are
shared out over the CPU's cores (shards.py: threads or forked worker processes, processes.py) and
over MPI ranks (mpi.py, with the collectives.py that sum over them, and ZeRO-1's sharded AdamW in
zero.py). Training needs only `data_parallel` and `shard_workers` below; everything else here
stays behind them."""

from tinygrad_gpt.parallel.mpi import DistributedDataParallel
from tinygrad_gpt.parallel.shards import DataParallel, default_workers
from tinygrad_gpt.parallel.zero import ShardedAdamW, ZeroDataParallel


def shard_workers(world):
    """What runs a process's shards: under MPI DistributedDataParallel's, else DataParallel's default."""
    return DistributedDataParallel.WORKERS if world.distributed else default_workers()


def data_parallel(model, optimizer, world, threads, timeout=None):
    """How a training step is shared out: (what runs forward and backward, `step(x, y, seed, scale,
    sync)` with sync False on each micro-step of gradient accumulation but the last, over `threads`
    shards (worker processes or threads: shard_workers) and the ranks of `world`, or None for the
    plain one-thread step; the optimizer to step, which worker processes share out; the tensors
    whose gradients clipping scales; what sums their norm over ranks where they are shards).
    timeout: seconds a worker process may take to answer (None: no limit)."""
    if isinstance(optimizer, ShardedAdamW):  # ZeRO-1: this rank holds its optimizer's shard of the gradients
        parallel = ZeroDataParallel(model, world, threads, optimizer)
        return parallel, optimizer, optimizer.pieces, world.allreduce_sum
    if world.distributed:
        return DistributedDataParallel(model, world, threads), optimizer, model.parameters(), None
    if threads == 1:
        return None, optimizer, model.parameters(), None
    parallel = DataParallel(model, threads, optimizer=optimizer, timeout=timeout)
    return parallel, parallel.optimizer, model.parameters(), None
