"""Nothing lost at the seams, on the real command in subprocesses: one writer per out-dir, SIGTERM
saves as Ctrl-C does, a stopped worker process or rank never hangs the run, files that are not
regular files are refused before they are read, and saves clean up after killed ones and stay
inside the out-dir."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from test_distributed import needs_mpi, rank_pid, started_job
from test_reliability import children
from tiny_runs import REPO, TINY_FLAGS, assert_one_line_error, start_tinygpt, tinygpt, wait_for_checkpoint

# a run that goes on until the test stops it
ENDLESS = [*TINY_FLAGS, "--eval-interval", 5, "--max-iters", 1_000_000]
FOR_EVER = ["--max-iters", 1_000_000]  # given after test_distributed.started_job's flags, it replaces their 300
WORKER_PROCESSES = {"TINYGPT_CPU_THREADS": "2", "TINYGPT_CPU_WORKERS": "processes"}
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, forks worker processes")


def finished(process, timeout=120):
    """The CompletedProcess of a started process, once it ends (killed if it takes longer)."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # all of its processes: a stopped worker or rank left behind would hold its pipes open
        for pid in [*descendants(process.pid), process.pid]:
            kill(pid)
        pytest.fail(f"still running after {timeout} s: {process.communicate(timeout=60)[1]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def endless_run(out, corpus, env=None):
    return wait_for_checkpoint(start_tinygpt("train", *ENDLESS, "--data", corpus, "--out-dir", out, env=env), out)


def descendants(pid):
    """The processes below pid (Linux's /proc), found before any of them is killed."""
    found = children(pid)
    return [*found, *(grandchild for child in found for grandchild in descendants(child))]


def kill(pid):
    """SIGKILL to pid, if it is still there (the run may have ended it)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def saved_step(out):
    return json.loads((out / "config.json").read_text())["step"]


def test_a_second_run_on_a_busy_out_dir_is_refused_naming_the_holder(tmp_path, corpus):
    out = tmp_path / "out"
    first = endless_run(out, corpus)
    try:
        for args in (["--resume"], [*TINY_FLAGS]):
            second = tinygpt("train", "--out-dir", out, "--data", corpus, *args)
            assert_one_line_error(second, 1, f"{out} is in use by another training run (pid {first.pid})")
        sample = tinygpt("sample", "--out-dir", out, "--max-new-tokens", 5)  # readers take no lock
        assert sample.returncode == 0, sample.stderr
        assert first.poll() is None  # the holder trains on
    finally:
        first.kill()  # SIGKILL: the kernel drops its lock
        first.communicate()
    resumed = tinygpt("train", "--out-dir", out, "--resume", "--data", corpus, "--max-iters", saved_step(out) + 1)
    assert resumed.returncode == 0, resumed.stderr


def test_a_refused_run_writes_nothing(tmp_path, corpus):
    out = tmp_path / "out"
    first = endless_run(out, corpus)
    first.send_signal(signal.SIGSTOP)  # so that what is on disk holds still
    try:
        before = {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()}
        second = tinygpt("train", "--out-dir", out, "--resume", "--data", corpus)
        assert second.returncode == 1, second.stderr
        assert {path.name: path.read_bytes() for path in out.iterdir() if path.is_file()} == before
    finally:
        first.kill()
        first.communicate()


def test_sigterm_saves_a_checkpoint_and_exits_143(tmp_path, corpus):
    out = tmp_path / "out"
    process = endless_run(out, corpus)
    process.send_signal(signal.SIGTERM)
    result = finished(process)
    step = saved_step(out)
    assert_one_line_error(result, 143, f"tinygpt: terminated at step {step};", "resume with:", "--resume")
    resumed = tinygpt("train", "--out-dir", out, "--resume", "--data", corpus, "--max-iters", step + 1)
    assert resumed.returncode == 0 and f"resuming at step {step}" in resumed.stdout, resumed.stderr


@linux_only
def test_sigterm_to_the_process_group_saves_with_worker_processes(tmp_path, corpus):
    """What systemd or a scheduler does: SIGTERM to every process of the run, workers included."""
    out = tmp_path / "out"
    process = wait_for_checkpoint(
        start_tinygpt(
            "train", *ENDLESS, "--data", corpus, "--out-dir", out, env=WORKER_PROCESSES, start_new_session=True
        ),
        out,
    )
    assert children(process.pid)  # the shards' worker process is there
    os.killpg(process.pid, signal.SIGTERM)
    result = finished(process)
    assert_one_line_error(result, 143, f"terminated at step {saved_step(out)};")


def test_ctrl_c_while_starting_up_is_one_line(tmp_path):
    """Ctrl-C while the command imports its modules (before any handler of ours could be set):
    delivered deterministically when the engine starts importing."""
    code = (
        "import importlib.abc, runpy, signal, sys\n"
        "class Interrupt(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'tinygrad_gpt.engine':\n"
        "            signal.raise_signal(signal.SIGINT)\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "sys.argv = ['tinygpt', 'train', '--out-dir', sys.argv[1]]\n"
        "runpy.run_module('tinygrad_gpt', run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, tmp_path / "out"], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert_one_line_error(result, 130, "tinygpt: interrupted")
    assert not (tmp_path / "out").exists()


@linux_only
def test_a_stopped_worker_process_ends_the_run_at_the_step_timeout(tmp_path, corpus):
    out = tmp_path / "out"
    process = wait_for_checkpoint(
        start_tinygpt("train", *ENDLESS, "--step-timeout", 3, "--data", corpus, "--out-dir", out, env=WORKER_PROCESSES),
        out,
    )
    (worker,) = children(process.pid)
    os.kill(worker, signal.SIGSTOP)
    try:
        result = finished(process)
    finally:
        kill(worker)
    assert_one_line_error(result, 1, f"worker process {worker} gave no answer within 3 s (--step-timeout)")
    sample = tinygpt("sample", "--out-dir", out, "--max-new-tokens", 5)
    assert sample.returncode == 0, sample.stderr


@linux_only
def test_the_first_ctrl_c_ends_a_run_stuck_on_a_stopped_worker(tmp_path, corpus):
    out = tmp_path / "out"
    process = endless_run(out, corpus, env=WORKER_PROCESSES)  # the default step timeout: far away
    (worker,) = children(process.pid)
    os.kill(worker, signal.SIGSTOP)
    try:
        process.send_signal(signal.SIGINT)
        result = finished(process, timeout=60)
    finally:
        kill(worker)
    assert_one_line_error(result, 130, f"interrupted while worker process {worker} had stalled")


def ended_with_rank_1_stopped(job, then=lambda: None):
    """The job's result once it ends, rank 1 stopped (SIGSTOP) and `then` done; its stderr lines
    but mpiexec's own."""
    stopped = rank_pid(job, 1)
    os.kill(stopped, signal.SIGSTOP)
    try:
        then()
        result = finished(job, timeout=90)
    finally:
        kill(stopped)
    return result, ours(result)


def ours(result):
    return [line for line in result.stderr.splitlines() if not line.startswith("[mpiexec@")]


@needs_mpi
@linux_only
def test_a_stopped_rank_ends_the_job_at_the_step_timeout(tmp_path, corpus):
    result, lines = ended_with_rank_1_stopped(started_job(tmp_path / "out", corpus, *FOR_EVER, "--step-timeout", 3))
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "rank 0 waited 3 s (--step-timeout) for the other ranks" in lines[0]


@needs_mpi
@linux_only
def test_the_first_ctrl_c_ends_a_job_stuck_on_a_stopped_rank(tmp_path, corpus):
    """Rank 0 waits in MPI's C code, where Python runs no handler: its watchdog hears the signal
    and, the wait going on far longer than the waits before it, ends the job long before the
    step timeout."""
    job = started_job(tmp_path / "out", corpus, *FOR_EVER, "--step-timeout", 600)

    def ctrl_c():
        time.sleep(1)  # rank 0 is waiting for rank 1 by now
        job.send_signal(signal.SIGINT)  # mpiexec hands it on: rank 1 is stopped, rank 0 in a collective

    result, lines = ended_with_rank_1_stopped(job, then=ctrl_c)
    assert result.returncode == 130 and len(lines) == 1, result.stderr
    assert "SIGINT while rank 0 waited for the other ranks" in lines[0]


@needs_mpi
def test_sigterm_to_mpiexec_saves_once_and_ends_every_rank(tmp_path, corpus):
    out = tmp_path / "out"
    job = started_job(out, corpus, *FOR_EVER)
    job.send_signal(signal.SIGTERM)
    result = finished(job, timeout=90)
    lines = ours(result)
    assert result.returncode == 143 and len(lines) == 1, result.stderr
    assert f"terminated at step {saved_step(out)};" in lines[0] and "mpiexec -n 2 tinygpt train" in lines[0]


@pytest.fixture
def trained(tmp_path, corpus):
    out = tmp_path / "out"
    result = tinygpt("train", *TINY_FLAGS, "--max-iters", 2, "--eval-interval", 1, "--data", corpus, "--out-dir", out)
    assert result.returncode == 0, result.stderr
    return out


def test_a_fifo_as_data_is_refused_before_it_is_read(tmp_path):
    fifo = tmp_path / "data.txt"
    os.mkfifo(fifo)
    result = tinygpt("train", *TINY_FLAGS, "--data", fifo, "--out-dir", tmp_path / "out", timeout=60)
    assert_one_line_error(result, 1, f"{fifo}: a FIFO, not a regular file")


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])
def test_a_fifo_in_a_checkpoint_is_refused_before_it_is_read(trained, name):
    (trained / name).unlink()
    os.mkfifo(trained / name)
    result = tinygpt("sample", "--out-dir", trained, "--max-new-tokens", 5, timeout=60)
    assert_one_line_error(result, 1, f"{trained / name}", "not a regular file")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_a_fifo_in_a_pretrained_folder_is_refused(trained, name):
    """--init-from reads a Hugging Face folder (ours is one too)."""
    (trained / name).unlink()
    os.mkfifo(trained / name)
    result = tinygpt("sample", "--init-from", trained, "--max-new-tokens", 5, timeout=60)
    assert_one_line_error(result, 1, f"{trained / name}")


