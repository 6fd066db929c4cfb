import math

import numpy as np
import pytest

from tinygrad_gpt import engine
from tinygrad_gpt.engine import gradcheck, is_grad_enabled
from tinygrad_gpt.kernels import cpu
from tinygrad_gpt.model import GPT, GPTConfig, _sample
from tinygrad_gpt.optim import AdamW, clip_grad_norm_


def tiny_config(**overrides):
    return GPTConfig(**{**dict(vocab_size=7, block_size=4, n_layer=1, n_head=2, n_embd=8), **overrides})


def random_ids(shape, vocab_size, seed=0):
    return np.random.default_rng(seed).integers(0, vocab_size, shape)


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(vocab_size=0), "vocab_size"),
        (dict(block_size=2.5), "block_size"),
        (dict(n_layer=-1), "n_layer"),
        (dict(n_head=3), "n_head"),
        (dict(n_embd=True), "n_embd"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=-0.1), "dropout"),
        (dict(bias="yes"), "bias"),
        (dict(layer_norm_epsilon=0), "layer_norm_epsilon"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        tiny_config(**overrides)


def test_parameter_names_and_shapes_are_gpt2s():
    V, block, D = 11, 6, 8
    model = GPT(GPTConfig(vocab_size=V, block_size=block, n_layer=2, n_head=2, n_embd=D))
    expected = [("transformer.wte.weight", (V, D)), ("transformer.wpe.weight", (block, D))]
    for i in range(2):
        h = f"transformer.h.{i}."
        expected += [
            (h + "ln_1.weight", (D,)),
            (h + "ln_1.bias", (D,)),
            (h + "attn.c_attn.weight", (D, 3 * D)),
            (h + "attn.c_attn.bias", (3 * D,)),
            (h + "attn.c_proj.weight", (D, D)),
            (h + "attn.c_proj.bias", (D,)),
            (h + "ln_2.weight", (D,)),
            (h + "ln_2.bias", (D,)),
            (h + "mlp.c_fc.weight", (D, 4 * D)),
            (h + "mlp.c_fc.bias", (4 * D,)),
            (h + "mlp.c_proj.weight", (4 * D, D)),
            (h + "mlp.c_proj.bias", (D,)),
        ]
    expected += [("transformer.ln_f.weight", (D,)), ("transformer.ln_f.bias", (D,))]
    assert [(name, p.shape) for name, p in model.named_parameters()] == expected
    assert model.num_params() == sum(math.prod(shape) for _, shape in expected)


def test_without_bias_there_are_no_bias_parameters():
    model = GPT(tiny_config(bias=False))
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
    logits, _ = model(random_ids((1, 4), 7))
    assert logits.shape == (1, 4, 7)


def test_init_statistics_and_residual_projection_scaling():
    n_layer, D = 2, 64
    params = dict(GPT(GPTConfig(vocab_size=256, block_size=64, n_layer=n_layer, n_head=4, n_embd=D)).named_parameters())
    for name in [
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.h.0.attn.c_attn.weight",
        "transformer.h.1.mlp.c_fc.weight",
    ]:
        assert params[name].numpy().std() == pytest.approx(0.02, rel=0.1), name
    for name in ["transformer.h.0.attn.c_proj.weight", "transformer.h.1.mlp.c_proj.weight"]:
        assert params[name].numpy().std() == pytest.approx(0.02 / math.sqrt(2 * n_layer), rel=0.1), name
    for name, p in params.items():
        if name.endswith("bias"):
            assert not p.numpy().any(), name
        if ".ln_" in name and name.endswith("weight"):
            assert (p.numpy() == 1).all(), name


def test_same_seed_same_model_different_seed_different_model():
    a, b, c = GPT(tiny_config(), seed=3), GPT(tiny_config(), seed=3), GPT(tiny_config(), seed=4)
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a.parameters(), b.parameters()))
    assert not np.array_equal(a.transformer.wte.weight.numpy(), c.transformer.wte.weight.numpy())


