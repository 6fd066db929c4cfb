"""Crashes, Ctrl-C and divergence, on the real command in subprocesses: a checkpoint is always
usable afterwards, and a resumed run ends exactly where an uninterrupted one does."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_runs import TINY_FLAGS, assert_one_line_error, parent_pid, start_tinygpt, tinygpt, wait_for_checkpoint

FLAGS = [*TINY_FLAGS, "--eval-interval", 5, "--max-iters", 300]
STATE_FILES = ("model.safetensors", "optimizer.safetensors", "config.json")


@pytest.fixture(scope="module")
def straight(tmp_path_factory, corpus):
    """The uninterrupted run that the interrupted ones must reproduce."""
    out = tmp_path_factory.mktemp("straight") / "out"
    result = tinygpt("train", *FLAGS, "--data", corpus, "--out-dir", out)
    assert result.returncode == 0, result.stderr
    return out


def started_run(out, corpus):
    """A training process that has written its first checkpoint (so it is inside the loop)."""
    return wait_for_checkpoint(start_tinygpt("train", *FLAGS, "--data", corpus, "--out-dir", out), out)


def state(out):
    return {name: (out / name).read_bytes() for name in STATE_FILES}


def losses(out):
    return [
        {k: v for k, v in json.loads(line).items() if k != "elapsed_s"}
        for line in (out / "log.jsonl").read_text().splitlines()
    ]


def test_sigkill_leaves_a_checkpoint_to_sample_and_resume(tmp_path, corpus, straight):
    out = tmp_path / "out"
    process = started_run(out, corpus)
    process.kill()  # SIGKILL: no handler runs, whatever the process was doing
    process.communicate()
    assert process.returncode == -signal.SIGKILL

    sample = tinygpt("sample", "--out-dir", out, "--max-new-tokens", 20)
    assert sample.returncode == 0 and len(sample.stdout) == 1 + 20 + 1, sample.stderr
    resumed = tinygpt("train", "--out-dir", out, "--resume", "--data", corpus)
    assert resumed.returncode == 0, resumed.stderr
    assert losses(out) == losses(straight)
    assert state(out) == state(straight)


def test_sigint_saves_a_checkpoint_and_exits_130(tmp_path, corpus, straight):
    out = tmp_path / "out"
    process = started_run(out, corpus)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert process.returncode == 130, stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    step = json.loads((out / "config.json").read_text())["step"]
    assert f"interrupted at step {step}" in stderr and "--resume" in stderr

    resumed = tinygpt("train", "--out-dir", out, "--resume", "--data", corpus)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {step}" in resumed.stdout
    assert losses(out) == losses(straight) and state(out) == state(straight)


def children(pid):
    """The process ids whose parent is `pid` (Linux's /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and parent_pid(entry.name) == pid:
                found.append(int(entry.name))
        except (OSError, ValueError):  # gone meanwhile
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker processes are forked on Linux only")
def test_a_killed_worker_process_ends_the_run_in_one_line_and_the_checkpoint_loads(tmp_path, corpus):
    out = tmp_path / "out"
    env = {"TINYGPT_CPU_THREADS": "2", "TINYGPT_CPU_WORKERS": "processes"}
    process = wait_for_checkpoint(start_tinygpt("train", *FLAGS, "--data", corpus, "--out-dir", out, env=env), out)
    (worker,) = children(process.pid)
    os.kill(worker, signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip("the run finished before the worker was killed")
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert_one_line_error(result, 1, "a data-parallel worker process ended (exit code -9)")
    sample = tinygpt("sample", "--out-dir", out, "--max-new-tokens", 5)
    assert sample.returncode == 0, sample.stderr


def test_divergence_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path, corpus):
    out = tmp_path / "out"
    first = tinygpt(
        "train",
        *TINY_FLAGS,
        "--max-iters",
        10,
        "--lr-decay-iters",
        20,
        "--eval-interval",
        5,
        "--data",
        corpus,
        "--out-dir",
        out,
    )
    assert first.returncode == 0, first.stderr
    good, log = state(out), (out / "log.jsonl").read_text()

    # step 10 takes a step of ~1e30 (Adam steps are about lr in size): step 11's loss overflows
    result = tinygpt(
        "train", "--out-dir", out, "--resume", "--data", corpus, "--max-iters", 20, "--learning-rate", 1e30
    )
    assert_one_line_error(result, 1, "tinygpt: error:", "not finite at step 11;", "--learning-rate")
    assert state(out) == good and (out / "log.jsonl").read_text() == log
