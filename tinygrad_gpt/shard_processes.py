"""Shards in forked processes: DataParallel's workers when each shard has a process of its own.

A thread's Python (building the graph, walking it back, calling each kernel) holds the GIL, so
two threads take turns at it: with the cpu preset's Python alone (its model on 2 x 2 tokens), one
shard took 15 ms a step and two threads 25 ms. In forked processes, which have an interpreter
each, the whole cpu preset's step took 0.86x the time of threads (docs/benchmarks.md). What a
process costs instead is two copies per step through shared memory: the parameters in (the
parent writes them once, every worker's model reads them in place) and each worker's gradients
out (3 MB each for the cpu preset, about 0.3 ms).

Each worker is forked from the parent with the model, so it needs nothing pickled but a shard's
tokens and its result's loss. Its parameters are views of the shared buffer; its forward and
backward are the parent's code and arithmetic, so the gradients have the bits a thread's would.
It ignores Ctrl-C (the parent handles it and ends it), and ends when the parent closes its pipe
or dies (the pipe's end is then closed by the kernel).
"""

import contextlib
import mmap
import multiprocessing
import signal
import weakref

import numpy as np
from threadpoolctl import ThreadpoolController

from engine.dispatch import chosen, set_kernels
from engine.grad_mode import is_grad_enabled, no_grad
from tinygrad_gpt.errors import TinyGPTError

ALIGN = 64  # bytes: each array starts on a cache line
# This process's ends of every live worker's pipe. A worker forked later inherits them all and
# closes them, since a copy kept open would hide from an earlier worker that its parent closed it.
_parent_ends = set()


class WorkerDied(TinyGPTError):
    """A shard's worker process ended in the middle of training."""


class SharedArrays:
    """Arrays shaped like `like`, laid end to end in one block of memory that forked children share."""

    def __init__(self, like):
        offsets, end = [], 0
        for a in like:
            offsets.append(end)
            end += -(-a.nbytes // ALIGN) * ALIGN
        self._memory = mmap.mmap(-1, max(end, 1))  # anonymous and shared: children see the parent's writes
        self.arrays = [
            np.frombuffer(self._memory, a.dtype, a.size, offset).reshape(a.shape) for a, offset in zip(like, offsets)
        ]


class ShardProcesses:
    """`count` forked workers for `model`'s shards. run(tasks) sends each worker one task, runs
    `shard(*task)` here on the last, and returns [(loss, gradients)] in task order; a worker's
    gradients are views of its shared buffer, valid until the next run. shard(*task) must return
    (loss array, [gradient array or None per parameter])."""

    def __init__(self, model, count, shard):
        self.model, self.params, self.shard = model, model.parameters(), shard
        self.shared_params = SharedArrays([p.data for p in self.params])
        self.shared_grads = [SharedArrays([p.data for p in self.params]) for _ in range(count)]
        context = multiprocessing.get_context("fork")
        pipes = [context.Pipe() for _ in range(count)]
        self.conns = [parent for parent, _ in pipes]
        _parent_ends.update(self.conns)
        self.processes = []
        for (_, child), grads in zip(pipes, self.shared_grads):
            process = context.Process(
                target=_serve,
                args=(child, shard, model, self.shared_params, grads),
                daemon=True,
            )
            process.start()
            child.close()
            self.processes.append(process)
        self._unanswered = [0] * count  # tasks whose result was never read (the parent was interrupted)
        weakref.finalize(self, _stop, self.conns, self.processes)

    def run(self, tasks):
        for mine, shared in zip(self.params, self.shared_params.arrays):
            shared[...] = mine.data
        state = (is_grad_enabled(), np.geterr(), chosen(), self.model.training)
        for i, task in enumerate(tasks[:-1]):
            self._drain(i)
            try:
                self.conns[i].send((task, state))
            except OSError:  # BrokenPipeError: the worker is gone (and the CLI would take it for stdout's)
                self._died(i)
            self._unanswered[i] += 1
        try:
            last = self.shard(*tasks[-1])
        finally:  # every worker is waited for, so none is still busy when this returns
            outcomes = [self._receive(i) for i in range(len(self.conns))]
        results = []
        for (ok, value), grads in zip(outcomes, self.shared_grads):
            if not ok:
                raise value
            loss, present = value
            results.append((loss, [g if has else None for g, has in zip(grads.arrays, present)]))
        return results + [last]

    def _drain(self, i):
        while self._unanswered[i]:
            self._receive(i)

    def _receive(self, i):
        try:
            outcome = self.conns[i].recv()
        except (EOFError, OSError):
            self._died(i)
        self._unanswered[i] -= 1
        return outcome

    def _died(self, i):
        self.processes[i].join(timeout=1)
        raise WorkerDied(
            f"a data-parallel worker process ended (exit code {self.processes[i].exitcode}); "
            "TINYGPT_CPU_WORKERS=threads runs the shards as threads instead"
        ) from None


def _serve(conn, shard, model, shared_params, shared_grads):
    """A worker's life: take a task, run the shard on the shared parameters, hand back the loss and
    which gradients it wrote; until the parent's end of the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ThreadpoolController().limit(limits=1, user_api="blas")  # for good: one core per shard
    for parent_end in _parent_ends:  # inherited; kept open they would hide the parent's exit
        parent_end.close()
    for p, shared in zip(model.parameters(), shared_params.arrays):
        p.data = shared
    while True:
        try:
            task, (grad_enabled, errors, kernels, training) = conn.recv()
        except (EOFError, OSError):
            return
        try:
            set_kernels(kernels)
            model.train(training)
            with contextlib.nullcontext() if grad_enabled else no_grad(), np.errstate(**errors):
                loss, grads = shard(*task)
            for g, out in zip(grads, shared_grads.arrays):
                if g is not None:
                    out[...] = g
            conn.send((True, (loss, [g is not None for g in grads])))
        except BaseException as e:  # handed to the parent, which raises it
            try:
                conn.send((False, e))
            except Exception:  # an exception that does not pickle
                conn.send((False, RuntimeError(f"{type(e).__name__}: {e}")))


def _stop(conns, processes):
    for conn in conns:
        conn.close()  # the worker reads the end of its pipe and returns
        _parent_ends.discard(conn)
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
