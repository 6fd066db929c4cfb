"""Hostile Hugging Face folders end in one line naming the file, a hostile file in bounded
memory: a garbage or oversized tokenizer.json, a shard index pointing outside the folder, two
names for one weight, NaN weights, an absurd config.json, weights that are /dev/zero."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from hf_folders import bpe_corpus, gpt2_folder, train_bpe, transformers_model
from test_hostile import PEAK_RSS_LIMIT, measured
from tiny_runs import assert_one_line_error
from tinygrad_gpt import GPT
from tinygrad_gpt.errors import CheckpointError, TinyGPTError
from tinygrad_gpt.hf.bpe import BPETokenizer
from tinygrad_gpt.hf.gpt2 import pretrained_tokenizer

WTE = "transformer.wte.weight"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    text = bpe_corpus(tmp_path_factory.mktemp("data") / "play.txt").read_text(encoding="utf-8")
    return gpt2_folder(tmp_path_factory.mktemp("gpt2"), train_bpe(text))


@pytest.fixture
def copy(folder, tmp_path):
    return Path(shutil.copytree(folder, tmp_path / "copy"))


def rewrite_weights(directory, change):
    tensors = change(dict(safetensors.numpy.load_file(directory / "model.safetensors")))
    safetensors.numpy.save_file(tensors, directory / "model.safetensors", metadata={"format": "pt"})


def rewrite_json(path, change):
    content = json.loads(path.read_text())
    change(content)
    path.write_text(json.dumps(content))


def test_a_garbage_tokenizer_json_is_named(copy):
    (copy / "tokenizer.json").write_bytes(b"\xff\xfe garbage")
    with pytest.raises(TinyGPTError, match=rf"^{copy / 'tokenizer.json'}: not UTF-8 text"):
        BPETokenizer.from_folder(copy)


def test_an_oversized_tokenizer_json_is_refused_before_it_is_read(copy):
    with open(copy / "tokenizer.json", "ab") as f:
        f.truncate(65 * 2**20)
    with pytest.raises(TinyGPTError, match=r"tokenizer\.json: \d+ bytes; a file of this kind is 64 MiB at most"):
        BPETokenizer.from_folder(copy)


def test_a_tokenizer_with_an_id_past_the_models_vocabulary_is_refused_at_load(copy):
    def move_an_id(tokenizer):  # the count of tokens stays the model's; one id lies beyond it
        vocab = tokenizer["model"]["vocab"]
        vocab[next(token for token, i in vocab.items() if i == 100)] = 5000

    rewrite_json(copy / "tokenizer.json", move_an_id)
    with pytest.raises(CheckpointError, match=r"its tokenizer has ids up to 5000, past its model's \d+ tokens"):
        pretrained_tokenizer(copy)


def test_two_names_for_one_weight_are_refused(copy):
    rewrite_weights(copy, lambda t: {**t, "wte.weight": t[WTE] + 1})
    with pytest.raises(CheckpointError, match=rf"model\.safetensors: (wte\.weight and {WTE}|{WTE} and wte\.weight)"):
        GPT.from_pretrained(copy)


def test_non_finite_pretrained_weights_are_refused(copy):
    def one_infinity(tensors):
        wte = tensors[WTE].copy()
        wte[3, 7] = np.inf
        return {**tensors, WTE: wte}

    rewrite_weights(copy, one_infinity)
    with pytest.raises(CheckpointError, match=rf"model\.safetensors: {WTE} holds NaN or infinite values"):
        GPT.from_pretrained(copy)


@pytest.mark.parametrize("outside", ["../../etc/passwd", "/etc/passwd"])
def test_a_shard_index_naming_a_file_outside_the_folder_is_refused(copy, outside):
    model = transformers_model(copy)
    (copy / "model.safetensors").unlink()
    model.save_pretrained(copy, max_shard_size="40KB")
    index = copy / "model.safetensors.index.json"
    rewrite_json(index, lambda c: c["weight_map"].update({WTE: outside}))
    with pytest.raises(CheckpointError, match=rf"^{index}: names a file outside {copy}: {outside}$"):
        GPT.from_pretrained(copy)


def test_an_absurd_config_is_refused_before_the_model_is_built(copy):
    rewrite_json(copy / "config.json", lambda c: c.update(n_layer=10_000_000))
    result, peak = measured("sample", "--init-from", copy, "--max-new-tokens", 1)
    assert_one_line_error(result, 1, f"{copy / 'config.json'}: describes a model of", "its weights hold")
    assert peak < PEAK_RSS_LIMIT


def test_weights_that_are_dev_zero_are_refused_in_bounded_memory(copy):
    (copy / "model.safetensors").unlink()
    (copy / "model.safetensors").symlink_to("/dev/zero")
    result, peak = measured("sample", "--init-from", copy, "--max-new-tokens", 1)
    assert_one_line_error(result, 1, str(copy / "model.safetensors"))
    assert peak < PEAK_RSS_LIMIT
