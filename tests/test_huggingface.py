"""GPT-2 folders in and out: GPT.from_pretrained gives transformers' logits and greedy tokens on
the same folder, every layout a Hugging Face folder may have loads the same weights, a folder we
cannot serve is refused in one line, and our checkpoints load in transformers."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from hf_folders import (
    bpe_corpus,
    edit_config,
    gpt2_folder,
    torch,
    train_bpe,
    transformers,
    transformers_greedy,
    transformers_logits,
    transformers_model,
)
from tiny_runs import TINY_FLAGS, assert_one_line_error, tiny_config, tinygpt
from tinygrad_gpt import GPT, GPTConfig
from tinygrad_gpt.checkpoint import load_model, read_checkpoint, save_checkpoint
from tinygrad_gpt.data import CharTokenizer
from tinygrad_gpt.errors import CheckpointError

WTE = "transformer.wte.weight"


@pytest.fixture(scope="module")
def corpus_text(tmp_path_factory):
    return bpe_corpus(tmp_path_factory.mktemp("data") / "play.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def bpe(corpus_text):
    return train_bpe(corpus_text)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, bpe):
    return gpt2_folder(tmp_path_factory.mktemp("gpt2"), bpe)


def worst_relative_error(ours, theirs):
    """The largest, over positions, of max |ours - theirs| / max |theirs| along the vocabulary."""
    return float((np.abs(ours - theirs).max(-1) / np.abs(theirs).max(-1)).max())


@pytest.mark.parametrize("dtype, tolerance", [(np.float32, 1e-4), (np.float64, 1e-10)])
def test_logits_equal_transformers(folder, dtype, tolerance):
    ours = GPT.from_pretrained(folder, dtype=dtype)
    ids = np.random.default_rng(0).integers(0, ours.config.vocab_size, (3, 64))
    theirs = transformers_logits(
        transformers_model(folder, torch.float64 if dtype == np.float64 else torch.float32), ids
    )
    got = ours(ids)[0].numpy()
    assert got.dtype == dtype
    assert worst_relative_error(got, theirs) <= tolerance


def test_layer_norm_epsilon_comes_from_the_folder(folder, tmp_path):
    directory = copy_folder(folder, tmp_path)
    edit_config(directory, layer_norm_epsilon=0.5)  # large enough to change every logit
    ours = GPT.from_pretrained(directory, dtype=np.float64)
    ids = np.random.default_rng(2).integers(0, ours.config.vocab_size, (2, 16))
    theirs = transformers_logits(transformers_model(directory, torch.float64), ids)
    assert ours.config.layer_norm_epsilon == 0.5 and worst_relative_error(ours(ids)[0].numpy(), theirs) <= 1e-10
    default = transformers_logits(transformers_model(folder, torch.float64), ids)
    assert worst_relative_error(default, theirs) > 1e-3


def test_greedy_generation_equals_transformers(folder, bpe):
    prompt = np.array([bpe.encode("ROMEO:\nthou art").ids])
    new = 64 - prompt.shape[1]  # up to n_positions: transformers cannot go past it
    ours = GPT.from_pretrained(folder).generate(prompt, new, top_k=1)
    theirs_model = transformers_model(folder)
    theirs = transformers_greedy(theirs_model, prompt, new)
    differ = np.flatnonzero(ours[0] != theirs[0])
    if differ.size:  # allowed only where the two likeliest tokens tie exactly
        first = differ[0]
        logits = transformers_logits(theirs_model, theirs[:, :first])[0, -1]
        assert logits[ours[0, first]] == logits[theirs[0, first]], f"diverged at {first} without a tie"
    assert len(set(ours[0, prompt.shape[1] :].tolist())) > 3  # a run of one token would prove little


def copy_folder(folder, tmp_path):
    return Path(shutil.copytree(folder, tmp_path / "copy"))


def rewrite_weights(directory, change):
    tensors = dict(safetensors.numpy.load_file(directory / "model.safetensors"))
    tensors = change(tensors)
    safetensors.numpy.save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})


def without_prefix(tensors):
    return {name.removeprefix("transformer."): array for name, array in tensors.items()}


def with_head_and_mask_buffers(tensors):
    """What older transformers (and OpenAI's own upload) saved besides the weights."""
    extra = {"lm_head.weight": tensors[WTE]}
    for i in range(2):
        extra[f"h.{i}.attn.bias"] = np.tril(np.ones((64, 64), np.float32))[None, None]
        extra[f"h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    return {**without_prefix(tensors), **extra}


def sharded(directory):
    model = transformers_model(directory)
    (directory / "model.safetensors").unlink()
    model.save_pretrained(directory, max_shard_size="40KB")
    assert len(list(directory.glob("model-*.safetensors"))) > 1


LAYOUTS = {
    "no transformer. prefix": lambda d: rewrite_weights(d, without_prefix),
    "lm_head and attn.bias / masked_bias buffers": lambda d: rewrite_weights(d, with_head_and_mask_buffers),
    "sharded with an index": sharded,
    "float16": lambda d: rewrite_weights(d, lambda t: {k: v.astype(np.float16) for k, v in t.items()}),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_folder_layout_loads_the_same_weights(folder, tmp_path, layout):
    reference = GPT.from_pretrained(folder).state_dict()
    directory = copy_folder(folder, tmp_path)
    LAYOUTS[layout](directory)
    loaded = GPT.from_pretrained(directory).state_dict()
    assert loaded.keys() == reference.keys()
    for name, array in reference.items():
        expected = array.astype(np.float16).astype(np.float32) if layout == "float16" else array
        np.testing.assert_array_equal(loaded[name], expected, err_msg=name)


def drop_tensor(directory):
    rewrite_weights(directory, lambda t: {k: v for k, v in t.items() if k != "transformer.h.1.mlp.c_fc.bias"})


def misshape_tensor(directory):
    rewrite_weights(directory, lambda t: {**t, WTE: t[WTE][:-1]})


def as_bfloat16(directory):
    import safetensors.torch

    tensors = safetensors.torch.load_file(directory / "model.safetensors")
    safetensors.torch.save_file({k: v.to(torch.bfloat16) for k, v in tensors.items()}, directory / "model.safetensors")


def only_pickled_weights(directory):
    (directory / "model.safetensors").rename(directory / "pytorch_model.bin")


REFUSED = {  # what is wrong with the folder: (damage, a fragment of the one-line message)
    "another model type": (lambda d: edit_config(d, model_type="llama"), "model_type is 'llama', not 'gpt2'"),
    "another activation": (lambda d: edit_config(d, activation_function="relu"), "activation_function is 'relu'"),
    "another MLP width": (lambda d: edit_config(d, n_inner=100), "n_inner is 100"),
    "scaled by layer": (lambda d: edit_config(d, scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse"),
    "cross-attention": (lambda d: edit_config(d, add_cross_attention=True), "add_cross_attention"),
    "untied head": (lambda d: edit_config(d, tie_word_embeddings=False), "tie_word_embeddings"),
    "bad sizes": (lambda d: edit_config(d, n_head=5), "n_embd=32 must be divisible by n_head=5"),
    "missing tensor": (drop_tensor, "missing keys: transformer.h.1.mlp.c_fc.bias"),
    "misshapen tensor": (misshape_tensor, f"shape mismatches (given != expected): {WTE} ("),
    "bfloat16": (as_bfloat16, "stored as BF16"),
    "pickled weights only": (only_pickled_weights, "pytorch_model.bin is pickled PyTorch, which is never loaded"),
    "no config": (lambda d: (d / "config.json").unlink(), "cannot read"),
    "config not JSON": (lambda d: (d / "config.json").write_text("{gpt2"), "not valid JSON"),
    "weights not safetensors": (lambda d: (d / "model.safetensors").write_bytes(b"\0" * 64), "not a valid safetensors"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_folder_we_cannot_serve_is_refused_in_one_line(folder, tmp_path, case):
    directory = copy_folder(folder, tmp_path)
    damage, fragment = REFUSED[case]
    damage(directory)
    with pytest.raises(CheckpointError) as info:
        GPT.from_pretrained(directory)
    message = str(info.value)
    assert fragment in message and str(directory) in message and "\n" not in message, message


def test_the_cli_refuses_an_unservable_folder_or_a_longer_context_in_one_line(folder, tmp_path, corpus):
    train = ["train", "--init-from", folder, "--data", corpus, "--out-dir", tmp_path / "out"]
    assert_one_line_error(tinygpt(*train, "--block-size", 65), 2, "--block-size 65 is longer", "64 positions")
    directory = copy_folder(folder, tmp_path)
    edit_config(directory, activation_function="relu")
    assert_one_line_error(tinygpt("sample", "--init-from", directory), 1, "tinygpt: error:", "activation_function")
    assert not (tmp_path / "out").exists()


def greedy_cli(out_dir, prompt, n):
    result = tinygpt("sample", "--out-dir", out_dir, "--prompt", prompt, "--top-k", 1, "--max-new-tokens", n)
    assert result.returncode == 0, result.stderr
    return result.stdout


def transformers_greedy_text(out_dir, prompt, n):
    """What transformers alone makes of out_dir: its model, its tokenizer, greedy decoding."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(out_dir)
    ids = tokenizer(prompt, return_tensors="np").input_ids
    return tokenizer.decode(transformers_greedy(transformers_model(out_dir), ids, n)[0])


def test_our_char_run_loads_in_transformers_and_generates_what_we_generate(tmp_path, corpus):
    out = tmp_path / "out"
    result = tinygpt(
        "train", *TINY_FLAGS, "--max-iters", 300, "--eval-interval", 300, "--data", corpus, "--out-dir", out
    )
    assert result.returncode == 0, result.stderr
    ours = GPT.from_pretrained(out)  # our out-dir is a GPT-2 folder for us too
    ids = np.random.default_rng(1).integers(0, ours.config.vocab_size, (2, 16))
    assert worst_relative_error(ours(ids)[0].numpy(), transformers_logits(transformers_model(out), ids)) <= 1e-4
    prompt = "ROMEO:\nthou"
    text = greedy_cli(out, prompt, 16 - len(prompt))
    assert text == transformers_greedy_text(out, prompt, 16 - len(prompt)) + "\n"
    assert len(set(text[len(prompt) :])) > 2


def test_fine_tuning_lowers_the_val_loss_and_the_result_loads_everywhere(folder, tmp_path, corpus_text):
    data = tmp_path / "play.txt"
    data.write_text(corpus_text, encoding="utf-8")
    out = tmp_path / "out"
    flags = ["--data", data, "--out-dir", out, "--block-size", 32, "--batch-size", 4, "--eval-iters", 4]
    flags += ["--gradient-accumulation-steps", 2]
    result = tinygpt(
        "train", "--init-from", folder, *flags, "--max-iters", 8, "--eval-interval", 4, "--learning-rate", 1e-3
    )
    assert result.returncode == 0, result.stderr
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 4, 8]  # step 0: the pretrained model, before any update
    assert log[-1]["val_loss"] < log[0]["val_loss"] - 0.1
    checkpoint = read_checkpoint(out)
    assert checkpoint.vocab is None and checkpoint.model_config.block_size == 32  # cropped from 64
    assert checkpoint.train_config.gradient_accumulation_steps == 2 and checkpoint.train_config.init_from == str(folder)
    # ours again: sample the out-dir, resume it
    assert tinygpt("sample", "--out-dir", out, "--max-new-tokens", 5).returncode == 0
    resumed = tinygpt("train", "--resume", *flags, "--max-iters", 10)
    assert resumed.returncode == 0 and read_checkpoint(out).step == 10, resumed.stderr
    # and transformers': the model with the BPE tokenizer, greedy text as ours
    prompt = "JULIET:\n"
    assert greedy_cli(out, prompt, 12) == transformers_greedy_text(out, prompt, 12) + "\n"


def test_a_model_transformers_cannot_express_is_saved_for_us_only(tmp_path):
    model = GPT(GPTConfig(vocab_size=5, block_size=8, n_layer=1, n_head=2, n_embd=8, bias=False))
    save_checkpoint(tmp_path, model, CharTokenizer("abcde"), tiny_config(), step=1, best_val_loss=None)
    assert "model_type" not in json.loads((tmp_path / "config.json").read_text())
    assert not load_model(read_checkpoint(tmp_path)).config.bias
    with pytest.raises((ValueError, OSError, RuntimeError)):  # read as a default GPT-2: sizes mismatch
        transformers.GPT2LMHeadModel.from_pretrained(tmp_path)
