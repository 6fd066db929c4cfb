"""Data parallelism over CPU cores: the batch cut into shards, each taken through forward and
backward by its own worker (a forked process, or a thread), the shards' parameter gradients summed.

NumPy runs every elementwise op and reduction on one core; PyTorch runs its fused kernels on all
of them. Shards recover that: each core works on its own shard, with BLAS held to one thread per
shard so the cores are not asked for twice. Threads can do it because NumPy and BLAS release the
GIL while they compute, but the Python between the kernels still takes turns; worker processes
(processes.py, the default on Linux) have an interpreter each. The batch loss is the
token-weighted mean of the shards' losses, L = sum_s (n_s / N) L_s, so each shard's backward
starts from n_s / N and the gradients simply add up. The shard count is part of the arithmetic
(sums are rounded in a different order), so TINYGPT_CPU_THREADS pins it; 1 is the plain
single-thread step. Only the numpy backend shards: a GPU runs one stream.
"""

import contextvars
import itertools
import os
import queue
import sys
import threading

from tinygrad_gpt import engine
from tinygrad_gpt.engine import Tensor, backend
from tinygrad_gpt.engine.trace import is_tracing
from tinygrad_gpt.errors import UsageError
from tinygrad_gpt.kernels.blas import blas_threadpools
from tinygrad_gpt.parallel.processes import ShardProcesses

# In threads, Python's part of a shard's step holds the GIL, so past a few shards it would
# dominate the step; in worker processes it does not, but each process makes three round trips a
# step, gradient clipping runs in one, and each shard's BLAS has one core only. Measured: two
# shards on two cores (docs/benchmarks.md); the cap of 4 is a reckoning.
MAX_DEFAULT_SHARDS = 4
WORKERS = ("processes", "threads")


def default_shards(batch_size, processes=1):
    """TINYGPT_CPU_THREADS, else this process's share of the cores (`processes` of them, MPI ranks,
    share the machine) up to MAX_DEFAULT_SHARDS; at most one shard per sequence, and 1 off the numpy
    backend, while tracing, or where BLAS's threads cannot be limited."""
    if backend.name() != "numpy" or is_tracing() or blas_threadpools() is None:
        return 1
    wanted = os.environ.get("TINYGPT_CPU_THREADS")
    if wanted is not None:
        if not wanted.isdigit() or int(wanted) < 1:
            raise UsageError(f"TINYGPT_CPU_THREADS must be a positive integer, got {wanted!r}")
        cores = int(wanted)
    else:
        cores = min(_cores(processes), MAX_DEFAULT_SHARDS)
    return max(1, min(cores, batch_size))


def share_cores(processes):
    """Hold BLAS, for good, to this process's share of the cores when `processes` processes (MPI
    ranks) share the machine: else each would start a thread per core, and OpenBLAS's threads spin."""
    if processes > 1 and blas_threadpools() is not None:
        blas_threadpools().limit(limits=_cores(processes), user_api="blas")  # lasts: not used as a context


def _cores(processes):
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // processes)


def default_workers():
    """TINYGPT_CPU_WORKERS (processes or threads), else processes where they can be forked (Linux)."""
    wanted = os.environ.get("TINYGPT_CPU_WORKERS")
    if wanted is not None and wanted not in WORKERS:
        raise UsageError(f"TINYGPT_CPU_WORKERS must be one of {', '.join(WORKERS)}, got {wanted!r}")
    return wanted or ("processes" if sys.platform.startswith("linux") else "threads")


def describe_shards(shards, workers, each=False):
    """How a process's step is shared out, for a run's first line: '' for one shard, else
    ", 2 threads" or ", 2 shards, 1 in a worker process" (each: per MPI rank)."""
    if shards == 1:
        return ""
    helpers = "1 in a worker process" if shards == 2 else f"{shards - 1} in worker processes"
    kind = f"{shards} threads" if workers == "threads" else f"{shards} shards, {helpers}"
    return f", {kind}" + (" each" if each else "")


