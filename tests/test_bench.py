"""tinygpt bench's comparison with PyTorch and its per-op profile."""

import sys

import pytest

from tinygrad_gpt.bench import bench
from tinygrad_gpt.errors import UsageError


def test_profile_names_the_ops_and_adds_up():
    table = bench("tiny", iters=2, warmup=1, profile=True)["profile"]
    for op in ("Linear", "Attention", "LayerNorm", "CrossEntropy", "(outside ops)", "total"):
        assert op in table
    assert "backward" in table and "forward" in table


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
