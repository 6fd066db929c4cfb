"""`tinygpt gradcheck`: the whole GPT's gradients against finite differences. It passes on every
rung, and a backward planted 0.1% off, in any one op the GPT runs, makes it fail naming a parameter;
by default it checks every rung the backend runs, plain first, so a wrong plain kernel fails too."""

import io
from dataclasses import replace

import numpy as np
import pytest

from tiny_runs import assert_one_line_error, tiny_config, tinygpt
from tinygrad_gpt import cli, engine
from tinygrad_gpt.engine import ops_math, ops_nn, ops_shape
from tinygrad_gpt.kernels import cpu, layernorm
from tinygrad_gpt.kernels.rungs import PLAIN, RUNGS
from tinygrad_gpt.model import GPT, GPTConfig
from tinygrad_gpt.tools.gradcheck import GradcheckFailed, gradcheck, gradcheck_model
from tinygrad_gpt.train import train


def small_gpt():
    """Every op the GPT runs, dropout included, at the smallest sizes that still have them all."""
    return GPT(GPTConfig(vocab_size=7, block_size=5, n_layer=1, n_head=2, n_embd=8, dropout=0.1), seed=3)


def tiny_preset_parameters():
    """The names of the tiny preset GPT's parameters, in order."""
    return [name for name, _ in GPT(GPTConfig(65, 32, 2, 2, 32)).named_parameters()]


def test_the_command_passes_on_the_tiny_preset(rung):
    result = tinygpt("gradcheck", "--kernels", rung, "--elements", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"{rung} kernels" in lines[0]
    names = tiny_preset_parameters()
    assert [line.split()[0] for line in lines[2:-1]] == names  # a row per parameter, in order
    assert lines[-1].startswith(f"all {len(names)} parameters agree")


def test_a_checkpoint_passes(backend, rung, tmp_path, corpus):
    train(tiny_config(max_iters=2, eval_interval=2, n_layer=1), tmp_path / "run", corpus)
    out = io.StringIO()
    gradcheck(out_dir=tmp_path / "run", batch_size=2, elements=1, kernels=rung, file=out)
    assert "a GPT of 1 layers" in out.getvalue() and f"parameters agree on the {rung} kernels" in out.getvalue()


def rungs_here(backend):
    """The rungs the default gradcheck should run on `backend`, in order."""
    if backend == "cupy":
        return ["plain", "fast", "cuda"]
    return ["plain", "fast", "cpu"] if cpu.AVAILABLE else ["plain", "fast"]


def blocks(output):
    """The default gradcheck's output cut at its blank lines: a list of lines per rung checked
    (and, after them all, the verdict on every rung if all passed)."""
    return [block.splitlines() for block in output.strip().split("\n\n")]


def test_by_default_every_rung_is_checked_plain_first(backend):
    out, before = io.StringIO(), engine.dispatch.chosen()
    gradcheck(batch_size=2, elements=1, file=out)
    *checked, last = blocks(out.getvalue())
    names, count = rungs_here(backend), len(tiny_preset_parameters())
    assert [lines[0].rsplit(", ", 1)[1] for lines in checked] == [f"{name} kernels" for name in names]
    assert [lines[-1].split(" (")[0] for lines in checked] == [
        f"all {count} parameters agree on the {name} kernels" for name in names
    ]
    assert last == [f"all {count} parameters agree on every rung: {', '.join(names)}"]
    assert engine.dispatch.chosen() == before  # the process's choice of kernels comes back


def test_a_plain_kernel_off_by_a_thousandth_fails_naming_plain(backend, monkeypatch):
    def off_by_a_thousandth(*args):
        return tuple(g * 1.001 for g in layernorm.layernorm_backward(*args))

    monkeypatch.setitem(RUNGS, "plain", replace(PLAIN, layernorm_backward=off_by_a_thousandth))
    out = io.StringIO()
    with pytest.raises(GradcheckFailed) as failure:
        gradcheck(batch_size=2, elements=1, file=out)
    others = rungs_here(backend)[1:]
    assert str(failure.value).startswith("gradcheck failed on the plain kernels at transformer.")
    assert str(failure.value).endswith(f"(the {' and '.join(others)} kernels pass)")
    failing = [[line.split()[0] for line in lines if line.endswith("FAIL")] for lines in blocks(out.getvalue())]
    norms = [name for name in tiny_preset_parameters() if ".ln_" in name]
    assert len(norms) == 10 and set(norms) <= set(failing[0])  # every LayerNorm parameter fails on plain
    assert failing[1:] == [[] for _ in others]  # and nothing on the rungs whose LayerNorm is right


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
    failed = rf"gradcheck failed on the {rung} kernels at transformer\.\S+ \(.*\): relative error"
    with pytest.raises(GradcheckFailed, match=failed):
        gradcheck_model(small_gpt(), batch_size=2, elements=1, file=io.StringIO())


def test_the_command_fails_in_one_line_with_exit_1(monkeypatch, capsys):
    monkeypatch.setattr(ops_math.Gelu, "backward", lambda self, dout: dout)  # as if GELU were the identity
    assert cli.main(["gradcheck", "--elements", "1"]) == 1
    captured = capsys.readouterr()
    failing = [line.split()[0] for line in captured.out.splitlines() if line.endswith("FAIL")]
    assert "transformer.h.1.mlp.c_fc.bias" in failing  # its gradient flows through the GELU
    assert "transformer.h.1.mlp.c_proj.bias" not in failing and "transformer.ln_f.weight" not in failing  # not
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"tinygpt: error: gradcheck failed on the plain kernels at {failing[0]} ")


@pytest.mark.parametrize("flag", [["--batch-size", "0"], ["--tolerance", "0"], ["--elements", "-1"]])
def test_bad_values_are_usage_errors(flag):
    assert_one_line_error(tinygpt("gradcheck", *flag), 2, "gradcheck", flag[0])


def test_a_missing_checkpoint_is_one_line(tmp_path):
    assert_one_line_error(tinygpt("gradcheck", "--out-dir", tmp_path / "none"), 1, "config.json")
