"""Shards in forked processes: DataParallel's workers when each shard has a process of its own.

A thread's Python (building the graph, walking it back, calling each kernel) holds the GIL, so
two threads take turns at it, and at the cpu preset's size that Python is a large part of a step.
Forked processes have an interpreter each, and so do not wait for one another's (docs/benchmarks.md
has the times of both).

What the processes share lives in shared memory, so that no one process copies or adds it all:
- the parameters: every process's model holds views of them, so a step copies nothing in (an
  array the parent's model was given since, by a checkpoint load say, is copied in and viewed);
- the gradients, summed as a reduce-scatter, as ZeRO does over MPI: each process owns a run of
  the parameters. After its shard's backward it writes its gradients of the others' parameters
  to shared memory, and then adds up those of its own, its shard's and the others' in shard
  order, into the shared sums that become the parameters' `.grad` (the same additions in the same
  order as one process would make, so the same bits);
- with an optimizer, AdamW's moments: each process updates its own run of the parameters
  (AdamW is elementwise: the same bits again), so the parent does not do it all alone.

Each worker is forked from the parent with the model, so it needs nothing pickled but a shard's
tokens and its result's loss. Its forward and backward are the parent's code and arithmetic.
It ignores Ctrl-C and SIGTERM (the parent handles them and ends it), and ends when the parent
closes its pipe or dies (the pipe's end is then closed by the kernel). The parent waits for an
answer `timeout` seconds at most, and gives up on a stalled worker (one that uses no CPU: stopped
by SIGSTOP, or stuck) as soon as the run has been asked to stop: a worker never hangs the run.
"""

import atexit
import contextlib
import mmap
import multiprocessing
import os
import signal
import time
import weakref
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

from tinygrad_gpt.engine.dispatch import chosen, set_kernels
from tinygrad_gpt.engine.grad_mode import is_grad_enabled, no_grad
from tinygrad_gpt.errors import TinyGPTError, TrainingInterrupted
from tinygrad_gpt.optim import AdamW

ALIGN = 64  # bytes: each array starts on a cache line
# How long a process polls its pipe before it sleeps on it, where each has a core of its own: a
# step makes three round trips, and a process woken from sleep on a pipe answers several times later
# than one that polls (docs/benchmarks.md).
SPIN_SECONDS = 0.01
# This process's ends of every live worker's pipe. A worker forked later inherits them all and
# closes them, since a copy kept open would hide from an earlier worker that its parent closed it.
_parent_ends = set()
# How often a wait on a worker looks at the clock, the stop request and the worker's CPU time: a
# worker busy with its shard uses CPU in every such slice, a stopped or stuck one none.
WAIT_SLICE_S = 1.0


class StopRequest:
    """Whether the run has been asked to stop (the training loop's Ctrl-C or SIGTERM handler sets
    it): (how, exit status), else None."""

    def __init__(self):
        self.reason = None

    def set(self, how, exit_code):
        self.reason = (how, exit_code)

    def clear(self):
        self.reason = None


INTERRUPTED = StopRequest()


class WorkerDied(TinyGPTError):
    """A shard's worker process ended in the middle of training."""


class WorkerTimeout(TinyGPTError):
    """A shard's worker process gave no answer within the step timeout."""


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


