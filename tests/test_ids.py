"""Ids and targets are checked on every rung: a negative or too-large id is an IndexError naming
it, never a row taken from the end; cross_entropy's ignore_index works as PyTorch's."""

import numpy as np
import pytest

import tinygrad_gpt.engine.functional as F
from helpers import host, on_backend, randn
from tinygrad_gpt import GPT, GPTConfig, engine
from tinygrad_gpt.engine import Tensor, gradcheck
from tinygrad_gpt.kernels import cpu, cross_entropy
from tinygrad_gpt.kernels.rungs import RUNGS


def leaf(array):
    return Tensor(engine.backend.get_xp().asarray(array), requires_grad=True)


def tiny_gpt():
    return GPT(GPTConfig(vocab_size=7, block_size=5, n_layer=1, n_head=2, n_embd=8), seed=3)


@pytest.mark.parametrize("bad", [-1, 4, -100])
def test_an_embedding_id_outside_the_table_is_an_index_error_naming_it(backend, rung, bad):
    with pytest.raises(IndexError, match=rf"^id {bad} is out of range: ids must be in \[0, 4\)$"):
        F.embedding(on_backend(np.array([[0, 2], [bad, 1]])), leaf(randn(4, 3)))


@pytest.mark.parametrize("bad", [-1, 4, -7])
def test_a_target_outside_the_classes_is_an_index_error_naming_the_first(backend, rung, bad):
    targets = on_backend(np.array([0, 1, bad, 2, 9]))  # the first bad one is named, not 9
    message = rf"^target {bad} is out of range: targets must be in \[0, 4\) or ignore_index \(-100\)$"
    with pytest.raises(IndexError, match=message):
        F.cross_entropy(leaf(randn(5, 4)), targets)


def test_the_gpt_refuses_negative_ids_and_targets(backend, rung):
    ids = np.array([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(IndexError, match="^id -1 "):
        tiny_gpt()(on_backend(np.where(ids == 5, -1, ids)))
    with pytest.raises(IndexError, match="^target -1 "):
        tiny_gpt()(on_backend(ids), on_backend(np.where(ids == 5, -1, ids)))
    with pytest.raises(IndexError, match="^target 7 "):
        tiny_gpt()(on_backend(ids), on_backend(ids + 1))


TARGETS = np.array([0, -100, 3, 3, -100, 1])


def test_ignored_targets_drop_out_of_the_mean_and_get_no_gradient(backend, rung):
    logits = randn(6, 4)
    kept = TARGETS != -100
    x = leaf(logits)
    loss = F.cross_entropy(x, on_backend(TARGETS))
    loss.backward()
    want = leaf(logits[kept])
    want_loss = F.cross_entropy(want, on_backend(TARGETS[kept]))
    want_loss.backward()
    assert loss.item() == pytest.approx(want_loss.item(), rel=1e-12)
    grad = host(x.grad)
    np.testing.assert_array_equal(grad[~kept], 0.0)
    np.testing.assert_allclose(grad[kept], host(want.grad), rtol=1e-12, atol=1e-15)


def test_another_ignore_index_and_every_target_ignored(backend, rung):
    targets = on_backend(np.array([2, 0, 3, 0]))
    x = leaf(randn(4, 4))
    loss = F.cross_entropy(x, targets, ignore_index=0)
    assert loss.item() == pytest.approx(F.cross_entropy(leaf(randn(4, 4)[[0, 2]]), on_backend(np.array([2, 3]))).item())
    x = leaf(randn(3, 4))
    with np.errstate(invalid="ignore"):
        loss = F.cross_entropy(x, on_backend(np.full(3, -100)))  # PyTorch's: NaN, and no gradient
    loss.backward()
    assert np.isnan(loss.item())
    np.testing.assert_array_equal(host(x.grad), 0.0)


def test_gradcheck_with_ignored_targets(backend, rung):
    targets = on_backend(TARGETS.reshape(2, 3))
    assert gradcheck(lambda t: F.cross_entropy(t, targets), leaf(randn(2, 3, 4)))


@pytest.mark.parametrize(
    "name", ["plain", "fast", pytest.param("cpu", marks=pytest.mark.skipif(not cpu.AVAILABLE, reason=str(cpu.MISSING)))]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_kernel_matches_plain_on_the_kept_rows(name, dtype):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((6, 4)).astype(dtype)
    kept = TARGETS != -100
    dout = np.asarray(0.7, dtype=dtype)
    k = RUNGS[name]
    loss, saved = k.cross_entropy_forward(logits, TARGETS)
    want_loss, want_lse = cross_entropy.cross_entropy_forward(logits[kept], TARGETS[kept])
    assert loss.dtype == dtype and loss == pytest.approx(want_loss, rel=1e-6)
    grad = k.cross_entropy_backward(dout, logits, TARGETS, saved)
    want = cross_entropy.cross_entropy_backward(dout, logits[kept], TARGETS[kept], want_lse)
    np.testing.assert_array_equal(grad[~kept], 0.0)
    np.testing.assert_allclose(grad[kept], want, rtol=1e-6)


def test_the_gpt_ignores_minus_100_targets_as_pytorch_does(backend, rung):
    ids = on_backend(np.array([[1, 2, 3], [4, 5, 6]]))
    targets = np.array([[2, 3, -100], [5, -100, 0]])
    model = tiny_gpt()
    logits, loss = model(ids, on_backend(targets))
    kept = targets.reshape(-1) != -100
    kept_logits = Tensor(logits.data.reshape(6, 7)[on_backend(np.flatnonzero(kept))])
    want = F.cross_entropy(kept_logits, targets.reshape(-1)[kept])
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
