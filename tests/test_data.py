"""Finding the text (flag, env, the shipped Tiny Shakespeare), the character tokenizer, splits and batches."""

import hashlib

import numpy as np
import pytest

from tiny_runs import TINY_FLAGS, tinygpt, write_corpus
from tinygrad_gpt import data
from tinygrad_gpt.data import CharTokenizer, TextDataset, load_dataset, read_text, resolve_data_path
from tinygrad_gpt.errors import DataError


def test_resolution_order_flag_then_env_then_the_shipped_text(monkeypatch):
    monkeypatch.delenv("TINYGPT_DATA", raising=False)
    assert resolve_data_path() == data.TINY_SHAKESPEARE and data.TINY_SHAKESPEARE.is_file()
    monkeypatch.setenv("TINYGPT_DATA", "/env/text.txt")
    assert str(resolve_data_path()) == "/env/text.txt"
    assert str(resolve_data_path("/flag/text.txt")) == "/flag/text.txt"


def test_tiny_shakespeare_ships_whole_and_checked():
    text = data.tiny_shakespeare()
    assert len(text.encode()) == 1_115_394 and text.startswith("First Citizen:")
    assert hashlib.sha256(text.encode()).hexdigest() == data.TINY_SHAKESPEARE_SHA256
    assert len(set(text)) == 65
    assert data.TINY_SHAKESPEARE.stat().st_size < 400_000  # shipped compressed


@pytest.mark.parametrize("damage", ["one byte", "not xz"])
def test_a_damaged_shipped_text_is_refused_in_one_line(monkeypatch, tmp_path, damage):
    packed = bytearray(data.TINY_SHAKESPEARE.read_bytes())
    if damage == "one byte":  # the xz stream may still unpack: the sha256 must catch it
        packed[len(packed) // 2] ^= 1
    else:
        packed = bytearray(b"plain text")
    copy = tmp_path / "tinyshakespeare.txt.xz"
    copy.write_bytes(bytes(packed))
    monkeypatch.setattr(data, "TINY_SHAKESPEARE", copy)
    with pytest.raises(DataError, match="damaged.*--data PATH"):
        data.tiny_shakespeare()


def test_tokenizer_round_trip():
    text = "Hello, world!\nÀ bientôt — ☃"
    tok = CharTokenizer.from_text(text)
    assert tok.vocab == "".join(sorted(set(text))) and tok.vocab_size == len(set(text))
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and ids.max() < tok.vocab_size
    assert tok.decode(ids) == text
    assert CharTokenizer(tok.vocab).encode(text).tolist() == ids.tolist()  # the vocab string is enough
    assert tok.unknown_chars("Hex?") == ["?", "x"]


def test_split_is_first_90_percent_and_last_10_percent():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    ds = TextDataset(text)
    assert ds.tokenizer.decode(ds.splits["train"]) == text[:900]
    assert ds.tokenizer.decode(ds.splits["val"]) == text[900:]


def test_batches_are_next_token_windows_and_reproducible():
    ds = TextDataset("".join(chr(0x4E00 + i) for i in range(2000)))  # distinct, ascending: id == position
    x, y = ds.get_batch("val", 5, 8, np.random.default_rng(3))
    assert x.shape == y.shape == (5, 8) and x.dtype == y.dtype == np.int64
    assert (np.diff(x, axis=1) == 1).all() and (y == x + 1).all()  # contiguous windows, shifted by one
    assert x.min() >= 1800 and y.max() < 2000  # inside the val split
    again = ds.get_batch("val", 5, 8, np.random.default_rng(3))
    other = ds.get_batch("val", 5, 8, np.random.default_rng(4))
    assert (again[0] == x).all() and (again[1] == y).all()
    assert not (other[0] == x).all()


def test_batches_reach_both_ends_of_a_split():
    ds = TextDataset("ab" * 50)  # val has 10 tokens: windows of 9 can start at 0 only
    x, y = ds.get_batch("val", 4, 9, np.random.default_rng(0))
    assert (x == ds.splits["val"][:9]).all() and (y == ds.splits["val"][1:]).all()


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "cannot read data file"),
        (b"", "is empty"),
        (b"caf\xe9 latin-1", "not UTF-8"),
        (b"x" * 60, "too short"),
    ],
)
def test_bad_data_files(tmp_path, content, message):
    path = tmp_path / "text.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(path, block_size=8)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_directory_is_not_a_data_file(tmp_path):
    with pytest.raises(DataError, match="cannot read data file"):
        read_text(tmp_path)


def test_shortest_text_that_fits_a_block(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("ab" * 45)  # 90 characters: val keeps 9 = block_size + 1
    assert len(load_dataset(path, block_size=8).splits["val"]) == 9
    with pytest.raises(DataError, match="too short"):
        load_dataset(path, block_size=9)


def test_text_must_fit_a_given_vocabulary(tmp_path):
    path = write_corpus(tmp_path / "text.txt")
    with pytest.raises(DataError, match="'R'"):
        load_dataset(path, block_size=8, tokenizer=CharTokenizer("abc"))


def test_tinygpt_train_needs_no_data_flag_and_no_network(tmp_path):
    """No --data, no $TINYGPT_DATA (tinygpt() leaves it out): the shipped text, in the first line."""
    result = tinygpt("train", *TINY_FLAGS, "--max-iters", 1, "--out-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert f"data {data.TINY_SHAKESPEARE} (vocab 65)" in result.stdout.splitlines()[0]