def owners(sizes, parts):
    """For each of a list of arrays of these sizes, which of `parts` owns it: contiguous runs of
    about equal total size (an array is never split)."""
    total, before = sum(sizes), 0
    result = []
    for size in sizes:
        result.append(min(parts - 1, (before + size // 2) * parts // max(total, 1)))
        before += size
    return result


def add_up(out, fresh, grads):
    """out = grads[0] + grads[1] + ... where fresh, else out += each, in order; the arithmetic of
    Tensor.accumulate_grad applied to each in turn."""
    if fresh and len(grads) >= 2:
        np.add(grads[0], grads[1], out=out)
        grads = grads[2:]
    elif fresh:
        out[...] = grads[0]
        grads = grads[1:]
    for g in grads:
        out += g


class ShardProcesses:
    """`count` forked workers for `model`'s shards, and this process the last one. step(tasks) runs
    `shard(*task)` for task i in worker i and the last task here, adds the shards' gradients into
    the parameters' `.grad` as DataParallel does, and returns the shards' losses. shard(*task) must
    return (loss array, [gradient array or None per parameter]). With `optimizer` (an AdamW of the
    model's parameters), `.optimizer` is a SharedAdamW of it, whose steps call update(): every
    process updates its own parameters.

    A parameter's .grad is then a view of the shared sums: valid until the next step that finds it
    zeroed (set to None) overwrites it, as it would be if kept."""

    def __init__(self, model, count, shard, optimizer=None, timeout=None):
        self.model, self.shard, self.timeout = model, shard, timeout
        self.params = model.parameters()
        self.shared_params = SharedArrays([p.data for p in self.params])
        self._share_parameters()
        self.owner = owners([p.size for p in self.params], count + 1)  # process count: the parent
        self.sums = SharedArrays([p.data for p in self.params]).arrays  # what each .grad becomes
        self.outboxes = []  # per shard: its gradients of the parameters other processes own
        for me in range(count + 1):
            others = [k for k, owner in enumerate(self.owner) if owner != me]
            arrays = SharedArrays([self.params[k].data for k in others]).arrays
            self.outboxes.append(dict(zip(others, arrays)))
        self.optimizer = None if optimizer is None else SharedAdamW(optimizer, self)
        self.spin = SPIN_SECONDS if count + 1 <= len(os.sched_getaffinity(0)) else 0.0
        context = multiprocessing.get_context("fork")
        pipes = [context.Pipe() for _ in range(count)]
        self.conns = [parent for parent, _ in pipes]
        _parent_ends.update(self.conns)
        self.processes = []
        for me, (_, child) in enumerate(pipes):
            process = context.Process(target=_serve, args=(child, self, me), daemon=True)
            process.start()
            child.close()
            self.processes.append(process)
        self._unanswered = [0] * count  # messages whose answer was never read (the parent was interrupted)
        # at exit too, and before multiprocessing's own exit handler (atexit runs the last registered
        # first), which would SIGTERM the workers, which ignore it, and wait for them for ever
        atexit.register(weakref.finalize(self, _stop, self.conns, self.processes))

    def step(self, tasks):
        self._share_parameters()
        me = len(self.conns)
        state = (is_grad_enabled(), np.geterr(), chosen(), self.model.training)

        def mine():  # this process's shard, its gradients for others posted while the workers finish
            loss, grads = self.shard(*tasks[-1])
            self._post(me, grads)
            return loss, grads

        answers = self._ask([("shard", task, state) for task in tasks[:-1]], mine)
        (loss, grads), shard_results = answers[-1], answers[:-1]
        present = [flags for _, flags in shard_results] + [[g is not None for g in grads]]
        fresh = [not self._adopt_grad(k) for k in range(len(self.params))]
        self._ask([("sum", present, fresh)] * me, lambda: self._sum(me, grads, present, fresh))
        for k, p in enumerate(self.params):
            if any(flags[k] for flags in present):
                p.grad = self.sums[k]
        return [loss for loss, _ in shard_results] + [loss]

    def update(self):
        """The optimizer's update at its lr and step count, each process updating the parameters it owns."""
        self._share_parameters()
        has_grad = [self._adopt_grad(k) for k in range(len(self.params))]
        message = ("update", self.optimizer.lr, self.optimizer.step_count, has_grad)
        self._ask([message] * len(self.conns), lambda: self._update(len(self.conns), has_grad))

    def _share_parameters(self):
        """Make every parameter's array a view of the shared one (a copy in where it was replaced)."""
        for p, shared in zip(self.params, self.shared_params.arrays):
            if p.data is not shared:
                shared[...] = p.data
                p.data = shared

    def _adopt_grad(self, k):
        """Whether parameter k has a .grad, made the view of its shared sum (a .grad kept
        elsewhere, by a plain backward say, is copied in first)."""
        p = self.params[k]
        if p.grad is not None and p.grad is not self.sums[k]:
            self.sums[k][...] = p.grad
            p.grad = self.sums[k]
        return p.grad is not None

    def _post(self, me, grads):
        for k, out in self.outboxes[me].items():
            if grads[k] is not None:
                out[...] = grads[k]

    def _sum(self, me, grads, present, fresh):
        for k, owner in enumerate(self.owner):
            if owner == me:
                shards = [grads[k] if s == me else self.outboxes[s][k] for s, flags in enumerate(present) if flags[k]]
                if shards:
                    add_up(self.sums[k], fresh[k], shards)

    def _update(self, me, has_grad):
        mine = [k for k, owner in enumerate(self.owner) if owner == me]
        for k in mine:  # a worker's .grad is set here only: the parent's say which parameters have one
            self.params[k].grad = self.sums[k] if has_grad[k] else None
        mine = {id(self.params[k]) for k in mine}
        self.optimizer.update([(name, p) for name, p in self.optimizer.named_parameters if id(p) in mine])

    def _ask(self, messages, mine):
        """Send worker i messages[i], run mine() here meanwhile, and return [each worker's answer,
        mine()'s result]. Every worker is waited for, so none is busy when this returns; mine()'s
        error, else the first worker's, is raised."""
        for i, message in enumerate(messages):
            self._drain(i)
            try:
                self.conns[i].send(message)
            except OSError:  # BrokenPipeError: the worker is gone (and the CLI would take it for stdout's)
                self._died(i)
            self._unanswered[i] += 1
        try:
            last = mine()
        finally:
            outcomes = [self._receive(i) for i in range(len(messages))]
        for ok, value in outcomes:
            if not ok:
                raise value
        return [value for _, value in outcomes] + [last]

    def _drain(self, i):
        while self._unanswered[i]:
            self._receive(i)

    def _receive(self, i):
        try:
            self._await(i)
            outcome = self.conns[i].recv()
        except (EOFError, OSError):
            self._died(i)
        self._unanswered[i] -= 1
        return outcome

    def _await(self, i):
        """Until worker i's answer is there: spinning first, then in slices, ending the run where
        the worker takes longer than the timeout, or has stalled once the run was asked to stop."""
        conn, pid = self.conns[i], self.processes[i].pid
        deadline = time.monotonic() + (self.timeout if self.timeout is not None else float("inf"))
        if _poll(conn, self.spin):
            return
        progress = None
        while not conn.poll(WAIT_SLICE_S):
            now = _cpu_progress(pid)
            stalled, progress = now is not None and now == progress, now
            if INTERRUPTED.reason and stalled:
                how, code = INTERRUPTED.reason
                self.processes[i].kill()
                raise TrainingInterrupted(
                    f"{how} while worker process {pid} had stalled (stopped, or stuck: no CPU time) in the middle "
                    "of a step; the last checkpoint is kept as it was",
                    code,
                )
            if time.monotonic() > deadline:
                self.processes[i].kill()
                raise WorkerTimeout(
                    f"worker process {pid} gave no answer within {self.timeout:g} s (--step-timeout); stopped; "
                    "the last checkpoint is kept as it was"
                )

    def _died(self, i):
        self.processes[i].join(timeout=1)
        raise WorkerDied(
            f"a data-parallel worker process ended (exit code {self.processes[i].exitcode}); "
            "TINYGPT_CPU_WORKERS=threads runs the shards as threads instead"
        ) from None


class SharedAdamW(AdamW):
    """`optimizer`'s AdamW (its parameters, settings, moments and step count) with its moments in
    the shared memory of `processes`, a ShardProcesses of the same model, whose processes share
    out each step: each updates the parameters whose gradients it summed."""

    def __init__(self, optimizer, processes):
        betas = (optimizer.beta1, optimizer.beta2)
        super().__init__(optimizer.named_parameters, optimizer.lr, betas, optimizer.eps, optimizer.weight_decay)
        self.step_count, self.processes = optimizer.step_count, processes
        for kind in ("exp_avg", "exp_avg_sq"):
            moments = getattr(optimizer, kind)
            shared = SharedArrays(list(moments.values())).arrays
            for a, b in zip(shared, moments.values()):
                a[...] = b
            setattr(self, kind, dict(zip(moments, shared)))

    def step(self):
        self.step_count += 1
        self.processes.update()


def _serve(conn, processes, me):
    """Worker `me`'s life: answer the parent's messages (run a shard, sum its gradients, update its
    parameters) until the parent's end of the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # sent to the whole process group (systemd, a scheduler)
    ThreadpoolController().limit(limits=1, user_api="blas")  # for good: one core per shard
    for parent_end in _parent_ends:  # inherited; kept open they would hide the parent's exit
        parent_end.close()
    model, grads = processes.model, None
    while True:
        try:
            kind, *message = _poll_then_receive(conn, processes.spin)
        except (EOFError, OSError):
            return
        try:
            if kind == "shard":
                task, (grad_enabled, errors, kernels, training) = message
                set_kernels(kernels)
                model.train(training)
                with contextlib.nullcontext() if grad_enabled else no_grad(), np.errstate(**errors):
                    loss, grads = processes.shard(*task)
                processes._post(me, grads)
                answer = (loss, [g is not None for g in grads])
            elif kind == "sum":
                processes._sum(me, grads, *message)
                answer = grads = None
            else:  # "update"
                processes.optimizer.lr, processes.optimizer.step_count, has_grad = message
                processes._update(me, has_grad)
                answer = None
            conn.send((True, answer))
        except BaseException as e:  # handed to the parent, which raises it
            try:
                conn.send((False, e))
            except Exception:  # an exception that does not pickle
                conn.send((False, RuntimeError(f"{type(e).__name__}: {e}")))


def _poll_then_receive(conn, seconds):
    _poll(conn, seconds)
    return conn.recv()


def _poll(conn, seconds):
    """Whether conn has something to read, polled without sleeping for `seconds`."""
    deadline = time.perf_counter() + seconds
    while not conn.poll():
        if time.perf_counter() >= deadline:
            return False
    return True


def _cpu_progress(pid):
    """Process pid's state letter and the CPU time it has used (Linux's /proc/PID/stat), or None
    where that cannot be read; a running process ("R") counts as progressing."""
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "R" else (fields[0], int(fields[11]) + int(fields[12]))


def _stop(conns, processes):
    for conn in conns:
        conn.close()  # the worker reads the end of its pipe and returns
        _parent_ends.discard(conn)
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
