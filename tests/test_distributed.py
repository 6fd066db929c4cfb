"""Training over processes with MPI: the real command under `mpiexec -n N` in subprocesses. N ranks
log the losses one process logs (to float32 rounding), one rank writes, a run resumes under any
N, and a rank that fails, is interrupted or is killed ends the whole job at once, in one line."""

import collections
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from accumulation_check import MICRO_STEPS, Counted, accumulate
from tiny_runs import (
    REPO,
    TINY_FLAGS,
    assert_one_line_error,
    clean_env,
    parent_pid,
    tiny_config,
    tinygpt,
    wait_for_checkpoint,
)
from tinygrad_gpt.model import GPT, GPTConfig
from tinygrad_gpt.parallel.mpi import LAUNCHER_VARIABLES, DistributedDataParallel, World
from tinygrad_gpt.train import train

MPIEXEC = shutil.which("mpiexec", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
needs_mpi = pytest.mark.skipif(
    MPIEXEC is None or importlib.util.find_spec("mpi4py") is None,
    reason='MPI is missing: pip install -e ".[mpi]" brings mpi4py and MPICH\'s mpiexec',
)
FLAGS = [*TINY_FLAGS, "--batch-size", 6, "--max-iters", 20, "--eval-interval", 10]
LONG_FLAGS = [*TINY_FLAGS, "--batch-size", 6, "--max-iters", 300, "--eval-interval", 5]
FAILING_RANK = REPO / "tests" / "failing_rank.py"


def pinned(threads=1):
    """Threads pinned (their count is part of the arithmetic), BLAS's to one."""
    return {"OMP_NUM_THREADS": "1", "TINYGPT_CPU_THREADS": str(threads)}


def mpiexec_command(ranks, *args):
    """`mpiexec -n RANKS python -m tinygrad_gpt ARGS`; more programs after ":" make an MPMD job."""
    return [MPIEXEC, "-n", str(ranks), sys.executable, "-m", "tinygrad_gpt", *map(str, args)]


def mpiexec(ranks, *args, more=(), threads=1, timeout=120):
    """Run a job to completion (a hang fails the test at the timeout); its CompletedProcess."""
    command = mpiexec_command(ranks, *args) + [str(a) for a in more]
    env = {**clean_env(), **pinned(threads)}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)


def log_of(out):
    return [
        {k: v for k, v in json.loads(line).items() if k != "elapsed_s"}
        for line in (out / "log.jsonl").read_text().splitlines()
    ]


def assert_same_losses(out, reference):
    """The same steps, and losses equal to float32 rounding (the ranks' sums are in another order)."""
    got, want = log_of(out), log_of(reference)
    assert [r["step"] for r in got] == [r["step"] for r in want]
    for g, w in zip(got, want):
        assert g["lr"] == w["lr"]
        assert g["train_loss"] == pytest.approx(w["train_loss"], rel=1e-5)
        assert g["val_loss"] == pytest.approx(w["val_loss"], rel=1e-5)


def weights(out):
    return safetensors.numpy.load((out / "model.safetensors").read_bytes())


