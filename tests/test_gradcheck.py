"""`tinygpt gradcheck`: the whole GPT's gradients against finite differences. It passes on every
rung, and a backward planted 0.1% off, in any one op the GPT runs, makes it fail naming a parameter."""

import io

import numpy as np
import pytest

from tiny_runs import assert_one_line_error, tiny_config, tinygpt
from tinygrad_gpt import cli, engine
from tinygrad_gpt.engine import ops_math, ops_nn, ops_shape
from tinygrad_gpt.model import GPT, GPTConfig
from tinygrad_gpt.tools.gradcheck import GradcheckFailed, gradcheck, gradcheck_model
from tinygrad_gpt.train import train


def small_gpt():
    """Every op the GPT runs, dropout included, at the smallest sizes that still have them all."""
    return GPT(GPTConfig(vocab_size=7, block_size=5, n_layer=1, n_head=2, n_embd=8, dropout=0.1), seed=3)


def test_the_command_passes_on_the_tiny_preset(rung):
    result = tinygpt("gradcheck", "--kernels", rung, "--elements", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"{rung} kernels" in lines[0]
    names = [name for name, _ in GPT(GPTConfig(65, 32, 2, 2, 32)).named_parameters()]
    assert [line.split()[0] for line in lines[2:-1]] == names  # a row per parameter, in order
    assert lines[-1].startswith(f"all {len(names)} parameters agree")


def test_a_checkpoint_passes(backend, rung, tmp_path, corpus):
    train(tiny_config(max_iters=2, eval_interval=2, n_layer=1), tmp_path / "run", corpus)
    out = io.StringIO()
    gradcheck(out_dir=tmp_path / "run", batch_size=2, elements=1, file=out)
    assert "a GPT of 1 layers" in out.getvalue() and "parameters agree" in out.getvalue()


OPS = [
    ops_nn.Embedding,
    ops_nn.Dropout,
    ops_nn.LayerNorm,
    ops_nn.Linear,
    ops_shape.Split,
    ops_shape.Reshape,
    ops_shape.Permute,
    ops_nn.Attention,
    ops_shape.Contiguous,
    ops_math.Gelu,
    ops_math.Add,
    ops_nn.CrossEntropy,
]


def test_the_planted_bugs_cover_every_op_of_the_gpt():
    tokens = np.random.default_rng(0).integers(0, 7, (2, 6))
    _, loss = small_gpt()(tokens[:, :-1], tokens[:, 1:])
    ran = {type(node._ctx) for node in engine.autograd.topological_order(loss)}
    assert ran == set(OPS)


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.__name__)
def test_a_backward_off_by_a_thousandth_fails_naming_a_parameter(backend, rung, monkeypatch, op):
    assert gradcheck_model(small_gpt(), batch_size=2, elements=1, file=io.StringIO()) is None  # passes first
    correct = op.backward

    def off_by_a_thousandth(self, *douts):
        grads = correct(self, *douts)
        grads = grads if isinstance(grads, tuple) else (grads,)
        return tuple(None if g is None else g * 1.001 for g in grads)

    monkeypatch.setattr(op, "backward", off_by_a_thousandth)
    with pytest.raises(GradcheckFailed, match=r"gradcheck failed at transformer\.\S+ \(.*\): relative error"):
        gradcheck_model(small_gpt(), batch_size=2, elements=1, file=io.StringIO())


def test_the_command_fails_in_one_line_with_exit_1(monkeypatch, capsys):
    monkeypatch.setattr(ops_math.Gelu, "backward", lambda self, dout: dout)  # as if GELU were the identity
    assert cli.main(["gradcheck", "--elements", "1"]) == 1
    captured = capsys.readouterr()
    failing = [line.split()[0] for line in captured.out.splitlines() if line.endswith("FAIL")]
    assert "transformer.h.1.mlp.c_fc.bias" in failing  # its gradient flows through the GELU
    assert "transformer.h.1.mlp.c_proj.bias" not in failing and "transformer.ln_f.weight" not in failing  # not
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"tinygpt: error: gradcheck failed at {failing[0]} ")


@pytest.mark.parametrize("flag", [["--batch-size", "0"], ["--tolerance", "0"], ["--elements", "-1"]])
def test_bad_values_are_usage_errors(flag):
    assert_one_line_error(tinygpt("gradcheck", *flag), 2, "gradcheck", flag[0])


def test_a_missing_checkpoint_is_one_line(tmp_path):
    assert_one_line_error(tinygpt("gradcheck", "--out-dir", tmp_path / "none"), 1, "config.json")
