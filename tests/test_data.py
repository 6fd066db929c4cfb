"""Finding the text (flag, env, cache, download), the character tokenizer, splits and batches."""

import hashlib

import numpy as np
import pytest

from tiny_runs import write_corpus
from tinygrad_gpt import data
from tinygrad_gpt.data import CharTokenizer, TextDataset, load_dataset, read_text, resolve_data_path
from tinygrad_gpt.errors import DataError


@pytest.fixture
def no_env(monkeypatch, tmp_path):
    """No $TINYGPT_DATA, and a cache folder of our own (empty)."""
    monkeypatch.delenv("TINYGPT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def serve(monkeypatch, path, sha256=None):
    """Make the 'download' fetch path through a file:// URL, expecting sha256 (default: its own)."""
    monkeypatch.setattr(data, "DATA_URL", path.as_uri())
    monkeypatch.setattr(data, "DATA_SHA256", sha256 or hashlib.sha256(path.read_bytes()).hexdigest())


def test_resolution_order_flag_then_env_then_cache(no_env, monkeypatch):
    cached = data.cache_path()
    cached.parent.mkdir(parents=True)
    cached.write_text("cached text")
    assert resolve_data_path() == cached
    monkeypatch.setenv("TINYGPT_DATA", "/env/text.txt")
    assert str(resolve_data_path()) == "/env/text.txt"
    assert str(resolve_data_path("/flag/text.txt")) == "/flag/text.txt"


def test_cache_defaults_to_home_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.cache_path() == tmp_path / ".cache" / "tinygrad_gpt" / "tinyshakespeare.txt"


def test_download_fills_the_cache_once(no_env, monkeypatch):
    source = write_corpus(no_env / "remote.txt")
    serve(monkeypatch, source)
    path = resolve_data_path()
    assert path == data.cache_path() and path.read_bytes() == source.read_bytes()
    source.unlink()  # a second call must not download again
    assert resolve_data_path() == path
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


def test_download_with_wrong_checksum_is_not_cached(no_env, monkeypatch):
    serve(monkeypatch, write_corpus(no_env / "remote.txt"), sha256="0" * 64)
    with pytest.raises(DataError, match="sha256.*--data"):
        resolve_data_path()
    cache_dir = data.cache_path().parent
    assert not cache_dir.exists() or not any(cache_dir.iterdir())


def test_no_network_and_no_file_says_how_to_pass_data(no_env, monkeypatch):
    serve(monkeypatch, no_env / "unreachable.txt", sha256="0" * 64)
    with pytest.raises(DataError, match="could not download.*--data PATH"):
        resolve_data_path()


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
