"""The code stays clean under ruff (lint and format, configured in pyproject.toml): a new finding
fails the suite, and so CI."""

import importlib.util
import subprocess
import sys

import pytest

from tiny_runs import REPO


def ruff(*args):
    return subprocess.run([sys.executable, "-m", "ruff", *args], capture_output=True, text=True, cwd=REPO)


pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ruff") is None, reason='ruff is not installed (pip install -e ".[test]" brings it)'
)


def test_ruff_finds_nothing():
    result = ruff("check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_changes_nothing():
    result = ruff("format", "--check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr
