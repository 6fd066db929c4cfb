"""Shared test setup: fixtures that run one test body on every backend and every kernel rung.

A test that takes `backend` runs once with numpy and once with cupy (skipped, with the reason,
where CuPy or a GPU is missing). Choose which run with `pytest --backend {numpy,cupy,all}` or the
environment variable TINYGPT_TEST_BACKEND; e.g. `pytest --backend cupy` runs only on the GPU.
A test that takes `rung` runs once per rung of the kernel ladder: plain, fast, cpu where the
backend is numpy and cuda where it is cupy (a compiled rung on the other device's arrays is the
fast one, so those runs are deselected); cpu skips, saying why, where Numba is missing.
Tests that take neither are untouched.

Where real CuPy has no usable GPU (or is not installed), the cupy runs run on a stand-in instead:
tests/fake_cupy/cupy, strict like CuPy, its kernels computed by the NumPy references (what it
proves and what it cannot: docs/cuda_kernels.md). It is put first on sys.path here, and on the
PYTHONPATH of the test run's own subprocesses, and nowhere else; TINYGPT_FAKE_CUPY=0 turns it off.
"""

import functools
import os
import sys
from pathlib import Path

import pytest

from tiny_runs import write_corpus
from tinygrad_gpt import engine
from tinygrad_gpt.kernels import cpu
from tinygrad_gpt.kernels.rungs import CPU, CUDA, RUNGS

FAKE_CUPY = Path(__file__).resolve().parent / "fake_cupy"


def _real_cupy_usable():
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # not installed, no driver, no device
        return False


def _use_fake_cupy():
    """Put the stand-in where `import cupy` finds it, for this process and its subprocesses."""
    try:  # NVRTC (tests/test_cuda_compile.py) finds its library through real CuPy: load it first
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception:
        pass
    for name in [m for m in sys.modules if m.split(".")[0] in ("cupy", "cupyx")]:
        del sys.modules[name]
    sys.path.insert(0, str(FAKE_CUPY))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(FAKE_CUPY), *filter(None, [os.environ.get("PYTHONPATH")])])


FAKE = os.environ.get("TINYGPT_FAKE_CUPY") != "0" and not _real_cupy_usable()
if FAKE:
    _use_fake_cupy()


# `python -m pytest` puts the repository root first on sys.path, and there the folder kernels/ (which
# the project imports as tinygrad_gpt.kernels) would stand in for Hugging Face's `kernels`, which
# transformers imports. The project imports through its install, so the root has no place there.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parents[1]]

BACKENDS = ("numpy", "cupy")
CHOICES = BACKENDS + ("all",)


def pytest_addoption(parser):
    parser.addoption(
        "--backend",
        choices=CHOICES,
        default=None,
        help="array backend(s) for tests that take the `backend` fixture (default: env TINYGPT_TEST_BACKEND, else all)",
    )


def _chosen_backends(config):
    choice = config.getoption("--backend") or os.environ.get("TINYGPT_TEST_BACKEND") or "all"
    if choice not in CHOICES:
        raise pytest.UsageError(f"TINYGPT_TEST_BACKEND={choice!r}: choose one of {', '.join(CHOICES)}")
    return BACKENDS if choice == "all" else (choice,)


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", [_param(name) for name in _chosen_backends(metafunc.config)], indirect=True)
    if "rung" in metafunc.fixturenames:
        rungs = [
            pytest.param(name, marks=pytest.mark.skip(reason=cpu.MISSING))
            if name == CPU.name and not cpu.AVAILABLE
            else name
            for name in RUNGS
        ]
        metafunc.parametrize("rung", rungs, indirect=True)


def pytest_collection_modifyitems(config, items):
    """Drop the cuda-rung runs of tests that do not run on cupy and the cpu-rung runs of tests on
    cupy (they would repeat the fast ones)."""
    params = [getattr(item, "callspec", None) and item.callspec.params for item in items]
    repeats = [p and p.get("rung") == (CPU.name if p.get("backend") == "cupy" else CUDA.name) for p in params]
    if any(repeats):
        config.hook.pytest_deselected(items=[item for item, drop in zip(items, repeats) if drop])
        items[:] = [item for item, drop in zip(items, repeats) if not drop]


def _param(name):
    reason = _unavailable(name)
    return pytest.param(name, marks=pytest.mark.skip(reason=reason)) if reason else name


@functools.cache
def _unavailable(name):
    """Why backend `name` cannot run here (BackendError's one line), or None. Probed once a session."""
    previous = engine.backend.name()
    try:
        engine.set_backend(name)
    except engine.BackendError as e:
        return str(e)
    finally:
        engine.set_backend(previous)
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Drop the line number from "backend unavailable" skips, so `-ra` shows one line per file."""
    report = yield
    name = getattr(item, "callspec", None) and item.callspec.params.get("backend")
    if report.skipped and name and _unavailable(name):
        path, _, reason = report.longrepr
        report.longrepr = (path, None, reason)
    return report


@pytest.fixture
def backend(request):
    """The active backend's name for the test's duration; the previous backend comes back after."""
    previous = engine.backend.name()
    engine.set_backend(request.param)
    yield request.param
    engine.set_backend(previous)


@pytest.fixture
def rung(request):
    """The kernel rung's name, chosen for the test's duration; the previous choice comes back after."""
    previous = engine.dispatch.chosen()
    engine.set_kernels(request.param)
    yield request.param
    engine.set_kernels(previous)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small play-like text file made for the tests (never the real Tiny Shakespeare)."""
    return write_corpus(tmp_path_factory.mktemp("data") / "play.txt")
