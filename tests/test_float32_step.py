"""A float32 training step stays float32: no op, gradient or optimizer state turns into float64."""

import numpy as np
import pytest

from tinygrad_gpt import engine
from tinygrad_gpt.model import GPT, GPTConfig
from tinygrad_gpt.optim import AdamW, clip_grad_norm_
from tinygrad_gpt.parallel.shards import DataParallel


def _arrays(value):
    items = value if isinstance(value, (tuple, list)) else (value,)
    return [a for a in items if hasattr(a, "dtype")]


@pytest.mark.parametrize("shards", [1, 2])  # 2: the data-parallel step, its shards' losses weighted
def test_no_float64_array_in_a_float32_training_step(monkeypatch, rung, shards):
    dtypes = []  # (op, pass, dtype) of every array an op's forward or backward returns
    real_timed = engine.function.timed

    def recording(op, phase, fn, *args, **kwargs):
        out = real_timed(op, phase, fn, *args, **kwargs)
        dtypes.extend((op, phase, a.dtype) for a in _arrays(out) if a.dtype.kind == "f")
        return out

    monkeypatch.setattr(engine.function, "timed", recording)
    monkeypatch.setattr(engine.autograd, "timed", recording)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.1))
    optimizer = AdamW(model.named_parameters(), lr=1e-3)
    idx = np.random.default_rng(0).integers(0, 11, (3, 9))
    loss = DataParallel(model, shards).step(idx[:, :-1], idx[:, 1:], seed=0)
    norm = clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()

    assert {phase for _, phase, _ in dtypes} == {"forward", "backward"}
    assert [d for d in dtypes if d[2] != np.float32] == []
    assert norm.dtype == loss.dtype == np.float32
    for name, p in model.named_parameters():
        assert p.data.dtype == p.grad.dtype == np.float32, name
    moments = optimizer.state_dict()["tensors"]
    assert {a.dtype for a in moments.values()} == {np.dtype(np.float32)}
