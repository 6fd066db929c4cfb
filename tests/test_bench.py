"""tinygpt bench's comparison with PyTorch and its per-op profile."""

import sys

import pytest

from tinygrad_gpt.bench import bench, report
from tinygrad_gpt.errors import UsageError


@pytest.fixture(scope="module")
def profiled():
    return bench("tiny", iters=2, warmup=1, profile=True)


def test_profile_names_the_ops_and_adds_up(profiled):
    table = profiled["profile"]
    for op in ("Linear", "Attention", "LayerNorm", "CrossEntropy", "(outside ops)", "total"):
        assert op in table
    assert "backward" in table and "forward" in table


def test_profile_shows_what_each_op_keeps_for_backward_and_the_step_peak(profiled, capsys):
    memory = profiled["memory"]
    assert memory["kept_mb"] == pytest.approx(sum(memory["kept_mb_by_op"].values()))
    # tiny: 2 layers, N = 8 * 32 tokens, C = 32, float32. Every Linear output is kept (by Split, Gelu
    # and the residual Adds): per layer c_attn's 3C, attention's c_proj's C, c_fc's 4C and the MLP's
    # c_proj's C, then the head's 65 logits per token.
    n_tokens, c, layers = 8 * 32, 32, 2
    assert memory["kept_mb_by_op"]["Linear"] * 2**20 == (layers * 9 * c + 65) * n_tokens * 4
    assert memory["parameters_mb"] > 0
    assert memory["step_peak_mb"] >= memory["kept_mb"]  # the step allocates all that its forward keeps
    report(profiled)
    out = capsys.readouterr().out
    assert "keeps for the backward" in out and "peak of one step" in out
    for op in ("Linear", "Attention", "LayerNorm", "Gelu", "total"):
        assert op in out.split("keeps for the backward")[1]


def test_vs_torch_without_torch_is_a_usage_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(UsageError, match="needs PyTorch"):
        bench("tiny", iters=1, warmup=0, vs_torch=True)


def test_vs_torch_times_the_same_model():
    pytest.importorskip("torch")
    result = bench("tiny", iters=2, warmup=1, vs_torch=True)
    assert result["torch"]["first_loss_diff"] < 1e-4  # the twin starts from our weights
    assert result["torch"]["ms_per_iter"] > 0
    assert result["ratio_vs_torch"] == pytest.approx(result["ms_per_iter"] / result["torch"]["ms_per_iter"])
