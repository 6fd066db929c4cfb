"""Data parallelism over processes, on one machine or many: MPI (mpi4py), and NCCL on GPUs.

`mpiexec -n N tinygpt train` starts N copies of the command, the ranks. Every rank draws the same
batch of step s (from (seed, s), as one process does), takes its own rows of it through forward
and backward (over threads too: shards.py), and one Allreduce sums the ranks' gradients, each
weighted by its rows' share of the batch: every rank then holds the whole batch's gradient and
takes the same AdamW step, so the parameters, equal at the start (rank 0's are broadcast), stay
equal. With dropout 0 this is one process's step but for the order of the float32 sums. Under
gradient accumulation each rank adds its micro-batches' gradients up alone, and the one Allreduce
comes with the last micro-batch (nanoGPT's require_backward_grad_sync): the sums then run over
micro-batches first and ranks second, where syncing every micro-batch ran them the other way.

Rank 0 speaks for the job (stdout, the log, the checkpoints); the others print only an error. A
rank that stops must not leave the others waiting in a collective for ever: end_job prints its one
line and ends every rank (MPI_Abort). Nor must a rank that stops answering (SIGSTOP, a hang)
leave the others spinning in a collective for ever: with a World's `timeout` set, a watchdog
thread ends the job that way once one of its collectives has waited that long.
"""

import contextlib
import os
import select
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field

from tinygrad_gpt.engine import Tensor, backend
from tinygrad_gpt.errors import DistributedError
from tinygrad_gpt.kernels.array_module import xp_of
from tinygrad_gpt.parallel.collectives import MPICollectives, NCCLCollectives
from tinygrad_gpt.parallel.shards import DataParallel, share_cores

# (rank, size) that MPI launchers set for each process: MPICH's Hydra (and Intel MPI's), Open MPI's,
# PMIx's (srun --mpi=pmix; it gives no size)
LAUNCHER_VARIABLES = (("PMI_RANK", "PMI_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMIX_RANK", None))
MPI_HINT = 'install it with: pip install -e ".[mpi]" (mpi4py and MPICH; on a cluster, mpi4py built on its MPI)'
# How long a rank other than 0 waits before it reports an error: one that every rank meets (a bad
# value, a missing file) is then reported once, by rank 0, whose MPI_Abort ends the others first.
REPORT_GRACE_S = 2.0
# How long a rank waits between printing its line and MPI_Abort: the line travels through Hydra's
# proxy, and an abort that overtakes it loses it (seen once in a loaded CI run).
DRAIN_S = 0.5
# How often the watchdog looks at its wait; and how long a wait must have lasted, at the least, before a
# Ctrl-C or SIGTERM that came during it ends the job from the watchdog (a healthy wait ends sooner).
WATCH_S = 0.25
SIGNALLED_WAIT_S = 5.0


def launched_as():
    """(rank, size) as an MPI launcher (mpiexec) put them in this process's environment (size None
    where it does not say), or None where no launcher started the process."""
    for rank, size in LAUNCHER_VARIABLES:
        if os.environ.get(rank, "").isdigit():
            return int(os.environ[rank]), int(os.environ[size]) if os.environ.get(size or "", "").isdigit() else None
    return None