def test_forward_shapes_and_untrained_loss_is_about_log_vocab():
    V = 65
    model = GPT(GPTConfig(vocab_size=V, block_size=16, n_layer=2, n_head=4, n_embd=32))
    idx, targets = random_ids((4, 16), V, seed=1), random_ids((4, 16), V, seed=2)
    logits, loss = model(idx)
    assert logits.shape == (4, 16, V) and loss is None
    logits, loss = model(idx[:, :5], targets[:, :5])
    assert logits.shape == (4, 5, V)
    assert loss.shape == () and abs(loss.item() - math.log(V)) < 0.1


def test_logits_at_a_position_do_not_see_later_tokens(rung):
    model = GPT(tiny_config(block_size=6, n_layer=2), seed=0)
    idx = random_ids((2, 6), 7)
    changed = idx.copy()
    changed[:, 4] = (changed[:, 4] + 1) % 7
    before, after = model(idx)[0].numpy(), model(changed)[0].numpy()
    if rung == "plain":
        np.testing.assert_array_equal(before[:, :4], after[:, :4])
    else:  # the fast softmax shifts a row by its head's max, which a later token may move: rounding
        np.testing.assert_allclose(before[:, :4], after[:, :4], rtol=1e-5, atol=1e-6)
    assert not np.allclose(before[:, 4:], after[:, 4:])


def test_sequence_longer_than_block_size_is_an_error():
    model = GPT(tiny_config())
    with pytest.raises(ValueError, match="exceeds block_size 4"):
        model(random_ids((1, 5), 7))
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        model(random_ids((4,), 7))


def test_loss_gradients_match_finite_differences_in_float64():
    model = GPT(tiny_config(), seed=1)
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    params = dict(model.named_parameters())
    checked = [
        params[name]
        for name in [
            "transformer.wte.weight",  # both the embedding and the tied lm head
            "transformer.wpe.weight",
            "transformer.h.0.ln_1.weight",
            "transformer.h.0.attn.c_attn.bias",
            "transformer.h.0.attn.c_proj.weight",
            "transformer.h.0.mlp.c_fc.bias",
            "transformer.ln_f.bias",
        ]
    ]
    idx, targets = random_ids((2, 4), 7, seed=5), random_ids((2, 4), 7, seed=6)
    assert gradcheck(lambda *_: model(idx, targets)[1], *checked)


