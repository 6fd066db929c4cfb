"""Shared test setup: the `backend` fixture runs one test body on every array backend.

A test that takes `backend` runs once with numpy and once with cupy (skipped, with the reason,
where CuPy or a GPU is missing). Choose which run with `pytest --backend {numpy,cupy,all}` or the
environment variable TINYGPT_TEST_BACKEND; e.g. `pytest --backend cupy` runs only on the GPU.
Tests that do not take `backend` are untouched.
"""

import functools
import os

import pytest
from tiny_runs import write_corpus

import engine
import engine.backend

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


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small play-like text file made for the tests (never the real Tiny Shakespeare)."""
    return write_corpus(tmp_path_factory.mktemp("data") / "play.txt")