@dataclass
class World:
    """The processes training one model; World() is a single process, init() gives MPI's."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # this rank's place among the ranks on its machine
    local_size: int = 1  # ranks on this machine, sharing its cores (or one GPU each)
    comm: object = None  # the mpi4py communicator, for control; None in a single process
    collectives: object = None  # MPICollectives or NCCLCollectives, for the arrays
    timeout: float | None = None  # seconds a collective may wait on the other ranks (None: no limit)
    _watchdog: object = field(default=None, repr=False, compare=False)

    @property
    def distributed(self):
        return self.comm is not None

    def _waiting(self, what):
        """Around a collective: past `timeout` seconds in it, the watchdog ends the job."""
        if not self.distributed or self.timeout is None:
            return contextlib.nullcontext()
        if self._watchdog is None:
            self._watchdog = _Watchdog(self.rank)
        return self._watchdog.waiting(self.timeout, what)

    def rows(self, n):
        """This rank's rows of a batch of n (cut in `size` near-equal parts), and their share of n."""
        start, stop = n * self.rank // self.size, n * (self.rank + 1) // self.size
        return slice(start, stop), (stop - start) / n

    def allreduce_sum(self, buffer):
        """The sum over ranks of every rank's buffer, in place; the buffer."""
        if self.collectives is not None:
            with self._waiting("a sum over the ranks"):
                self.collectives.allreduce_sum(buffer)
        return buffer

    def reduce_scatter_sum(self, buffer, part):
        """The sum over ranks of buffer (`size` parts of len(part)), this rank's part into `part`."""
        with self._waiting("a sum over the ranks"):
            self.collectives.reduce_scatter_sum(buffer, part)

    def all_gather(self, buffer):
        """Every rank's part of buffer (its `rank`-th of `size`) into every rank's, in place."""
        with self._waiting("a gather from the ranks"):
            self.collectives.all_gather(buffer)

    def any(self, flag):
        """Whether `flag` is true on any rank: every rank calls this and gets the same answer."""
        if self.comm is None:
            return bool(flag)
        with self._waiting("the end of a step"):
            return self.comm.allreduce(int(bool(flag))) > 0

    def check_same(self, digests):
        """End the run unless every rank's digests (what -> hex digest) are rank 0's: a rank with
        other data would train apart without a word, one with another vocabulary would fail deep in
        a collective. One small allgather; the error names the first rank that differs, and what."""
        if self.comm is None:
            return
        everyone = self.comm.allgather(digests)
        for rank, theirs in enumerate(everyone):
            if differ := [what for what, digest in everyone[0].items() if theirs.get(what) != digest]:
                raise DistributedError(
                    f"rank {rank}'s {' and '.join(differ)} differ from rank 0's: every rank must train on the same"
                )

    def broadcast_parameters(self, params):
        """Rank 0's values into every rank's parameters (the ranks must start equal)."""
        if self.collectives is not None:
            with self._waiting("the broadcast of rank 0's parameters"):
                for p in params:
                    self.collectives.broadcast(p.data)

    def command(self, *args):
        """The command line that runs `tinygpt ARGS` on this many processes."""
        launch = ["mpiexec", "-n", str(self.size)] if self.distributed else []
        return [*launch, "tinygpt", *args]


_world = World()


class _Watchdog:
    """A thread that ends the job (end_job, so MPI_Abort) when a wait armed by waiting() lasts
    past its deadline. mpi4py lets go of the GIL in a blocking call, so the thread runs while the
    main one waits in MPI; MPI_Abort from it is allowed (mpi4py asks MPI for MPI_THREAD_MULTIPLE).

    It also stands in for Ctrl-C and SIGTERM during such a wait: Python runs a signal's handler
    only between bytecodes of the main thread, never inside MPI's C code, so a rank waiting on one
    that has stopped would not hear of it until the deadline. The signal's number reaches this
    thread through signal.set_wakeup_fd; if the wait goes on well past what the waits so far took
    (a healthy one ends, and the handler then stops the run at the end of its step, checkpoint
    saved), the job ends as the signal asked, with no checkpoint."""

    def __init__(self, rank):
        self.rank, self._changed, self._armed, self._longest = rank, threading.Condition(), None, 0.0
        self._signals = _wakeup_pipe()
        threading.Thread(target=self._watch, daemon=True, name="tinygpt-watchdog").start()

    @contextlib.contextmanager
    def waiting(self, timeout, what):
        start = time.monotonic()
        with self._changed:
            self._armed = (start + timeout, timeout, what, start)
        try:
            yield
        finally:
            with self._changed:
                self._armed = None
                self._longest = max(self._longest, time.monotonic() - start)

    def _watch(self):
        heard = None  # (the wait a signal came in, its number)
        while True:
            number = _next_signal(self._signals, WATCH_S)
            with self._changed:
                armed, longest = self._armed, self._longest
            if armed is None or (heard is not None and heard[0] is not armed):
                heard = None  # a wait that ended: the handler has the signal
            elif number is not None and heard is None:
                heard = (armed, number)
            if armed is None:
                continue
            deadline, timeout, what, start = armed
            now = time.monotonic()
            if now >= deadline:
                end_job(
                    1,
                    f"tinygpt: error: rank {self.rank} waited {timeout:g} s (--step-timeout) for the other ranks "
                    f"in {what}: a rank has stopped or hangs; ended the job (the last checkpoint is kept as it was)",
                )
            if heard is not None and now - start > max(2 * longest, SIGNALLED_WAIT_S):
                end_job(
                    128 + heard[1],
                    f"tinygpt: {signal.Signals(heard[1]).name} while rank {self.rank} waited for the other ranks in "
                    f"{what} ({now - start:.0f} s): a rank has stopped or hangs; ended the job (the last checkpoint "
                    "is kept as it was)",
                )


