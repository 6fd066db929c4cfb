"""Data parallelism over CPU cores, in worker processes or threads: the shards' summed gradients
are the whole batch's, the same bits for the same shard count every time and with either kind of
worker, and errors in a shard reach the caller."""

import gc
import os
import signal
import threading

import numpy as np
import pytest

from tinygrad_gpt import engine
from tinygrad_gpt.engine import Tensor, no_grad
from tinygrad_gpt.engine.grad_mode import is_grad_enabled
from tinygrad_gpt.engine.random import generator
from tinygrad_gpt.errors import UsageError
from tinygrad_gpt.model import GPT, GPTConfig
from tinygrad_gpt.optim import AdamW, clip_grad_norm_
from tinygrad_gpt.parallel.processes import SharedAdamW, WorkerDied, owners
from tinygrad_gpt.parallel.shards import DataParallel, _Worker, default_shards, default_workers

WORKERS = ["processes", "threads"]


def tiny_model(dropout=0.0):
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=dropout), seed=3)


def batch(size=5):
    rng = np.random.default_rng(0)
    return rng.integers(0, 11, (size, 8)), rng.integers(0, 11, (size, 8))


def loss_and_grads(model, shards, seed=7, workers="threads", parallel=None):
    for p in model.parameters():
        p.grad = None
    loss = (parallel or DataParallel(model, shards, workers)).step(*batch(), seed)
    return loss.item(), [p.grad.copy() for p in model.parameters()]