def reference_run(tmp_path_factory, corpus, flags):
    """A run of one process and one thread, which the jobs must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "out"
    result = tinygpt("train", *flags, "--data", corpus, "--out-dir", out, env=pinned())
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, corpus):
    return reference_run(tmp_path_factory, corpus, FLAGS)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, corpus):
    """The uninterrupted run that the interrupted and killed jobs must end like."""
    return reference_run(tmp_path_factory, corpus, LONG_FLAGS)


@needs_mpi
@pytest.mark.parametrize("ranks, threads", [(2, 1), (3, 1), (2, 2)])
def test_ranks_log_the_same_losses_as_one_process_and_one_writes(tmp_path, corpus, one_process, ranks, threads):
    out = tmp_path / "out"
    result = mpiexec(ranks, "train", *FLAGS, "--data", corpus, "--out-dir", out, threads=threads)
    assert result.returncode == 0, result.stderr
    assert_same_losses(out, one_process)
    for name, want in weights(one_process).items():
        np.testing.assert_allclose(weights(out)[name], want, atol=1e-4, err_msg=name)
    # rank 0 alone printed, and wrote each log line once
    assert result.stdout.count("training: ") == 1 and f"{ranks} processes" in result.stdout
    assert result.stdout.count("sample after 20 steps") == 1 and result.stderr == ""
    assert len(log_of(out)) == 2


@needs_mpi
@pytest.mark.parametrize("zero", [0, 1])
def test_gradient_accumulation_over_ranks_logs_one_processes_losses(tmp_path_factory, tmp_path, corpus, zero):
    """Each micro-batch's gradients are summed over the ranks and added to the earlier ones'."""
    flags = [*FLAGS, "--gradient-accumulation-steps", 2]
    reference = reference_run(tmp_path_factory, corpus, flags)
    out = tmp_path / "out"
    result = mpiexec(2, "train", *flags, "--zero", zero, "--data", corpus, "--out-dir", out)
    assert result.returncode == 0, result.stderr
    assert_same_losses(out, reference)
    for name, want in weights(reference).items():
        np.testing.assert_allclose(weights(out)[name], want, atol=1e-4, err_msg=name)


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_zero_1_logs_the_same_losses_and_saves_the_same_checkpoint(tmp_path, corpus, one_process, ranks):
    out = tmp_path / "out"
    result = mpiexec(ranks, "train", *FLAGS, "--zero", 1, "--data", corpus, "--out-dir", out)
    assert result.returncode == 0, result.stderr
    assert_same_losses(out, one_process)
    for name in ("model.safetensors", "optimizer.safetensors"):  # one format: every moment whole
        got, want = (safetensors.numpy.load((d / name).read_bytes()) for d in (out, one_process))
        assert sorted(got) == sorted(want)
        for key, array in want.items():
            assert got[key].dtype == array.dtype
            np.testing.assert_allclose(got[key], array, atol=1e-4, err_msg=key)


@needs_mpi
def test_zero_1_holds_one_nth_of_the_moments_per_rank():
    results = [mpiexec(3, "bench", "--preset", "tiny", "--iters", 1, "--json", "--zero", zero) for zero in (0, 1)]
    assert all(result.returncode == 0 for result in results), [result.stderr for result in results]
    plain, zero = (json.loads(result.stdout.splitlines()[-1]) for result in results)
    assert zero["zero"] == 1 and zero["optimizer_mb"] == pytest.approx(plain["optimizer_mb"] / 3, rel=1e-3)


@needs_mpi
def test_a_run_resumes_under_another_number_of_ranks(tmp_path, corpus, one_process):
    out = tmp_path / "out"
    first = mpiexec(2, "train", *FLAGS, "--max-iters", 10, "--lr-decay-iters", 20, "--data", corpus, "--out-dir", out)
    assert first.returncode == 0, first.stderr
    resumed = mpiexec(3, "train", "--resume", "--max-iters", 20, "--zero", 1, "--data", corpus, "--out-dir", out)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming at step 10" in resumed.stdout
    assert_same_losses(out, one_process)
    alone = tinygpt("train", "--resume", "--max-iters", 30, "--data", corpus, "--out-dir", out, env=pinned())
    assert alone.returncode == 0, alone.stderr  # and from ZeRO-1's checkpoint back to one process


@needs_mpi
@pytest.mark.parametrize(
    "flags, code, fragment",
    [
        (["--bogus"], 2, "unrecognized arguments: --bogus"),
        (["--learning-rate", "-1"], 2, "learning_rate must be a number > 0"),
        (["--batch-size", "2"], 2, "--batch-size 2 is less than the 3 processes"),
        (["--data", "missing.txt"], 1, "cannot read data file missing.txt"),
    ],
)
def test_a_mistake_every_rank_makes_is_reported_once(tmp_path, corpus, flags, code, fragment):
    result = mpiexec(3, "train", *FLAGS, "--data", corpus, "--out-dir", tmp_path / "out", *flags)
    assert_one_line_error(result, code, "tinygpt: error:", fragment)
    assert not (tmp_path / "out").exists()


@needs_mpi
def test_missing_data_on_one_rank_ends_the_job(tmp_path, corpus):
    """Rank 0 goes on into training and waits for rank 1 in the first Allreduce: rank 1's abort ends it."""
    out = tmp_path / "out"
    rank_1 = [":", "-n", 1, sys.executable, "-m", "tinygrad_gpt", "train", *FLAGS, "--data", "missing.txt"]
    result = mpiexec(1, "train", *FLAGS, "--data", corpus, "--out-dir", out, more=[*rank_1, "--out-dir", out])
    assert_one_line_error(result, 1, "tinygpt: error: cannot read data file missing.txt")