def _wakeup_pipe():
    """The read end of a pipe that the signals Python handles write their numbers to (from the main
    thread only, where set_wakeup_fd may be called; elsewhere None)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    read, write = os.pipe()
    os.set_blocking(write, False)
    signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    return read


def _next_signal(fd, seconds):
    """The number of a signal written to `fd` within `seconds`, or None (and a sleep without one)."""
    if fd is None:
        time.sleep(seconds)
        return None
    if not select.select([fd], [], [], seconds)[0]:
        return None
    numbers = os.read(fd, 64)
    return numbers[-1] if numbers else None


def start():
    """This process's World: under an MPI launcher, MPI's (started on the first call), else a
    single process; without its collectives yet (init() adds them). Called first thing, so that an
    error on any rank from then on ends the whole job (end_job): a rank that fails before MPI starts
    leaves the others waiting in MPI's start for ever. Ranks other than 0 write nothing to stdout
    from here on and ignore Ctrl-C (mpiexec hands it to every rank; rank 0's counts: World.any)."""
    global _world
    launched = launched_as()
    if _world.distributed or launched is None:
        return _world
    try:
        with warnings.catch_warnings():  # mpi4py warns of another MPI's mpiexec: checked below
            warnings.simplefilter("ignore", RuntimeWarning)
            from mpi4py import MPI
    except (ImportError, RuntimeError) as e:  # RuntimeError: mpi4py is there, an MPI library is not
        raise DistributedError(f"started by mpiexec, but mpi4py cannot start MPI ({e}); {MPI_HINT}") from None
    comm = MPI.COMM_WORLD
    if launched not in ((comm.Get_rank(), comm.Get_size()), (comm.Get_rank(), None)):  # each rank would train alone
        library = " ".join(MPI.Get_library_version().split()[:3])  # e.g. "MPICH Version: 4.2.0"
        raise DistributedError(
            f"mpiexec started this process as rank {launched[0]} of {launched[1]}, but the MPI that mpi4py "
            f"loaded ({library}) sees rank {comm.Get_rank()} of {comm.Get_size()}: use that MPI's mpiexec "
            f"(the mpi extra puts MPICH's beside python)"
        )
    machine = comm.Split_type(MPI.COMM_TYPE_SHARED)  # the ranks on this machine
    _world = World(comm.Get_rank(), comm.Get_size(), machine.Get_rank(), machine.Get_size(), comm)
    if _world.rank > 0:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # whoever holds sys.stdout
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    share_cores(machine.Get_size())
    return _world


def init():
    """start()'s World with the collectives for the active backend's arrays (NCCL on cupy picks
    this rank's GPU, so call it before making any array)."""
    world = start()
    if world.distributed and world.collectives is None:
        if backend.name() == "cupy":
            world.collectives = NCCLCollectives(world.comm, world.local_rank, world.local_size)
        else:
            world.collectives = MPICollectives(world.comm)
    return world


def end_job(code, report=None):
    """Print `report` (one line) on stderr and return `code`; under MPI, end every rank of the job
    with `code` instead: a rank that merely returned would leave the others waiting for it."""
    if _world.distributed and _world.rank > 0:
        time.sleep(REPORT_GRACE_S)
    if report is not None:
        print(report, file=sys.stderr, flush=True)
    if _world.distributed:
        if report is not None:
            time.sleep(DRAIN_S)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())  # MPICH would repeat it in its words
        _world.comm.Abort(code)
    return code