def test_tiny_model_overfits_one_batch():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=32), seed=0)
    idx, targets = random_ids((4, 8), 11, seed=7), random_ids((4, 8), 11, seed=8)
    opt = AdamW(model.named_parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(300):
        _, loss = model(idx, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.1:
            break
    assert loss.item() < 0.1


def record_cached_logits(model):
    """Make model.forward remember the last-position logits of every call (one per generated token)."""
    calls, forward = [], model.forward

    def spy(idx, targets=None, kv_cache=None):
        logits, loss = forward(idx, targets, kv_cache)
        calls.append((kv_cache is not None, logits.numpy()[:, -1]))
        return logits, loss

    model.forward = spy
    return calls


def test_cached_logits_match_uncached_at_every_step_including_past_block_size():
    block = 6
    model = GPT(tiny_config(vocab_size=13, block_size=block, n_layer=2, n_embd=16), seed=2)
    prompt = random_ids((3, 2), 13, seed=9)
    calls = record_cached_logits(model)
    out = model.generate(prompt, max_new_tokens=12, temperature=2.0, seed=0)
    del model.forward
    assert out.shape == (3, 14) and np.array_equal(out[:, :2], prompt)
    assert len(calls) == 12 and all(used_cache for used_cache, _ in calls)
    for step, (_, cached) in enumerate(calls):
        context = out[:, : 2 + step][:, -block:]
        uncached, _ = model(context)
        np.testing.assert_allclose(cached, uncached.numpy()[:, -1], atol=1e-5, err_msg=f"step {step}")


def test_generation_is_reproducible_and_emits_valid_ids():
    model = GPT(tiny_config(vocab_size=5, block_size=8), seed=0)
    prompt = random_ids((2, 3), 5)
    a = model.generate(prompt, 20, temperature=3.0, seed=1)
    b = model.generate(prompt, 20, temperature=3.0, seed=1)
    c = model.generate(prompt, 20, temperature=3.0, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.dtype.kind == "i" and a.min() >= 0 and a.max() < 5
    assert len(np.unique(a[:, 3:])) > 1
    streamed = list(model.stream(prompt, 20, temperature=3.0, seed=1))
    assert all(isinstance(t, np.ndarray) and t.shape == (2,) for t in streamed)
    assert np.array_equal(np.stack(streamed, axis=1), a[:, 3:])


def test_top_k_one_is_greedy_and_prompt_longer_than_block_is_cropped():
    model = GPT(tiny_config(vocab_size=9, block_size=4), seed=4)
    prompt = random_ids((2, 7), 9)
    out = model.generate(prompt, 6, top_k=1, seed=0)
    for step in range(6):
        logits, _ = model(out[:, 7 + step - 4 : 7 + step])
        assert np.array_equal(out[:, 7 + step], logits.numpy()[:, -1].argmax(axis=-1))


def test_generation_runs_without_dropout_or_graph_and_restores_training_mode():
    model = GPT(tiny_config(dropout=0.5), seed=0).train()
    prompt = random_ids((1, 2), 7)
    first = model.generate(prompt, 8, seed=3)
    assert np.array_equal(first, model.generate(prompt, 8, seed=3))  # no dropout noise
    tokens = model.stream(prompt, 3, seed=3)
    next(tokens)
    assert model.training and all(m.training for m in model.transformer.h) and is_grad_enabled()
    model.eval()
    list(tokens)
    assert not model.training


def test_sampling_draws_from_the_tempered_softmax():
    n = 4000
    logits = np.tile([np.log(0.2), np.log(0.8), -np.inf], (n, 1))
    rng = np.random.default_rng(0)
    freq = np.bincount(_sample(logits, 1.0, None, rng), minlength=3) / n
    assert freq[2] == 0 and freq[0] == pytest.approx(0.2, abs=0.03)
    freq = np.bincount(_sample(logits, 0.5, None, rng), minlength=3) / n  # p^2, renormalised
    assert freq[0] == pytest.approx(1 / 17, abs=0.02)
    assert (_sample(logits, 1.0, 1, rng) == 1).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(temperature=0.0), "temperature"),
        (dict(top_k=0), "top_k"),
        (dict(max_new_tokens=-1), "max_new_tokens"),
    ],
)
def test_bad_sampling_arguments_are_errors(kwargs, message):
    model = GPT(tiny_config())
    with pytest.raises(ValueError, match=message):
        model.generate(random_ids((1, 2), 7), **{"max_new_tokens": 3, **kwargs})


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_training_on_the_plain_rung_gives_the_faster_rungs_losses(dtype, rtol):
    """The same steps (forward with dropout, backward, clip, AdamW) on each rung: the kernels differ in
    rounding only, so the losses and the weights after them agree to rounding."""
    runs, previous = {}, engine.dispatch.chosen()
    for rung in ("plain", "fast", "cpu") if cpu.AVAILABLE else ("plain", "fast"):
        engine.set_kernels(rung)
        try:
            model = GPT(tiny_config(block_size=8, n_layer=2, dropout=0.1), seed=1)
            if dtype == np.float64:
                model.double()
            optimizer = AdamW(model.named_parameters(), lr=1e-2)
            losses = []
            for step in range(4):
                engine.manual_seed(step)
                _, loss = model(random_ids((3, 8), 7, seed=step), random_ids((3, 8), 7, seed=10 + step))
                loss.backward()
                clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad()
                losses.append(loss.item())
            runs[rung] = losses, [p.numpy() for p in model.parameters()]
        finally:
            engine.set_kernels(previous)
    plain_losses, plain_weights = runs.pop("plain")
    assert len(set(plain_losses)) == 4  # the steps changed the model
    for losses, weights in runs.values():
        np.testing.assert_allclose(losses, plain_losses, rtol=rtol)
        for faster, plain in zip(weights, plain_weights):
            np.testing.assert_allclose(faster, plain, rtol=rtol * 10, atol=rtol)