@needs_mpi
def test_an_error_in_one_rank_mid_run_ends_the_job_and_the_checkpoint_loads(tmp_path, corpus):
    out = tmp_path / "out"
    failing = [":", "-n", 1, sys.executable, FAILING_RANK, 7, "train", *LONG_FLAGS, "--data", corpus, "--out-dir", out]
    result = mpiexec(2, "train", *LONG_FLAGS, "--data", corpus, "--out-dir", out, more=failing)
    assert_one_line_error(result, 1, "internal error: RuntimeError: a failure made at step 7")
    assert json.loads((out / "config.json").read_text())["step"] == 5
    assert tinygpt("sample", "--out-dir", out, "--max-new-tokens", 5).returncode == 0


def started_job(out, corpus, *flags):
    """A job of 2 ranks that has written its first checkpoint (so it is inside the training loop)."""
    job = subprocess.Popen(
        mpiexec_command(2, "train", *LONG_FLAGS, *flags, "--data", corpus, "--out-dir", out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**clean_env(), **pinned()},
        cwd=REPO,
    )
    return wait_for_checkpoint(job, out)


@needs_mpi
@pytest.mark.parametrize("zero", [0, 1])
def test_ctrl_c_checkpoints_once_and_ends_every_rank(tmp_path, corpus, straight, zero):
    out = tmp_path / "out"
    job = started_job(out, corpus, "--zero", zero)
    job.send_signal(signal.SIGINT)  # what Ctrl-C does: mpiexec hands it to every rank
    _, stderr = job.communicate(timeout=60)
    if job.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    step = json.loads((out / "config.json").read_text())["step"]
    ours = [line for line in stderr.splitlines() if not line.startswith("[mpiexec@")]  # Hydra's own notice
    assert job.returncode == 130 and len(ours) == 1, stderr
    assert f"interrupted at step {step};" in ours[0] and "resume with: mpiexec -n 2 tinygpt train" in ours[0]

    resumed = mpiexec(2, "train", "--resume", "--zero", zero, "--data", corpus, "--out-dir", out)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {step}" in resumed.stdout
    assert_same_losses(out, straight)


def rank_pid(launcher, rank):
    """The pid of `rank` among the processes under `launcher` (each rank has it in its environment)."""
    wanted = {f"{name}={rank}".encode() for name, _ in LAUNCHER_VARIABLES}
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and wanted & set((entry / "environ").read_bytes().split(b"\0")):
                pid = int(entry.name)
                while pid > 1:  # up the parents to the launcher
                    pid = parent_pid(pid)
                    if pid == launcher.pid:
                        return int(entry.name)
        except (OSError, ValueError):  # gone meanwhile, or not ours to read
            continue
    pytest.fail(f"no process of rank {rank} under pid {launcher.pid}")


@needs_mpi
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank's process in /proc")
def test_sigkill_of_a_rank_ends_the_job_and_the_checkpoint_loads(tmp_path, corpus, straight):
    out = tmp_path / "out"
    job = started_job(out, corpus)
    os.kill(rank_pid(job, 1), signal.SIGKILL)
    job.communicate(timeout=60)
    assert job.returncode != 0
    resumed = mpiexec(2, "train", "--resume", "--data", corpus, "--out-dir", out)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_losses(out, straight)


def test_zero_1_without_mpiexec_is_a_usage_error(tmp_path, corpus):
    result = tinygpt("train", *FLAGS, "--zero", 1, "--data", corpus, "--out-dir", tmp_path / "out")
    assert_one_line_error(result, 2, "--zero 1", "run it under mpiexec")


