import numpy as np
import pytest

from helpers import host
from tinygrad_gpt import engine
from tinygrad_gpt.engine import Tensor
from tinygrad_gpt.model import GPT, GPTConfig
from tinygrad_gpt.nn import Dropout, Embedding, LayerNorm, Linear, Module


class Toy(Module):
    def __init__(self, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.emb = Embedding(5, 3, rng=rng)
        self.layers = [Linear(3, 3, rng=rng), Linear(3, 4, bias=False, rng=rng)]
        self.norm = LayerNorm(4)
        self.drop = Dropout(0.5)
        self.scale = Tensor(np.ones(4, np.float32), requires_grad=True)
        self.buffer = Tensor(np.ones(2, np.float32))  # no grad: not a parameter


TOY_NAMES = ["scale", "emb.weight", "layers.0.weight", "layers.0.bias", "layers.1.weight", "norm.weight", "norm.bias"]


def test_named_parameters_names_and_order():
    toy = Toy()
    assert [name for name, _ in toy.named_parameters()] == TOY_NAMES
    assert [p.shape for p in toy.parameters()] == [(4,), (5, 3), (3, 3), (3,), (3, 4), (4,), (4,)]
    assert all(p.dtype == np.float32 for p in toy.parameters())


def test_tied_weight_is_counted_once_under_its_first_name():
    rng = np.random.default_rng(0)

    class Tied(Module):
        def __init__(self):
            super().__init__()
            self.a = Linear(3, 3, rng=rng)
            self.b = Linear(3, 3, rng=rng)
            self.b.weight = self.a.weight

    named = Tied().named_parameters()
    assert [name for name, _ in named] == ["a.weight", "a.bias", "b.bias"]
    assert len({id(p) for _, p in named}) == 3


def test_train_eval_reach_modules_inside_lists():
    toy = Toy()
    modules = [toy, toy.emb, toy.layers[0], toy.layers[1], toy.norm, toy.drop]
    assert toy.eval() is toy
    assert not any(m.training for m in modules)
    toy.train()
    assert all(m.training for m in modules)


def test_zero_grad_clears_every_grad():
    toy = Toy()
    for p in toy.parameters():
        p.grad = engine.backend.get_xp().ones(p.shape, np.float32)
    toy.zero_grad()
    assert all(p.grad is None for p in toy.parameters())


def test_linear_layernorm_dropout_forward():
    rng = np.random.default_rng(0)
    lin = Linear(3, 2, rng=rng)
    lin.bias.data[...] = [1.0, -1.0]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(lin(Tensor(x)).numpy(), x @ lin.weight.numpy() + [1.0, -1.0], rtol=1e-6)

    norm = LayerNorm(4)
    assert norm.weight.numpy().tolist() == [1.0] * 4 and norm.bias.numpy().tolist() == [0.0] * 4
    assert LayerNorm(4, bias=False).bias is None

    drop = Dropout(0.5)
    x = Tensor(np.ones((64, 64), np.float32))
    assert np.array_equal(drop.eval()(x).numpy(), x.numpy())
    kept = drop.train()(x).numpy()
    assert 0.3 < (kept == 0).mean() < 0.7 and set(np.unique(kept)) == {0.0, 2.0}


def test_state_dict_round_trip_copies_in_place_and_keeps_dtype():
    a, b = Toy(seed=0), Toy(seed=1)
    arrays_before = [p.data for p in a.parameters()]
    source = {k: v.astype(np.float64) for k, v in b.state_dict().items()}
    a.load_state_dict(source)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy(), err_msg=name)
        assert pa.dtype == np.float32
    assert all(p.data is before for p, before in zip(a.parameters(), arrays_before))
    assert list(a.state_dict()) == TOY_NAMES


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda sd: sd.pop("norm.bias"), "missing keys: norm.bias"),
        (lambda sd: sd.update(extra=np.zeros(1)), "unexpected keys: extra"),
        (lambda sd: sd.update({"emb.weight": np.zeros((5, 4))}), "emb.weight (5, 4) != (5, 3)"),
    ],
)
def test_load_state_dict_errors_name_the_problem_and_change_nothing(edit, message):
    a, b = Toy(seed=0), Toy(seed=1)
    sd = {k: v.copy() for k, v in b.state_dict().items()}
    edit(sd)
    before = {k: v.copy() for k, v in a.state_dict().items()}
    with pytest.raises(ValueError, match="cannot load state") as err:
        a.load_state_dict(sd)
    assert message in str(err.value) and "\n" not in str(err.value)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(host(v), host(before[k]))


def test_load_state_dict_not_strict_allows_missing_and_unexpected_but_not_shapes():
    a, b = Toy(seed=0), Toy(seed=1)
    sd = b.state_dict()
    partial = {"emb.weight": sd["emb.weight"], "other": np.zeros(2)}
    a.load_state_dict(partial, strict=False)
    np.testing.assert_array_equal(a.emb.weight.numpy(), b.emb.weight.numpy())
    assert not np.array_equal(a.layers[0].weight.numpy(), b.layers[0].weight.numpy())
    with pytest.raises(ValueError, match="shape mismatches"):
        a.load_state_dict({"scale": np.zeros(3)}, strict=False)


def test_double_turns_every_parameter_float64_in_place():
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4))
    tied = model.transformer.wte.weight
    assert model.double() is model
    assert {p.dtype for p in model.parameters()} == {np.dtype(np.float64)}
    assert model.transformer.wte.weight is tied  # the same Tensors, so weight tying survives
    _, loss = model(np.zeros((1, 4), dtype=np.int64), np.zeros((1, 4), dtype=np.int64))
    assert loss.dtype == np.float64
