"""Data parallelism over CPU threads: the shards' summed gradients are the whole batch's, the
same for the same shard count every time, and errors in a shard reach the caller."""

import threading

import numpy as np
import pytest

import engine
from engine import Tensor, no_grad
from engine.grad_mode import is_grad_enabled
from engine.random import generator
from tinygrad_gpt.errors import UsageError
from tinygrad_gpt.model import GPT, GPTConfig
from tinygrad_gpt.parallel import DataParallel, _Worker, default_shards


def tiny_model(dropout=0.0):
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=dropout), seed=3)


def batch(size=5):
    rng = np.random.default_rng(0)
    return rng.integers(0, 11, (size, 8)), rng.integers(0, 11, (size, 8))


def loss_and_grads(model, shards, seed=7):
    for p in model.parameters():
        p.grad = None
    loss = DataParallel(model, shards).step(*batch(), seed)
    return loss.item(), [p.grad.copy() for p in model.parameters()]


@pytest.mark.parametrize("shards", [2, 3])
def test_shards_sum_to_the_whole_batch(shards):
    """5 sequences in uneven shards: each shard's loss is weighted by its share of the tokens."""
    model = tiny_model()
    loss, grads = loss_and_grads(model, 1)
    _, whole = model(*(engine.backend.asarray(a) for a in batch()))
    assert loss == pytest.approx(whole.item(), rel=1e-6)
    sharded_loss, sharded = loss_and_grads(model, shards)
    assert sharded_loss == pytest.approx(loss, rel=1e-5)
    for g, want in zip(sharded, grads, strict=True):
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-6)


def test_the_same_shard_count_gives_the_same_bits_with_dropout():
    model = tiny_model(dropout=0.2)
    first = loss_and_grads(model, 2)
    again = loss_and_grads(model, 2)
    assert first[0] == again[0]
    for a, b in zip(first[1], again[1]):
        np.testing.assert_array_equal(a, b)
    other_seed = loss_and_grads(model, 2, seed=8)
    assert other_seed[0] != first[0]  # the seed reaches the shards' dropout masks


def test_gradients_add_to_what_is_already_there():
    model = tiny_model()
    _, once = loss_and_grads(model, 2)
    DataParallel(model, 2).step(*batch(), 7)  # no zero_grad in between: accumulates, like backward
    for p, g in zip(model.parameters(), once):
        np.testing.assert_allclose(p.grad, 2 * g, rtol=1e-5, atol=1e-7)


def test_an_error_in_a_worker_reaches_the_caller_and_the_next_step_still_works():
    model = tiny_model()
    parallel = DataParallel(model, 2)
    x, y = batch()
    bad_x = x.copy()
    bad_x[0, 0] = 99  # only the first shard (the worker's) holds a token past the vocabulary
    with pytest.raises(IndexError):
        parallel.step(bad_x, y, 7)
    assert np.isfinite(parallel.step(x, y, 7).item())


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
