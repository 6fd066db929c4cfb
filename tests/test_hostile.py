"""Hostile files and flags end in one line, a hostile file in bounded memory: absurd configs,
weights that are devices or NaN, huge or binary data, an edited config.json, temperatures that
underflow, flags that would be taken silently."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy

from tiny_runs import REPO, TINY_FLAGS, assert_one_line_error, clean_env, tiny_config, tinygpt
from tinygrad_gpt import GPT, GPTConfig, cli
from tinygrad_gpt.checkpoint import config_digest, load_model, read_checkpoint, save_checkpoint
from tinygrad_gpt.config import preset_config
from tinygrad_gpt.data import CharTokenizer
from tinygrad_gpt.errors import CheckpointError, UsageError
from tinygrad_gpt.sample import sample

VOCAB = "\n abcdefghijklmnopqrstuvwxyz"
PEAK_RSS_LIMIT = 2**30


def char_checkpoint(directory):
    """A tiny character model's checkpoint, saved as a run saves one."""
    config = tiny_config(block_size=8, n_layer=1, n_head=2, n_embd=8)
    model = GPT(GPTConfig(len(VOCAB), 8, 1, 2, 8))
    save_checkpoint(directory, model, CharTokenizer(VOCAB), config, step=1, best_val_loss=None)
    return directory


def edit_config(directory, change, keep_digest=False):
    """Change config.json; with keep_digest, its digest is made to match again (a careful forger),
    else dropped (a checkpoint saved before config.json had one)."""
    path = directory / "config.json"
    config = json.loads(path.read_text())
    change(config)
    config.pop("config_sha256")
    if keep_digest:
        config["config_sha256"] = config_digest(config)
    path.write_text(json.dumps(config))


def measured(*args):
    """Run `tinygpt ARGS` as the only child of a fresh Python: (its CompletedProcess, its peak RSS
    in bytes). The child's address space is capped, so that code without the checks fails the
    test (by its RSS or its message) rather than the machine."""
    code = (
        "import resource, subprocess, sys\n"
        "cap = lambda: resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, 8 * 2**30))\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True, preexec_fn=cap)\n"
        "sys.stderr.write(r.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(r.returncode)\n"
    )
    command = [sys.executable, "-c", code, sys.executable, "-m", "tinygrad_gpt", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=clean_env(), cwd=REPO)
    return result, int(result.stdout.split()[-1]) * 1024  # ru_maxrss is in KiB on Linux


# --- checkpoints ---------------------------------------------------------------------------------


def test_a_config_of_ten_million_layers_is_refused_before_the_model_is_built(tmp_path):
    directory = char_checkpoint(tmp_path / "ckpt")
    edit_config(directory, lambda c: c["model"].update(n_layer=10_000_000))
    result, peak = measured("sample", "--out-dir", directory, "--max-new-tokens", 1)
    assert_one_line_error(result, 1, f"{directory / 'config.json'}: describes a model of", "its weights hold")
    assert peak < PEAK_RSS_LIMIT


def test_weights_that_are_dev_zero_are_refused_in_bounded_memory(tmp_path):
    directory = char_checkpoint(tmp_path / "ckpt")
    (directory / "model.safetensors").unlink()
    (directory / "model.safetensors").symlink_to("/dev/zero")
    result, peak = measured("sample", "--out-dir", directory, "--max-new-tokens", 1)
    assert_one_line_error(result, 1, str(directory / "model.safetensors"))
    assert peak < PEAK_RSS_LIMIT


def test_weights_longer_or_shorter_than_their_header_are_refused(tmp_path):
    directory = char_checkpoint(tmp_path / "ckpt")
    with open(directory / "model.safetensors", "ab") as f:
        f.write(b"\0" * 64)
    with pytest.raises(CheckpointError, match=r"not a valid safetensors file \(\d+ bytes, its header describes \d+\)"):
        load_model(read_checkpoint(directory))


def test_non_finite_weights_are_refused_at_load(tmp_path):
    directory = char_checkpoint(tmp_path / "ckpt")
    path = directory / "model.safetensors"
    tensors = dict(safetensors.numpy.load_file(path))
    tensors["transformer.h.0.ln_1.weight"][3] = np.nan
    safetensors.numpy.save_file(tensors, path, metadata={"format": "pt"})
    sha256 = __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    edit_config(directory, lambda c: c["sha256"].update({"model.safetensors": sha256}), keep_digest=True)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: NaN or infinite values in transformer\.h\.0\.ln_1"):
        load_model(read_checkpoint(directory))


