"""The model-level suites once more with CuPy as the backend every model starts on: on a GPU where
one is usable, else on the strict stand-in of tests/fake_cupy. Their tests take no `backend`
fixture (they run on numpy in the main run), so they are run here in a pytest of their own."""

import os
import subprocess
import sys

import pytest

from helpers import cupy_module
from tiny_runs import REPO

SUITES = ["test_model.py", "test_nn.py", "test_optim.py", "test_checkpoint.py", "test_train.py", "test_sample.py"]


@pytest.mark.skipif(cupy_module() is None, reason="CuPy is not usable here, nor its stand-in")
def test_the_model_level_suites_pass_on_cupy():
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(f"tests/{s}" for s in SUITES)]
    env = {**os.environ, "TINYGPT_BACKEND": "cupy"}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
