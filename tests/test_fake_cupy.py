"""The CuPy stand-in (tests/fake_cupy) is as strict as CuPy, and what it finds stays fixed: 0-d
inputs of the CUDA elementwise kernels, the fast attention's per-call sync, and a training step's
syncs (none between log intervals). Runs where the stand-in is in place (no usable GPU); a real GPU
runs the CUDA kernels' own tests instead."""

import importlib.util
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import FAKE
from tinygrad_gpt import engine
from tinygrad_gpt.kernels import attention, cuda, dropout, gelu

pytestmark = pytest.mark.skipif(not FAKE, reason="a usable GPU: real CuPy runs, not the stand-in")
needs_mpi = pytest.mark.skipif(
    shutil.which("mpiexec") is None or importlib.util.find_spec("mpi4py") is None, reason="MPI is missing"
)

if FAKE:
    import cupy
    from cupy.kernels import LaunchError, RawModule


@pytest.fixture
def on_cupy():
    previous, rung = engine.backend.name(), engine.dispatch.chosen()
    engine.set_backend("cupy")
    engine.set_kernels("cuda")
    yield
    engine.set_backend(previous)
    engine.set_kernels(rung)


def syncs(fn):
    """fn()'s result and the device-to-host syncs it made, by call site."""
    before = cupy.SYNCS.copy()
    result = fn()
    return result, cupy.SYNCS - before


# --- the stand-in is strict ------------------------------------------------------------------------


def test_arrays_are_not_numpy_arrays():
    a = cupy.arange(3.0)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    with pytest.raises(TypeError):
        a + np.ones(3)  # a host operand, refused as CuPy refuses it
    with pytest.raises(TypeError):
        np.lib.stride_tricks.sliding_window_view(a, 2)  # a NumPy function CuPy has no twin of
    assert isinstance(np.exp(a), cupy.ndarray) and isinstance(a.sum(), cupy.ndarray)  # 0-d, not a host scalar
    np.testing.assert_array_equal(a.get(), [0.0, 1.0, 2.0])


def test_syncs_are_counted_where_they_happen():
    a = cupy.arange(4.0)
    _, counted = syncs(lambda: (float(a.sum()), a.get(), cupy.asnumpy(a), bool(a[1] > 0), a.max().item()))
    assert sum(counted.values()) == 5 and len(counted) == 1  # all on one line, this file's
    assert next(iter(counted)).startswith(__file__)
    _, counted = syncs(lambda: (a + 1) * 2)
    assert not counted


def test_ascontiguousarray_makes_0d_1d_as_cupy_does():
    assert cupy.ascontiguousarray(cupy.asarray(1.0)).shape == (1,)


def test_launches_are_checked_against_the_kernel_signature(on_cupy):
    kernel = RawModule(code=cuda.source_code("gelu")).get_function("gelu_forward_f32")
    x, y = cupy.ones(8, dtype=np.float32), cupy.empty(8, dtype=np.float32)
    kernel((1,), (256,), (x, y, np.int64(8)))
    np.testing.assert_allclose(y.get(), gelu.gelu_forward(np.ones(8, np.float32))[0], rtol=1e-6)
    bad = {
        "arguments": ((1,), (256,), (x, y)),
        "takes float32": ((1,), (256,), (x.astype(np.float64), y, np.int64(8))),
        "numpy scalar": ((1,), (256,), (x, y, 8)),  # a Python int: CuPy would pass it as another width
        "takes int64": ((1,), (256,), (x, y, np.int32(8))),
        "threads": ((1,), (512, 4), (x, y, np.int64(8))),
        "each dimension": ((1,), (2048,), (x, y, np.int64(8))),
        "grid": ((0,), (256,), (x, y, np.int64(8))),
        "n is not": ((1,), (256,), (x, y, np.int64(7))),
        "contiguous": ((1,), (256,), (cupy.ones(16, dtype=np.float32)[::2], y, np.int64(8))),
    }
    for message, (grid, block, args) in bad.items():
        with pytest.raises(LaunchError, match=message):
            kernel(grid, block, args)
    with pytest.raises(LaunchError, match="shared memory"):
        kernel((1,), (256,), (x, y, np.int64(8)), shared_mem=64 * 1024)


def test_every_cuda_entry_point_has_a_reference():
    from cupy import references
    from cupy.kernels import signatures

    names = set()
    for path in sorted(cuda._SOURCE_DIR.glob("*.cu")):
        names |= set(signatures(cuda.source_code(path.stem)))
    assert len(names) >= 30
    unknown = {n for n in names if n.removesuffix("_f32").removesuffix("_f64") not in references.REFERENCES}
    assert not unknown


# --- what it found --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_kernels_keep_a_0d_shape(on_cupy, dtype):
    x = cupy.asarray(0.5, dtype=dtype)
    y, _ = cuda.gelu_forward(x)
    assert y.shape == () and abs(float(y) - float(gelu.gelu_forward(np.asarray(0.5, dtype))[0])) < 1e-6
    assert cuda.gelu_backward(cupy.asarray(1.0, dtype=dtype), x).shape == ()
    mask = cuda.dropout_mask(cupy.asarray(0.9, dtype=dtype), 0.5)
    assert mask.shape == () and float(mask) == float(dropout.dropout_mask(np.asarray(0.9, dtype), 0.5))