def test_mpiexec_without_mpi4py_is_one_line_not_independent_runs(tmp_path, corpus):
    """Where mpi4py finds no MPI library it raises RuntimeError: as if mpiexec had started us so."""
    fake = tmp_path / "fake" / "mpi4py"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "MPI.py").write_text('raise RuntimeError("cannot load MPI library")\n')
    env = {**clean_env(), "PMI_RANK": "1", "PMI_SIZE": "2", "PYTHONPATH": str(fake.parent)}
    command = [sys.executable, "-m", "tinygrad_gpt", "train", *map(str, FLAGS), "--data", corpus]
    result = subprocess.run(
        [*command, "--out-dir", tmp_path / "out"], capture_output=True, text=True, env=env, cwd=REPO, timeout=60
    )
    assert_one_line_error(result, 1, "cannot load MPI library", 'pip install -e ".[mpi]"')
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None, reason="needs mpi4py")
def test_another_mpis_mpiexec_is_refused(tmp_path, corpus):
    """Open MPI's mpiexec with mpi4py on MPICH: each process would start MPI alone, rank 0 of 1."""
    env = {**clean_env(), "OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2"}
    command = [sys.executable, "-m", "tinygrad_gpt", "train", *map(str, FLAGS), "--data", corpus]
    result = subprocess.run(
        [*command, "--out-dir", tmp_path / "out"], capture_output=True, text=True, env=env, cwd=REPO, timeout=60
    )
    assert_one_line_error(result, 1, "as rank 1 of 2", "sees rank 0 of 1")


@needs_mpi
def test_bench_times_the_job_and_its_allreduce(tmp_path):
    result = mpiexec(2, "bench", "--preset", "tiny", "--iters", 2, "--warmup", 1, "--json")
    assert result.returncode == 0, result.stderr
    numbers = json.loads(result.stdout.splitlines()[-1])
    assert numbers["processes"] == 2 and numbers["allreduce_ms"] > 0 and numbers["ms_per_iter"] > 0


class Kept:
    """The collectives of one rank of a pretend job: an all-reduce keeps a copy of what it was given."""

    def allreduce_sum(self, buffer):
        self.sent = buffer.copy()