class DataParallel:
    """step(x, y, seed, scale, sync): scale times model(x, y)'s loss as a 0-d Tensor, with every
    parameter's gradient of it added into its `.grad`, the batch split along its first axis over
    `shards` workers: "processes" (tinygrad_gpt/parallel/processes.py) or "threads", default from
    default_workers(); the calling thread takes the last shard. Each shard seeds its own dropout
    generator from (seed, shard index); the gradients are added in shard order, so both kinds of
    worker give the same bits. optimizer: the model's AdamW; `.optimizer` is then the one to step,
    which worker processes share out (processes.SharedAdamW: the same bits again). `sync` is
    DistributedDataParallel's, accepted and ignored: the shards' gradients are summed every step,
    since summing each shard's micro-batches first would change the order of the additions, and so
    the bits, for memory copies that stay on this machine. timeout: seconds a worker process may
    take to answer (processes.ShardProcesses; None: no limit)."""

    def __init__(self, model, shards, workers=None, optimizer=None, timeout=None):
        self.model, self.shards = model, shards
        self.params = model.parameters()
        self.blas = blas_threadpools() if shards > 1 else None
        self.workers = workers or default_workers()
        if self.workers not in WORKERS:
            raise ValueError(f"workers must be one of {WORKERS}, got {self.workers!r}")
        if shards > 1 and self.workers == "processes":
            self._processes = ShardProcesses(model, shards - 1, self._shard, optimizer, timeout)
            self.optimizer = self._processes.optimizer
        else:  # idle threads wait on a queue (daemon threads: they end with the process)
            self._threads = [_Worker() for _ in range(shards - 1)]
            self.optimizer = optimizer

    def step(self, x, y, seed, scale=1.0, sync=True):
        n = len(x)
        bounds = [n * s // self.shards for s in range(self.shards + 1)]
        tasks = [
            (x[a:b], y[a:b], (b - a) / n * scale, seed * self.shards + s)
            for s, (a, b) in enumerate(itertools.pairwise(bounds))
        ]
        if self.shards == 1:
            results = [self._shard(*tasks[0])]
        elif self.workers == "processes":  # they add the gradients up themselves
            with self.blas.limit(limits=1, user_api="blas"):
                return Tensor._from_array(sum(self._processes.step(tasks)))
        else:
            with self.blas.limit(limits=1, user_api="blas"):
                results = self._run_threads(tasks)
        for p, *grads in zip(self.params, *(g for _, g in results)):
            for g in grads:  # engine.grad's arrays are this process's own: the first becomes .grad
                if g is not None:
                    p.accumulate_grad(g)
        return Tensor._from_array(sum(loss for loss, _ in results))

    def _run_threads(self, tasks):
        """[self._shard(*task) for task in tasks], the last here, the others on the worker threads."""
        for worker, task in zip(self._threads, tasks):
            worker.submit(self._shard, *task)
        try:
            last = self._shard(*tasks[-1])
        finally:  # every worker is waited for, so none is still busy when this returns
            outcomes = [worker.wait() for worker in self._threads]
        return [_unwrap(outcome) for outcome in outcomes] + [last]

    def _shard(self, x, y, weight, seed):
        """(weight * loss, gradient arrays of the parameters, None where none reaches) of one shard."""
        engine.manual_seed(seed)
        _, loss = self.model(x, y)  # host ids: range-checked on the host, no device sync
        start = None if weight == 1 else weight  # None: ones made on the loss's device, as backward() does
        grads = engine.grad(loss, self.params, grad_output=start)
        return loss.data * weight, [None if g is None else g.data for g in grads]


def _unwrap(outcome):
    ok, value = outcome
    if not ok:
        raise value
    return value


class _Worker:
    """One thread that runs submitted calls one at a time, each in a copy of the submitting
    thread's context (its grad mode, NumPy's error state), and hands back (True, result) or
    (False, exception)."""

    def __init__(self):
        self._tasks, self._outcomes = queue.SimpleQueue(), queue.SimpleQueue()
        threading.Thread(target=self._run, daemon=True).start()

    def submit(self, fn, *args):
        self._tasks.put((contextvars.copy_context(), fn, args))

    def wait(self):
        return self._outcomes.get()

    def _run(self):
        while True:
            context, fn, args = self._tasks.get()
            try:
                self._outcomes.put((True, context.run(fn, *args)))
            except BaseException as e:  # handed to the caller, which raises it
                self._outcomes.put((False, e))
