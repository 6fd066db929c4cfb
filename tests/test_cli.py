"""The `tinygpt` command end to end, in subprocesses: train, sample, bench, and one-line errors."""

import importlib.util
import json
import shutil
import subprocess
import sys

import pytest

from helpers import cupy_module
from tiny_runs import TINY_FLAGS, assert_one_line_error, tinygpt
from tinygrad_gpt.errors import TinyGPTError
from tinygrad_gpt.hf.gpt2 import resolve


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus):
    """An out-dir trained for 20 steps through the CLI."""
    out = tmp_path_factory.mktemp("run") / "out"
    result = tinygpt("train", *TINY_FLAGS, "--max-iters", 20, "--eval-interval", 10, "--data", corpus, "--out-dir", out)
    assert result.returncode == 0, result.stderr
    assert "step 20: train loss" in result.stdout and "sample after 20 steps" in result.stdout
    return out


def test_train_writes_checkpoint_log_and_best(trained):
    config = json.loads((trained / "config.json").read_text())
    assert config["step"] == 20 and config["model"]["n_embd"] == 16
    assert [json.loads(line)["step"] for line in (trained / "log.jsonl").read_text().splitlines()] == [10, 20]
    assert (trained / "model.safetensors").exists() and (trained / "optimizer.safetensors").exists()
    assert (trained / "best" / "model.safetensors").exists()


def test_sample_streams_the_prompt_and_new_characters(trained):
    result = tinygpt("sample", "--out-dir", trained, "--prompt", "ROMEO:", "--max-new-tokens", 50, "--seed", 3)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ROMEO:") and len(result.stdout) == len("ROMEO:") + 50 + 1
    again = tinygpt("sample", "--out-dir", trained, "--prompt", "ROMEO:", "--max-new-tokens", 50, "--seed", 3)
    assert again.stdout == result.stdout
    best = tinygpt("sample", "--out-dir", trained, "--best", "--max-new-tokens", 5, "--top-k", 0)
    assert best.returncode == 0 and len(best.stdout) == 1 + 5 + 1


def test_prompt_longer_than_the_context_is_cropped(trained):
    prompt = "ROMEO:\n" * 10  # 70 characters, block_size 16
    result = tinygpt("sample", "--out-dir", trained, "--prompt", prompt, "--max-new-tokens", 5)
    assert result.returncode == 0 and result.stdout.startswith(prompt) and len(result.stdout) == 70 + 5 + 1


@pytest.mark.skipif(shutil.which("tinygpt") is None, reason="the package is not installed (pip install -e .)")
def test_console_script(trained):
    result = subprocess.run(
        ["tinygpt", "sample", "--out-dir", trained, "--max-new-tokens", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and len(result.stdout) == 1 + 3 + 1


def test_bench_json_last_line(tmp_path):
    result = tinygpt("bench", "--preset", "tiny", "--iters", 2, "--warmup", 1, "--json")
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    assert stats["preset"] == "tiny" and stats["backend"] == "numpy" and stats["device"] == "cpu"
    assert stats["ms_per_iter"] > 0 and stats["tokens_per_s"] > 0 and stats["peak_mem_mb"] > 0
    assert "ms/iter" in result.stdout


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
        (["train", "--preset", "huge"], "invalid choice: 'huge'"),
        (["train", "--max-iters", "many"], "invalid int value"),
        (["train", "--backend", "tpu"], "invalid choice: 'tpu'"),
        (["fly"], "invalid choice: 'fly'"),
        ([], "required"),
        (["train", "--max-iters", "0"], "max_iters must be a positive integer"),
        (["train", "--dropout", "1.5"], "dropout must be a number in [0, 1)"),
        (["bench", "--iters", "0"], "--iters must be >= 1"),
        (["bench", "--n-embd", "64", "--n-head", "3"], "must be divisible by n_head=3"),
        (["sample", "--temperature", "0"], "--temperature must be >= 1e-06"),
        (["train", "--preset", "finetune"], "the finetune preset starts from a pretrained model"),
        (["train", "--init-from", "gpt2", "--n-layer", "2"], "--n-layer: the model's shape comes from --init-from"),
        (["train", "--init-from", "gpt2", "--resume"], "--init-from starts a new run"),
        (["train", "--gradient-accumulation-steps", "0"], "gradient_accumulation_steps must be a positive integer"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args, fragment):
    assert_one_line_error(tinygpt(*args), 2, fragment)


def test_model_shape_error_is_a_usage_error(tmp_path, corpus):
    result = tinygpt("train", *TINY_FLAGS, "--n-head", 3, "--data", corpus, "--out-dir", tmp_path / "out")
    assert_one_line_error(result, 2, "must be divisible by n_head=3")


def test_prompt_with_unknown_characters(trained):
    result = tinygpt("sample", "--out-dir", trained, "--prompt", "ROMEO: Zounds! ☃")
    assert_one_line_error(result, 2, "vocabulary lacks", "'Z'", "'☃'")
    assert result.stdout == ""


@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "cannot read data file"),
        (b"\xff\xfe not utf-8", "not UTF-8"),
        (b"too short", "too short"),
    ],
)
def test_bad_data_file_is_a_runtime_error(tmp_path, content, fragment):
    path = tmp_path / "text.txt"
    if content is not None:
        path.write_bytes(content)
    result = tinygpt("train", *TINY_FLAGS, "--data", path, "--out-dir", tmp_path / "out")
    assert_one_line_error(result, 1, "tinygpt: error:", fragment, str(path))


def test_runtime_errors_of_sample_and_out_dir(tmp_path, corpus):
    assert_one_line_error(
        tinygpt("sample", "--out-dir", tmp_path / "nothing"), 1, "tinygpt: error:", "config.json", "cannot read"
    )
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = tinygpt("train", *TINY_FLAGS, "--data", corpus, "--out-dir", blocker / "out")
    assert_one_line_error(result, 1, "tinygpt: error:", str(blocker))


def test_init_from_a_hub_name_without_huggingface_hub_says_how_to_get_the_folder(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # importing it now raises ImportError
    how = "hf download openai-community/gpt2 config.json model.safetensors tokenizer.json --local-dir DIR"
    with pytest.raises(TinyGPTError, match=how) as info:
        resolve("gpt2")
    assert "huggingface_hub is not installed" in str(info.value)


@pytest.mark.skipif(importlib.util.find_spec("huggingface_hub") is None, reason="huggingface_hub is not installed")
def test_init_from_a_hub_name_offline_is_one_line(tmp_path):
    offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}  # an empty cache, and no network
    result = tinygpt("sample", "--init-from", "gpt2", env=offline)
    assert_one_line_error(result, 1, "openai-community/gpt2 could not be fetched", "hf download")
    result = tinygpt("sample", "--init-from", "./no/such/folder", env=offline)
    assert_one_line_error(result, 1, "no such folder, nor a Hugging Face Hub model name")


@pytest.mark.skipif(
    cupy_module() is not None and not getattr(cupy_module(), "IS_STAND_IN", False),
    reason="CuPy and a GPU are usable here",
)
def test_unavailable_backend_is_a_runtime_error():
    # where the stand-in serves, it is told to show no GPU
    result = tinygpt("bench", "--preset", "tiny", "--backend", "cupy", env={"FAKE_CUPY_DEVICES": "0"})
    assert_one_line_error(result, 1, "tinygpt: error:", "backend 'cupy'")
