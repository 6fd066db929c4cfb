import math

import numpy as np
import pytest

from tinygrad_gpt import engine
from tinygrad_gpt.engine import Tensor
from tinygrad_gpt.optim import AdamW, clip_grad_norm_, get_lr


def make_params(dtype=np.float64):
    w = Tensor(np.array([[1.0, -2.0], [0.5, 3.0]], dtype), requires_grad=True)
    b = Tensor(np.array([0.1, -0.3], dtype), requires_grad=True)
    return [("w", w), ("b", b)]


G1 = {"w": np.array([[0.2, -0.4], [1.0, 0.0]]), "b": np.array([-0.5, 2.0])}
G2 = {"w": np.array([[-0.1, 0.3], [0.6, 2.0]]), "b": np.array([0.25, 1.0])}
G3 = {"w": np.array([[0.7, 0.1], [-0.2, 0.4]]), "b": np.array([1.5, -0.5])}


def set_grads(named, grads):
    """Gradients on the parameters' own backend (numpy, or cupy under TINYGPT_BACKEND=cupy)."""
    for name, p in named:
        p.grad = engine.backend.asarray(grads[name].astype(p.dtype))


def test_two_adamw_steps_match_hand_computation():
    lr, wd, eps = 0.1, 0.1, 1e-8
    named = make_params()
    start = {name: p.numpy() for name, p in named}
    opt = AdamW(named, lr=lr, betas=(0.9, 0.95), eps=eps, weight_decay=wd)
    for grads in (G1, G2):
        set_grads(named, grads)
        opt.step()
    for name, p in named:
        decay = 1 - lr * wd if name == "w" else 1.0
        g1, g2 = G1[name], G2[name]
        # step 1: the bias-corrected moments are g1 and g1^2 themselves
        p1 = start[name] * decay - lr * g1 / (np.abs(g1) + eps)
        # step 2: m = 0.9*0.1 g1 + 0.1 g2 over 1 - 0.9^2;  v = 0.95*0.05 g1^2 + 0.05 g2^2 over 1 - 0.95^2
        m_hat = (0.09 * g1 + 0.1 * g2) / 0.19
        v_hat = (0.0475 * g1**2 + 0.05 * g2**2) / 0.0975
        p2 = p1 * decay - lr * m_hat / (np.sqrt(v_hat) + eps)
        np.testing.assert_allclose(p.numpy(), p2, rtol=1e-12, atol=1e-12, err_msg=name)


def test_weight_decay_only_touches_matrices():
    named = make_params()
    (_, w), (_, b) = named
    w0, b0 = w.numpy(), b.numpy()
    opt = AdamW(named, lr=0.5, weight_decay=0.2)
    set_grads(named, {"w": np.zeros((2, 2)), "b": np.zeros(2)})
    opt.step()
    np.testing.assert_allclose(w.numpy(), w0 * (1 - 0.5 * 0.2), rtol=1e-12)
    np.testing.assert_array_equal(b.numpy(), b0)


def test_params_without_grad_are_skipped_and_zero_grad_clears():
    named = make_params(np.float32)
    (_, w), (_, b) = named
    b0 = b.numpy()
    opt = AdamW(named)
    w.grad = engine.backend.asarray(np.ones((2, 2), np.float32))
    opt.step()
    np.testing.assert_array_equal(b.numpy(), b0)
    assert not opt.state_dict()["tensors"]["exp_avg.b"].any()
    assert opt.exp_avg["w"].dtype == np.float32 and w.dtype == np.float32
    opt.zero_grad()
    assert w.grad is None and b.grad is None


def test_state_dict_round_trip_continues_identically():
    named_a, named_b = make_params(), make_params()
    opt_a, opt_b = AdamW(named_a, lr=0.05), AdamW(named_b, lr=0.05)
    for grads in (G1, G2):
        set_grads(named_a, grads)
        opt_a.step()
    state = opt_a.state_dict()
    assert state["step"] == 2
    assert sorted(state["tensors"]) == ["exp_avg.b", "exp_avg.w", "exp_avg_sq.b", "exp_avg_sq.w"]
    for (_, pa), (_, pb) in zip(named_a, named_b):
        pb.data[...] = pa.data
    opt_b.load_state_dict({"step": 2, "tensors": {k: v.copy() for k, v in state["tensors"].items()}})
    for named, opt in ((named_a, opt_a), (named_b, opt_b)):
        set_grads(named, G3)
        opt.step()
    for (_, pa), (_, pb) in zip(named_a, named_b):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy())
    assert opt_b.step_count == 3


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd["tensors"].pop("exp_avg_sq.w"), "missing keys: exp_avg_sq.w"),
        (lambda sd: sd["tensors"].update({"exp_avg.c": np.zeros(2)}), "unexpected keys: exp_avg.c"),
        (lambda sd: sd["tensors"].update({"exp_avg.b": np.zeros(3)}), "exp_avg.b (3,) != (2,)"),
        (lambda sd: sd.update(step=-1), "'step'"),
    ],
)
def test_load_state_dict_rejects_mismatched_state(edit, message):
    opt = AdamW(make_params())
    state = {"step": 1, "tensors": {k: v.copy() for k, v in opt.state_dict()["tensors"].items()}}
    edit(state)
    with pytest.raises(ValueError) as err:
        opt.load_state_dict(state)
    assert message in str(err.value)
    assert opt.step_count == 0


def test_get_lr_warmup_peak_cosine_and_floor():
    args = dict(learning_rate=1.0, min_lr=0.1, warmup_iters=10, lr_decay_iters=110)
    assert get_lr(0, **args) == pytest.approx(1 / 11)
    assert get_lr(9, **args) == pytest.approx(10 / 11)
    assert get_lr(10, **args) == pytest.approx(1.0)
    assert get_lr(60, **args) == pytest.approx(0.55)  # halfway down the cosine
    assert get_lr(35, **args) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))
    assert get_lr(110, **args) == pytest.approx(0.1)
    assert get_lr(1000, **args) == 0.1
    lrs = [get_lr(s, **args) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert get_lr(0, 1.0, 0.1, warmup_iters=0, lr_decay_iters=0) == 0.1


def test_clip_grad_norm_scales_all_grads_together():
    a = Tensor(np.zeros(2, np.float32), requires_grad=True)
    b = Tensor(np.zeros((1, 1), np.float32), requires_grad=True)
    untouched = Tensor(np.zeros(3, np.float32), requires_grad=True)
    a.grad, b.grad = (engine.backend.asarray(np.array(g, np.float32)) for g in ([3.0, 4.0], [[12.0]]))
    norm = clip_grad_norm_([a, b, untouched], max_norm=100.0)
    assert isinstance(norm, type(a.data)) and norm.shape == () and float(norm) == pytest.approx(13.0)
    np.testing.assert_array_equal(engine.backend.to_numpy(a.grad), [3.0, 4.0])  # under the limit: unchanged
    norm = clip_grad_norm_([a, b, untouched], max_norm=1.0)
    assert float(norm) == pytest.approx(13.0)
    np.testing.assert_allclose(engine.backend.to_numpy(a.grad), np.array([3.0, 4.0]) / 13, rtol=1e-5)
    np.testing.assert_allclose(engine.backend.to_numpy(b.grad), [[12.0 / 13]], rtol=1e-5)
    assert untouched.grad is None
