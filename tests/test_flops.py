"""MFU's two halves (tinygrad_gpt/tools/flops.py): a step's FLOPs counted op by op from the shapes,
checked against nanoGPT's whole-model formula, and the machine's peak from its instruction set."""

import pytest

from tinygrad_gpt.config import CHAR_VOCAB_SIZE, preset_config
from tinygrad_gpt.model import GPT, GPTConfig
from tinygrad_gpt.tools.bench import bench, report
from tinygrad_gpt.tools.flops import ADAMW_PER_PARAMETER, cpu_peak, step_flops, total


@pytest.mark.parametrize("preset", ["tiny", "cpu", "baby"])
def test_the_products_agree_with_nanogpts_count(preset):
    """nanoGPT's estimate_mfu: 6 FLOPs per parameter per token (forward 2, backward 4) and 12 L T C
    per token for attention's two products; the op-by-op count adds biases, softmaxes and the
    elementwise ops, a few percent on top."""
    config = preset_config(preset)
    model = GPT(GPTConfig(CHAR_VOCAB_SIZE, config.block_size, config.n_layer, config.n_head, config.n_embd))
    tokens = config.batch_size * config.block_size
    non_embedding = model.num_params() - model.transformer.wpe.weight.size  # as nanoGPT counts
    nanogpt = tokens * (6 * non_embedding + 12 * config.n_layer * config.block_size * config.n_embd)
    counted = step_flops(config, config.batch_size, CHAR_VOCAB_SIZE)
    products = sum(sum(counted[op].values()) for op in ("Linear", "Attention"))
    assert nanogpt * 0.97 < products < nanogpt * 1.1
    assert counted["(optimizer)"]["forward"] == ADAMW_PER_PARAMETER * model.num_params()
    assert products < total(counted) < products * 1.1  # the rest is a few percent


def test_the_peak_follows_the_instruction_set_blas_runs():
    avx512 = {"avx512f", "avx2", "fma"}
    assert cpu_peak(avx512, cores=2, mhz=2600)[0] == 2 * 2.6e9 * 2 * 2 * 16
    assert cpu_peak(avx512, cores=2, mhz=2600, blas_core="Haswell")[0] == 2 * 2.6e9 * 2 * 2 * 8
    assert cpu_peak({"avx2", "fma"}, cores=1, mhz=3000)[0] == 3e9 * 2 * 2 * 8
    assert cpu_peak({"sse2"}, cores=1, mhz=3000)[0] == 3e9 * 2 * 2 * 4
    assert cpu_peak(avx512, cores=1, mhz=0) == (None, "unknown clock")  # no clock found


def test_bench_reports_mfu(capsys):
    result = bench("tiny", iters=2, warmup=1)
    config = preset_config("tiny")
    assert result["flops_per_iter"] == total(step_flops(config, config.batch_size, CHAR_VOCAB_SIZE))
    assert result["flops_per_s"] == pytest.approx(result["flops_per_iter"] / (result["ms_per_iter"] / 1e3))
    if result["peak_flops_per_s"] is not None:  # a machine whose clock the kernel tells
        assert 0 < result["mfu"] < 1
        report(result)
        assert f"MFU {result['mfu']:.1%}" in capsys.readouterr().out