def test_fast_attention_makes_no_sync(on_cupy):
    rng = np.random.default_rng(0)
    q, k, v = (cupy.asarray(rng.standard_normal((2, 2, 5, 8))) for _ in range(3))
    (out, att), counted = syncs(lambda: attention.attention_forward_fast(q, k, v))
    assert not counted
    want, _ = attention.attention_forward(*(a.get() for a in (q, k, v)))
    np.testing.assert_allclose(out.get(), want, rtol=1e-12)


def test_fast_attention_on_numpy_still_falls_back_from_an_underflowing_head():
    q = np.zeros((1, 1, 2, 4))
    k = np.zeros((1, 1, 2, 4))
    q[0, 0, 1], k[0, 0, 1] = 40.0, 40.0  # row 1 sees a huge score; row 0's are far below the head's max
    out, att = attention.attention_forward_fast(q, k, np.eye(2, 4)[None, None], is_causal=False)
    np.testing.assert_allclose(att, attention.attention_forward(q, k, np.eye(2, 4)[None, None], False)[1])


def test_a_training_step_makes_no_sync_between_log_intervals(on_cupy, tmp_path, corpus):
    """Two runs with as many log intervals, of one step and of four: the same syncs, so the steps
    between logs make none (only the log, the evaluation and the save read the device)."""
    from tiny_runs import tiny_config
    from tinygrad_gpt.train import train

    counts = []
    for every in (1, 4):
        config = tiny_config(max_iters=3 * every, log_interval=every, eval_interval=3 * every, dropout=0.1)
        _, counted = syncs(lambda c=config, e=every: train(c, tmp_path / str(e), corpus))
        counts.append(counted)
    extra = counts[1] - counts[0]
    assert sum(counts[0].values()) > 0  # the counting works: the logs read the loss
    assert not extra, f"syncs inside the steps: {dict(extra)}"


# --- NCCL over MPI -------------------------------------------------------------------------------

NCCL_ON_ONE_DEVICE = """
from mpi4py import MPI
import cupy
from cupy.cuda import nccl
try:
    nccl.NcclCommunicator(MPI.COMM_WORLD.Get_size(), nccl.get_unique_id(), MPI.COMM_WORLD.Get_rank())
except nccl.NcclError as e:
    print(e)
"""


def _mpiexec(ranks, *args, devices=1):
    from test_distributed import MPIEXEC, pinned
    from tiny_runs import clean_env

    env = {**clean_env(), **pinned(), "FAKE_CUPY_DEVICES": str(devices)}
    return subprocess.run(
        [MPIEXEC, "-n", str(ranks), *map(str, args)], capture_output=True, text=True, env=env, timeout=120
    )


@needs_mpi
def test_the_nccl_stand_in_refuses_two_ranks_on_one_device():
    result = _mpiexec(2, sys.executable, "-c", NCCL_ON_ONE_DEVICE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ncclInvalidUsage: Duplicate GPU detected") == 2


@needs_mpi
def test_the_four_collectives_over_nccl_on_two_devices():
    from test_distributed import COLLECTIVES_CHECK

    result = _mpiexec(2, sys.executable, "-c", COLLECTIVES_CHECK, "cupy", devices=2)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "collectives agree on 2 ranks"


@needs_mpi
def test_more_ranks_than_gpus_end_the_job_in_one_line_before_nccl(corpus, tmp_path):
    from tiny_runs import TINY_FLAGS, assert_one_line_error

    args = [sys.executable, "-m", "tinygrad_gpt", "train", "--backend", "cupy", *TINY_FLAGS, "--max-iters", 2]
    result = _mpiexec(2, *args, "--data", corpus, "--out-dir", tmp_path)
    assert_one_line_error(result, 1, "tinygpt: error: 2 ranks on this machine but 1 GPU", "CUDA_VISIBLE_DEVICES")
    assert "ncclInvalidUsage" not in result.stderr


@needs_mpi
@pytest.mark.parametrize("zero", [0, 1])
def test_training_on_two_gpus_over_nccl(corpus, tmp_path, zero):
    from tiny_runs import TINY_FLAGS

    flags = [*TINY_FLAGS, "--max-iters", 4, "--eval-interval", 4, "--zero", zero]
    result = _mpiexec(
        2,
        sys.executable,
        "-m",
        "tinygrad_gpt",
        "train",
        "--backend",
        "cupy",
        *flags,
        "--data",
        corpus,
        "--out-dir",
        tmp_path,
        devices=2,
    )
    assert result.returncode == 0, result.stderr
    assert "step 4: train loss" in result.stdout and (tmp_path / "config.json").exists()


def test_the_cli_trains_and_samples_on_cupy_in_a_subprocess(corpus, tmp_path):
    """The stand-in reaches the test run's subprocesses (PYTHONPATH), and only theirs."""
    from tiny_runs import TINY_FLAGS, tinygpt

    flags = [*TINY_FLAGS, "--max-iters", 2, "--eval-interval", 2, "--data", corpus, "--out-dir", tmp_path]
    trained = tinygpt("train", "--backend", "cupy", *flags)
    assert trained.returncode == 0, trained.stderr
    assert "on cupy" in trained.stdout
    prompt = ["--prompt", "ROMEO:", "--max-new-tokens", 20]
    sampled = tinygpt("sample", "--backend", "cupy", "--out-dir", tmp_path, *prompt)
    assert sampled.returncode == 0, sampled.stderr
    assert sampled.stdout.startswith("ROMEO:") and len(sampled.stdout.strip()) >= 20