def assert_same_bits(first, second):
    assert first[0] == second[0]
    for a, b in zip(first[1], second[1], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("shards", [2, 3])
def test_shards_sum_to_the_whole_batch(shards, workers):
    """5 sequences in uneven shards: each shard's loss is weighted by its share of the tokens."""
    model = tiny_model()
    loss, grads = loss_and_grads(model, 1)
    _, whole = model(*(engine.backend.asarray(a) for a in batch()))
    assert loss == pytest.approx(whole.item(), rel=1e-6)
    sharded_loss, sharded = loss_and_grads(model, shards, workers=workers)
    assert sharded_loss == pytest.approx(loss, rel=1e-5)
    for g, want in zip(sharded, grads, strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("workers", WORKERS)
def test_the_same_shard_count_gives_the_same_bits_with_dropout(workers):
    model = tiny_model(dropout=0.2)
    first = loss_and_grads(model, 2, workers=workers)
    assert_same_bits(loss_and_grads(model, 2, workers=workers), first)
    other_seed = loss_and_grads(model, 2, seed=8, workers=workers)
    assert other_seed[0] != first[0]  # the seed reaches the shards' dropout masks


@pytest.mark.parametrize("shards", [2, 3])
def test_processes_and_threads_give_the_same_bits(shards):
    model = tiny_model(dropout=0.2)
    assert_same_bits(loss_and_grads(model, shards, workers="processes"), loss_and_grads(model, shards))


def test_worker_processes_see_the_parameters_as_they_are_at_each_step():
    """The optimizer changes the parameters in place, a checkpoint load may replace their arrays,
    and eval() turns dropout off: each step's workers work on the model as it is then."""
    model = tiny_model(dropout=0.2)
    processes = DataParallel(model, 2, "processes")
    loss_and_grads(model, 2, parallel=processes)
    params = model.parameters()
    params[0].data -= 0.5
    params[1].data = params[1].data * 2.0
    assert_same_bits(loss_and_grads(model, 2, parallel=processes), loss_and_grads(model, 2))
    model.eval()
    without_dropout = loss_and_grads(model, 2, parallel=processes)
    assert_same_bits(without_dropout, loss_and_grads(model, 2))
    model.train()
    assert loss_and_grads(model, 2, parallel=processes)[0] != without_dropout[0]


@pytest.mark.parametrize("shards", [2, 3])
def test_worker_processes_share_out_adamw_with_the_same_bits(shards):
    """Training steps (micro-batches adding up, clipping, AdamW) with the worker processes summing
    and updating their own parameters, against threads and one AdamW: the same parameters and
    moments, bit for bit; and a .grad set outside a step (a plain backward) is what they update."""
    models = [tiny_model(dropout=0.2) for _ in range(2)]
    optimizers = [AdamW(m.named_parameters(), lr=0.01) for m in models]
    parallels = [DataParallel(m, shards, w, o) for m, o, w in zip(models, optimizers, WORKERS)]
    assert isinstance(parallels[0].optimizer, SharedAdamW) and parallels[1].optimizer is optimizers[1]
    for step in range(3):
        for model, parallel in zip(models, parallels):
            for micro_step in range(2):
                parallel.step(*batch(), seed=10 * step + micro_step, scale=0.5)
            clip_grad_norm_(model.parameters(), 0.05)  # small enough to clip
            parallel.optimizer.step()
            parallel.optimizer.zero_grad()
    for model, parallel in zip(models, parallels):
        engine.manual_seed(0)
        model(*(engine.backend.asarray(a) for a in batch()))[1].backward()
        parallel.optimizer.step()
    for a, b in zip(*(m.parameters() for m in models), strict=True):
        np.testing.assert_array_equal(a.data, b.data)
    states = [p.optimizer.state_dict() for p in parallels]
    assert states[0]["step"] == states[1]["step"] == 4
    for name, moment in states[1]["tensors"].items():
        np.testing.assert_array_equal(states[0]["tensors"][name], moment)


def test_each_process_owns_a_contiguous_run_of_about_equal_size():
    assert owners([3, 3, 3, 3], 2) == [0, 0, 1, 1]
    assert owners([1] * 7, 3) == [0, 0, 0, 1, 1, 2, 2]
    assert owners([100, 1, 1], 2) == [0, 1, 1]  # an array is never split, so a big one stands alone
    sizes = [p.size for p in tiny_model().parameters()]
    runs = owners(sizes, 2)
    assert runs == sorted(runs) and set(runs) == {0, 1}
    share = sum(size for size, owner in zip(sizes, runs) if owner == 0) / sum(sizes)
    assert 0.4 < share < 0.6


@pytest.mark.parametrize("workers", WORKERS)
def test_gradients_add_to_what_is_already_there(workers):
    model = tiny_model()
    _, once = loss_and_grads(model, 2, workers=workers)
    DataParallel(model, 2, workers).step(*batch(), 7)  # no zero_grad in between: accumulates, like backward
    for p, g in zip(model.parameters(), once):
        np.testing.assert_allclose(p.grad, 2 * g, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("workers", WORKERS)
def test_an_error_in_a_worker_reaches_the_caller_and_the_next_step_still_works(workers):
    model = tiny_model()
    parallel = DataParallel(model, 2, workers)
    x, y = batch()
    bad_x = x.copy()
    bad_x[0, 0] = 99  # only the first shard (the worker's) holds a token past the vocabulary
    with pytest.raises(IndexError):
        parallel.step(bad_x, y, 7)
    assert np.isfinite(parallel.step(x, y, 7).item())


def test_a_killed_worker_process_is_one_clear_error():
    model = tiny_model()
    parallel = DataParallel(model, 2, "processes")
    parallel.step(*batch(), 7)
    (process,) = parallel._processes.processes
    os.kill(process.pid, signal.SIGKILL)
    process.join(timeout=10)  # gone before the next step sends to it: sending fails, not only reading
    for _ in range(2):  # and stays so: no step waits for an answer that cannot come
        with pytest.raises(WorkerDied, match=r"worker process ended \(exit code -9\); TINYGPT_CPU_WORKERS=threads"):
            parallel.step(*batch(), 7)


def test_worker_processes_end_with_their_data_parallel():
    parallel = DataParallel(tiny_model(), 3, "processes")
    later = DataParallel(tiny_model(), 2, "processes")  # its worker is forked with the first's pipes open
    processes = parallel._processes.processes
    assert all(p.is_alive() for p in processes)
    del parallel
    gc.collect()
    for p in processes:
        p.join(timeout=10)
        assert p.exitcode == 0  # it read the end of its pipe and returned (not killed after waiting)
    assert np.isfinite(later.step(*batch(), 7).item())


def test_worker_kind_from_the_environment(monkeypatch):
    monkeypatch.setenv("TINYGPT_CPU_WORKERS", "threads")
    assert default_workers() == "threads" and DataParallel(tiny_model(), 2).workers == "threads"
    monkeypatch.setenv("TINYGPT_CPU_WORKERS", "forks")
    with pytest.raises(UsageError, match="TINYGPT_CPU_WORKERS must be one of processes, threads"):
        default_workers()


def test_a_worker_runs_in_the_callers_grad_mode():
    worker = _Worker()
    worker.submit(is_grad_enabled)
    assert worker.wait() == (True, True)
    with no_grad():
        worker.submit(is_grad_enabled)
        assert worker.wait() == (True, False)


def test_threads_have_their_own_dropout_generators():
    engine.manual_seed(1)
    want = generator(np).random(3)
    engine.manual_seed(1)
    other = threading.Thread(target=lambda: (engine.manual_seed(2), generator(np).random(100)))
    other.start()
    other.join()
    np.testing.assert_array_equal(generator(np).random(3), want)


def test_shard_count_from_the_environment(monkeypatch):
    monkeypatch.setenv("TINYGPT_CPU_THREADS", "3")
    assert default_shards(12) == 3
    assert default_shards(2) == 2  # never more shards than sequences
    monkeypatch.setenv("TINYGPT_CPU_THREADS", "zero")
    with pytest.raises(UsageError, match="TINYGPT_CPU_THREADS"):
        default_shards(12)


def test_grad_leaves_dot_grad_alone_and_matches_backward():
    w = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    unused = Tensor(np.array([1.0]), requires_grad=True)
    (dw, dunused) = engine.grad((w * w).sum(), [w, unused])
    assert w.grad is None and dunused is None
    (w * w).sum().backward()
    np.testing.assert_array_equal(dw.numpy(), w.grad)
    with pytest.raises(ValueError, match="leaf"):
        engine.grad((w * 2.0).sum(), [w * 1.0])