def test_a_save_removes_the_temp_files_of_killed_saves_and_only_those(trained, corpus):
    ours = [".model.safetensors.k2_x9abq.tmp", ".config.json.0123abcd.tmp"]
    others = [".model.safetensors.tmp", "model.safetensors.k2_x9abq.tmp", ".notes.0123abcd.tmp", "my.tmp"]
    for name in ours + others:
        (trained / name).write_bytes(b"half a save")
    resumed = tinygpt("train", "--out-dir", trained, "--resume", "--data", corpus, "--max-iters", 3)
    assert resumed.returncode == 0, resumed.stderr
    assert not any((trained / name).exists() for name in ours)
    assert all((trained / name).read_bytes() == b"half a save" for name in others)


@pytest.mark.parametrize("name", [".previous", "best", "loss.png"])
def test_a_symlink_out_of_the_out_dir_is_refused(trained, corpus, tmp_path, name):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    if (trained / name).is_dir():
        shutil.rmtree(trained / name)
    else:
        (trained / name).unlink(missing_ok=True)
    (trained / name).symlink_to(outside if name != "loss.png" else outside / "loss.png")
    log = (trained / "log.jsonl").read_bytes()
    resumed = tinygpt("train", "--out-dir", trained, "--resume", "--data", corpus, "--max-iters", 4)
    assert_one_line_error(resumed, 1, f"{trained / name}: a symbolic link", "remove the link")
    assert list(outside.iterdir()) == [] and (trained / "log.jsonl").read_bytes() == log