class DistributedDataParallel:
    """step(x, y, seed, scale=1, sync=True): DataParallel.step for all the ranks of `world` together.
    x, y is the whole batch, the same on every rank; this rank takes its rows through forward and
    backward over `threads` threads, weighted by their share of the batch. With sync, one Allreduce
    then sums the ranks' gradients and losses: every parameter's `.grad` is the whole batch's
    gradient, a view into the one flat buffer that was all-reduced, until zero_grad (or, where it
    had a .grad, that plus the view); the summed loss is returned. Without sync (a micro-step of
    gradient accumulation that is not the last) this rank's gradients and loss are only added up
    in that buffer, the parameters' .grad are None, and a 0-d zero is returned: the next step with
    sync sums them all and returns their loss, so the returned losses of a batch's micro-steps still
    add up to its loss. `length`: that buffer's, if not the gradients' and the loss's."""

    WORKERS = "threads"  # what runs a rank's shards: a process forked after MPI_Init is beyond MPI's guarantees

    def __init__(self, model, world, threads, length=None):
        self.world, self.local = world, DataParallel(model, threads, workers=self.WORKERS)
        self.params = model.parameters()
        data, count = self.params[0].data, sum(p.size for p in self.params)
        self.flat = xp_of(data).zeros(length or count + 1, data.dtype)  # the gradients, then the loss
        self.grads, start = [], 0
        for p in self.params:
            self.grads.append(self.flat[start : start + p.size].reshape(p.shape))
            start += p.size
        self.pending = False  # whether the buffer holds micro-steps' gradients not yet summed over the ranks

    def step(self, x, y, seed, scale=1.0, sync=True):
        if not self.pending:
            # the gradients of this step's micro-batches up to the last sync, which may be views of
            # the buffer reused below: copied, and added to once the new ones are summed
            self.earlier = [None if p.grad is None else p.grad.copy() for p in self.params]
        self.forward_backward(x, y, seed, scale, self.flat[-1:])
        if not sync:
            return self.no_loss_yet()
        self.world.allreduce_sum(self.flat)
        self.pending = False
        for p, grad, before in zip(self.params, self.grads, self.earlier):
            p.grad = grad if before is None else before + grad
        return Tensor._from_array(self.flat[-1].copy())

    def forward_backward(self, x, y, seed, scale, loss):
        """This rank's rows of x, y through forward and backward: its gradients, weighted by the
        rows' share of the batch times `scale`, into self.grads, and the loss so weighted into
        loss[0], each added to what the micro-steps since the last sync left there. The
        parameters' .grad are None after it."""
        rows, share = self.world.rows(len(x))
        seed = seed * self.world.size + self.world.rank  # every rank its own dropout masks
        for p in self.params:
            p.grad = None  # so that what is collected below is this batch's alone
        weighted = self.local.step(x[rows], y[rows], seed, scale=share * scale).data
        for p, grad in zip(self.params, self.grads):
            if not self.pending:
                grad[...] = 0 if p.grad is None else p.grad
            elif p.grad is not None:
                grad += p.grad
            p.grad = None
        loss[0] = loss[0] + weighted if self.pending else weighted
        self.pending = True

    def no_loss_yet(self):
        """What step returns without sync: a 0-d zero (the loss comes with the sync)."""
        return Tensor._from_array(xp_of(self.flat).zeros((), self.flat.dtype))
