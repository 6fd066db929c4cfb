"""Helpers for the data / checkpoint / training / CLI tests: a small made-up corpus, tiny training
configs, and running the `tinygpt` command (or any Python) in a subprocess."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tinygrad_gpt.config import preset_config

REPO = Path(__file__).resolve().parent.parent
WORDS = "thou art my sweet lord and fair queen the night is long but love is longer than death".split()


def write_corpus(path, lines=400, seed=0):
    """A play-like text (speaker lines and verse) of ~20 KB, the same for the same seed."""
    rng = random.Random(seed)
    text = "".join(
        f"{rng.choice(['ROMEO', 'JULIET', 'NURSE'])}:\n{' '.join(rng.choices(WORDS, k=7))}.\n\n" for _ in range(lines)
    )
    Path(path).write_text(text, encoding="utf-8")
    return path


def tiny_config(**overrides):
    """The tiny preset made smaller still: a run of a few steps takes a fraction of a second."""
    return preset_config(
        "tiny",
        **{
            "max_iters": 20,
            "eval_interval": 10,
            "eval_iters": 2,
            "log_interval": 1,
            "batch_size": 4,
            "block_size": 16,
            "n_embd": 16,
            **overrides,
        },
    )


# The same as tiny_config, as `tinygpt train` flags.
TINY_FLAGS = [
    "--preset",
    "tiny",
    "--eval-iters",
    "2",
    "--log-interval",
    "1",
    "--batch-size",
    "4",
    "--block-size",
    "16",
    "--n-embd",
    "16",
]


def tinygpt(*args, timeout=120, env=None, **kwargs):
    """Run `python -m tinygrad_gpt ARGS` to completion; the CompletedProcess with text output.
    env: variables to set on top of clean_env()."""
    return subprocess.run(
        [sys.executable, "-m", "tinygrad_gpt", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean_env(), **(env or {})},
        cwd=REPO,
        **kwargs,
    )


def python_output(code, **env):
    """The stdout, stripped, of `python -c CODE` in a fresh process with `env` set on top of this
    environment; the test fails, showing its stderr, if the process does."""
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def start_tinygpt(*args, env=None, **kwargs):
    """Start `python -m tinygrad_gpt ARGS` without waiting (for signal tests); env as for tinygpt.
    The process starts with Ctrl-C's default action whatever this one's (a shell's background job,
    `pytest &`, ignores it, and children inherit that), since the tests send it SIGINT."""
    return subprocess.Popen(
        [sys.executable, "-m", "tinygrad_gpt", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**clean_env(), **(env or {})},
        cwd=REPO,
        preexec_fn=default_sigint,
        **kwargs,
    )


def default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_checkpoint(process, out, timeout=120):
    """`process` (a training run into `out`) once it has written its first checkpoint, so that
    it is inside the training loop; the test fails if it ends or takes longer than `timeout`."""
    deadline = time.monotonic() + timeout
    while not (out / "config.json").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no checkpoint appeared: {process.communicate()[1]}")
        time.sleep(0.01)
    return process


def parent_pid(pid):
    """The parent of process `pid`, read from Linux's /proc (OSError once the process is gone)."""
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])


def clean_env():
    """This environment without the variables that would change what tinygpt reads."""
    return {k: v for k, v in os.environ.items() if k not in ("TINYGPT_DATA", "TINYGPT_BACKEND")}


def assert_one_line_error(result, exit_code, *fragments):
    """The process failed with exit_code and exactly one stderr line holding every fragment."""
    assert result.returncode == exit_code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