def test_config_json_is_covered_by_its_digest_and_older_checkpoints_still_load(tmp_path):
    directory = char_checkpoint(tmp_path / "ckpt")
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config["train"]["learning_rate"] = 0.5  # a valid value, and a different run
    path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"config\.json: its content does not match its 'config_sha256'"):
        read_checkpoint(directory)
    edit_config(directory, lambda c: None)  # as saved before the digest existed
    assert read_checkpoint(directory).train_config.learning_rate == 0.5


def test_a_reindented_config_json_still_matches_its_digest(tmp_path):
    directory = char_checkpoint(tmp_path / "ckpt")
    path = directory / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()), indent=7, sort_keys=True))
    assert read_checkpoint(directory).step == 1


# --- data ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, fragment",
    [(3 * 2**30, "over the 1 GiB a run reads"), (600 * 2**20, "is not text (a NUL byte at offset 0)")],
    ids=["3 GiB", "600 MiB of NUL bytes"],
)
def test_huge_or_binary_data_is_refused_before_it_is_read(tmp_path, size, fragment):
    data = tmp_path / "data.txt"
    with open(data, "wb") as f:
        f.truncate(size)  # sparse: no disk used
    result, peak = measured("train", "--data", data, "--out-dir", tmp_path / "out", *TINY_FLAGS)
    assert_one_line_error(result, 1, str(data), fragment)
    assert peak < PEAK_RSS_LIMIT


def test_dev_zero_as_data_is_refused_in_bounded_memory(tmp_path):
    result, peak = measured("train", "--data", "/dev/zero", "--out-dir", tmp_path / "out", *TINY_FLAGS)
    assert_one_line_error(result, 1, "/dev/zero")
    assert peak < PEAK_RSS_LIMIT


def test_invalid_utf8_early_in_a_file_is_refused_at_its_offset(tmp_path, corpus):
    data = tmp_path / "data.txt"
    data.write_bytes(b"ROMEO:\n\xff" + corpus.read_bytes())
    result = tinygpt("train", "--data", data, "--out-dir", tmp_path / "out", *TINY_FLAGS)
    assert_one_line_error(result, 1, f"data file {data} is not UTF-8 text (invalid byte at offset 7)")


# --- flags and values ----------------------------------------------------------------------------


def test_min_lr_above_the_learning_rate_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"^min_lr \(1\) must be <= learning_rate \(0\.003\)$"):
        preset_config("tiny", min_lr=1, learning_rate=0.003)
    result = tinygpt("train", "--min-lr", "1", "--learning-rate", "0.003", "--out-dir", tmp_path / "out")
    assert_one_line_error(result, 2, "min_lr (1.0) must be <= learning_rate (0.003)")


def test_an_empty_out_dir_is_refused(tmp_path, monkeypatch, corpus, capsys):
    monkeypatch.chdir(tmp_path)
    flags = ["--data", str(corpus), "--max-iters", "1", "--eval-interval", "1", *TINY_FLAGS]
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--out-dir", "", *flags])
    assert info.value.code == 2
    assert "--out-dir: expected a folder, got an empty name" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_cuda_kernels_on_numpy_are_refused(tmp_path):
    result = tinygpt("gradcheck", "--backend", "numpy", "--kernels", "cuda")
    assert_one_line_error(result, 2, "--kernels cuda runs on the cupy backend only; this run's is numpy")


def test_a_temperature_that_underflows_is_refused(tmp_path):
    model = GPT(GPTConfig(len(VOCAB), 8, 1, 2, 8))
    with pytest.raises(ValueError, match=r"temperature must be >= 1e-06, got 1e-320"):
        next(model.stream(np.zeros((1, 1), np.int64), 1, temperature=1e-320))
    with pytest.raises(UsageError, match=r"--temperature must be >= 1e-06, got 1e-320"):
        sample(tmp_path / "none", temperature=1e-320)


def test_the_smallest_temperature_samples_the_argmax(tmp_path):
    model = GPT(GPTConfig(len(VOCAB), 8, 1, 2, 8), seed=1)
    context = np.array([[1, 2, 3]])
    logits, _ = model(context)
    want = int(np.argmax(logits.numpy()[0, -1]))
    assert [int(t[0]) for t in model.stream(context, 1, temperature=1e-6, seed=0)] == [want]
