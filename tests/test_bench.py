"""tinygpt bench: its comparison with PyTorch, its per-op profile, other model sizes, the CPU code it reports."""

import pytest

from tiny_runs import assert_one_line_error, python_output, tinygpt
from tinygrad_gpt.config import CHAR_VOCAB_SIZE
from tinygrad_gpt.errors import UsageError
from tinygrad_gpt.kernels import cpu
from tinygrad_gpt.model import GPT, GPTConfig
from tinygrad_gpt.tools.bench import bench, report


@pytest.fixture(scope="module")
def profiled():
    return bench("tiny", iters=2, warmup=1, profile=True)


def test_profile_names_the_ops_and_adds_up(profiled):
    table = profiled["profile"]["table"]
    for op in ("Linear", "Attention", "LayerNorm", "CrossEntropy", "(outside ops)", "total"):
        assert op in table
    assert "backward" in table and "forward" in table


def test_profile_times_the_warm_one_thread_step_it_heads(profiled, capsys):
    """BLAS held to one thread inside the profile, and the table's total the profiled steps' own
    time: not the multi-core step's, nor with a cold first step in it (that one is outside)."""
    profile = profiled["profile"]
    assert profile["blas_threads"] and set(profile["blas_threads"]) == {1}
    assert profile["ms_per_iter"] == pytest.approx(profile["steps_ms_per_iter"], rel=0.2)
    report(profiled)
    assert f"BLAS on 1 thread: {profile['ms_per_iter']:.1f} ms/iter" in capsys.readouterr().out


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


def test_vs_torch_without_torch_is_a_one_line_usage_error(tmp_path):
    (tmp_path / "torch.py").write_text("raise ImportError('no torch here')\n")
    args = ["bench", "--preset", "tiny", "--iters", 1, "--warmup", 0, "--vs-torch"]
    result = tinygpt(*args, env={"PYTHONPATH": str(tmp_path)})  # where Python looks before site-packages
    assert_one_line_error(result, 2, "--vs-torch needs PyTorch")


def test_vs_torch_times_the_same_model():
    pytest.importorskip("torch")
    result = bench("tiny", iters=2, warmup=1, vs_torch=True)
    assert result["torch"]["first_loss_diff"] < 1e-4  # the twin starts from our weights
    assert result["torch"]["ms_per_iter"] > 0
    assert result["ratio_vs_torch"] == pytest.approx(result["ms_per_iter"] / result["torch"]["ms_per_iter"])


def test_torch_is_imported_only_under_vs_torch():
    pytest.importorskip("torch")
    code = "import sys; from tinygrad_gpt.tools.bench import bench; bench('tiny', iters=1, warmup=0, profile=True); "
    code += "print('torch' in sys.modules); bench('tiny', iters=1, warmup=0, vs_torch=True); "
    code += "print('torch' in sys.modules)"
    assert python_output(code).split() == ["False", "True"]


def test_shape_replaces_the_presets_sizes():
    shape = {"n_layer": 3, "n_head": 3, "n_embd": 48, "block_size": 16, "batch_size": 5}
    result = bench("tiny", iters=1, warmup=0, shape=shape)
    assert {name: result[name] for name in shape} == shape
    model = GPT(GPTConfig(CHAR_VOCAB_SIZE, 16, 3, 3, 48))
    assert result["optimizer_mb"] * 2**20 == 2 * 4 * model.num_params()  # two moments, float32
    assert result["tokens_per_s"] == pytest.approx(5 * 16 / (result["ms_per_iter"] / 1e3))


def test_bad_shape_is_a_usage_error():
    with pytest.raises(UsageError, match="divisible by n_head"):
        bench("tiny", iters=1, warmup=0, shape={"n_embd": 64, "n_head": 3})


def _cpu_kernels(**env):
    return python_output("from tinygrad_gpt.tools.bench import cpu_kernels; print(cpu_kernels())", **env)


def test_cpu_kernels_reports_numpys_blass_and_numbas_choice():
    line = _cpu_kernels()
    if "X86_V4" not in line or "openblas" not in line:
        pytest.skip(f"the other instruction set is measured from an AVX-512 CPU with OpenBLAS; here: {line}")
    avx2 = _cpu_kernels(
        NPY_DISABLE_CPU_FEATURES="X86_V4 AVX512_ICL AVX512_SPR",
        OPENBLAS_CORETYPE="Haswell",
        NUMBA_CPU_NAME="haswell",
    )
    assert "tanh X86_V3" in avx2 and "SkylakeX" in line and "SkylakeX" not in avx2 and "Haswell" in avx2, avx2
    if cpu.AVAILABLE:
        assert " haswell" in avx2 and " haswell" not in line, (line, avx2)


def test_reports_the_worker_processes_peak_memory():
    code = "from tinygrad_gpt.tools.bench import bench; r = bench('tiny', iters=1, warmup=0, shape={'batch_size': 4}); "
    code += "print(r['shard_workers'], r.get('worker_peak_rss_mb'))"
    workers, peak = python_output(code, TINYGPT_CPU_THREADS="2", TINYGPT_CPU_WORKERS="processes").split()
    assert workers == "processes"
    assert float(peak) > 20  # Python with NumPy, at least: not the few MB of a child that only ran a command