def test_the_ranks_gradients_add_up_to_the_whole_batchs():
    """In one process: each rank's weighted share of 5 sequences, summed, is the whole batch's."""
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16), seed=3)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 11, (5, 8)), rng.integers(0, 11, (5, 8))
    _, loss = model(x, y)
    loss.backward()
    want = np.concatenate([p.grad.ravel() for p in model.parameters()] + [loss.data.reshape(1)])
    sent = []
    for rank in range(3):
        model.zero_grad()
        world = World(rank, 3, comm=object(), collectives=Kept())
        DistributedDataParallel(model, world, threads=1).step(x, y, seed=7)
        sent.append(world.collectives.sent)
    np.testing.assert_allclose(sum(sent), want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("zero", [0, 1])
def test_one_sync_per_batch_gives_the_bits_of_a_sync_per_micro_step_on_one_rank(zero):
    """In one process, a job of one rank: deferred micro-steps add into the buffer the collective
    takes, which the sync leaves ready for the next batch, in the order the per-micro-step sums
    came in; one sync a batch makes one gradient collective (and ZeRO's small one of the loss)."""
    (every, every_params), (once, once_params) = (
        accumulate(World(comm=object(), collectives=Counted()), zero, sync_every) for sync_every in (True, False)
    )
    gradients = "reduce_scatter_sum" if zero else "allreduce_sum"
    for (loss, grads, calls), (want_loss, want_grads, want_calls) in zip(once, every, strict=True):
        assert loss == want_loss
        for got, want in zip(grads, want_grads, strict=True):
            np.testing.assert_array_equal(got, want)
        assert calls == collections.Counter({gradients: 1, "allreduce_sum": 1} if zero else {gradients: 1})
        assert want_calls[gradients] == MICRO_STEPS
    for got, want in zip(once_params, every_params, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("zero", [0, 1])
def test_training_sums_the_ranks_gradients_once_per_step(tmp_path, corpus, zero):
    """The loop asks for the ranks' sum on each step's last micro-batch alone (nanoGPT's
    require_backward_grad_sync): here a job of one rank whose collectives count their calls."""

    class Comm:  # mpi4py's, for a job of one rank
        def allreduce(self, value):
            return value

        def allgather(self, value):
            return [value]

    class Collectives(Counted):
        def broadcast(self, array):
            self.calls["broadcast"] += 1

    collectives, steps = Collectives(), 3
    config = tiny_config(max_iters=steps, eval_interval=steps, gradient_accumulation_steps=4)
    train(config, tmp_path / "out", corpus, world=World(comm=Comm(), collectives=collectives), zero=zero)
    evaluations = 1  # each sums its losses over the ranks in one Allreduce
    if zero:  # a reduce-scatter of the gradients, then Allreduces of the loss and the squared norm
        assert collectives.calls["reduce_scatter_sum"] == steps
        assert collectives.calls["allreduce_sum"] == 2 * steps + evaluations
    else:  # one Allreduce of the gradients and the loss
        assert collectives.calls["allreduce_sum"] == steps + evaluations


@needs_mpi
def test_one_sync_per_batch_agrees_with_a_sync_per_micro_step_over_ranks():
    """Over 2 ranks, each way of DistributedDataParallel and ZeRO-1 (tests/accumulation_check.py)."""
    command = [MPIEXEC, "-n", "2", sys.executable, str(REPO / "tests" / "accumulation_check.py")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**clean_env(), **pinned()})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "one sync per batch agrees on 2 ranks"


def test_rows_cut_the_batch_in_near_equal_parts():
    for n, size in [(12, 2), (5, 3), (3, 3)]:
        parts = [World(rank, size).rows(n) for rank in range(size)]
        assert [i for rows, _ in parts for i in range(n)[rows]] == list(range(n))
        assert sum(share for _, share in parts) == pytest.approx(1.0)
        assert max(len(range(n)[rows]) for rows, _ in parts) - min(len(range(n)[rows]) for rows, _ in parts) <= 1


COLLECTIVES_CHECK = """
import sys
from mpi4py import MPI
from tinygrad_gpt import engine
from tinygrad_gpt.parallel.collectives import MPICollectives, NCCLCollectives

engine.set_backend(sys.argv[1])
xp, comm = engine.backend.get_xp(), MPI.COMM_WORLD
n, rank = comm.Get_size(), comm.Get_rank()
ours = NCCLCollectives(comm, rank, n) if sys.argv[1] == "cupy" else MPICollectives(comm)
ranks_sum = n * (n - 1) / 2

total = xp.arange(6, dtype=xp.float32) + rank
ours.allreduce_sum(total)
first = xp.full(4, float(rank), dtype=xp.float32)
ours.broadcast(first)
whole, part = xp.arange(3 * n, dtype=xp.float32) + rank, xp.zeros(3, dtype=xp.float32)
ours.reduce_scatter_sum(whole, part)
gathered = xp.full(2 * n, -1.0, dtype=xp.float32)
gathered[2 * rank : 2 * rank + 2] = rank
ours.all_gather(gathered)
engine.backend.synchronize()
assert (total == n * xp.arange(6) + ranks_sum).all(), total
assert (first == 0).all(), first
assert (part == n * xp.arange(3 * rank, 3 * rank + 3) + ranks_sum).all(), part
assert (gathered == xp.arange(2 * n) // 2).all(), gathered
agreed = comm.allreduce(1)  # the ranks that got here; one line from rank 0 (ranks' output may interleave)
if rank == 0:
    print(f"collectives agree on {agreed} ranks")
"""


@needs_mpi
def test_the_four_collectives_on_each_backend(backend):
    """MPI's on host arrays over 2 ranks; NCCL's on GPU arrays over the ranks this machine has
    GPUs for (1 on a lent GPU: a one-rank communicator)."""
    ranks = 2 if backend == "numpy" else min(2, _gpu_count())
    command = [MPIEXEC, "-n", str(ranks), sys.executable, "-c", COLLECTIVES_CHECK, backend]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**clean_env(), **pinned()})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"collectives agree on {ranks} ranks"


def _gpu_count():
    import cupy

    return cupy.cuda.runtime.getDeviceCount()
