"""The training text (Tiny Shakespeare by default, any UTF-8 file works), a character-level
tokenizer, and random (x, y) batches of the train or validation split."""

import hashlib
import http.client
import json
import os
import urllib.request
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tinygrad_gpt.errors import DataError
from tinygrad_gpt.fileio import atomic_write

DATA_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
DATA_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
HOW_TO_PASS = "pass a UTF-8 text file with --data PATH (or set TINYGPT_DATA)"
TRAIN_FRACTION = 0.9  # the first 90% trains, the last 10% validates


def cache_path():
    """Where the downloaded Tiny Shakespeare is kept: $XDG_CACHE_HOME/tinygrad_gpt/, else ~/.cache."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "tinygrad_gpt" / "tinyshakespeare.txt"


def resolve_data_path(path=None):
    """The text to train on: `path` (--data), else $TINYGPT_DATA, else the cached download,
    downloading it first if it is not cached yet."""
    if path is not None:
        return Path(path)
    if os.environ.get("TINYGPT_DATA"):
        return Path(os.environ["TINYGPT_DATA"])
    cached = cache_path()
    if not cached.is_file():
        download(DATA_URL, cached, DATA_SHA256)
    return cached


def download(url, dest, sha256):
    """Fetch url into dest, showing progress; the file appears only if its sha256 matches."""
    chunks = []
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"downloading {dest.name}") as bar:
                while chunk := response.read(1 << 16):
                    chunks.append(chunk)
                    bar.update(len(chunk))
    except (OSError, http.client.HTTPException) as e:  # URLError is an OSError; so are timeouts
        reason = getattr(e, "reason", None) or e
        raise DataError(f"could not download Tiny Shakespeare from {url} ({reason}); {HOW_TO_PASS}") from None
    data = b"".join(chunks)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise DataError(
            f"the download from {url} has sha256 {digest}, expected {sha256}, so it was not saved; {HOW_TO_PASS}"
        )
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write({dest: data})
    except OSError as e:
        raise DataError(f"cannot save the download to {dest}: {e.strerror or e}; {HOW_TO_PASS}") from None


def read_text(path):
    """The whole file as a str; missing, unreadable, empty or non-UTF-8 files raise DataError."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"cannot read data file {path}: {e.strerror or e}; {HOW_TO_PASS}") from None
    if not raw:
        raise DataError(f"data file {path} is empty; {HOW_TO_PASS}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"data file {path} is not UTF-8 text (invalid byte at offset {e.start}); {HOW_TO_PASS}"
        ) from None


class CharTokenizer:
    """One token per distinct character; `vocab` is those characters as a string, in id order.
    (The other tokenizer, GPT-2's byte-level BPE, is tinygrad_gpt.hf.bpe's; both have this interface.)"""

    eos_token = None  # a character vocabulary has no end-of-text token

    def __init__(self, vocab):
        self.vocab = vocab
        self.stoi = {ch: i for i, ch in enumerate(vocab)}

    @classmethod
    def from_text(cls, text):
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self):
        return len(self.vocab)

    def unknown_chars(self, text):
        """The characters of text that have no token, sorted."""
        return sorted(set(text) - self.stoi.keys())

    def encode(self, text):
        """str -> int64 ids; every character must be in the vocabulary (check with unknown_chars)."""
        return np.fromiter((self.stoi[ch] for ch in text), dtype=np.int64, count=len(text))

    def decode(self, ids):
        return "".join(self.vocab[i] for i in ids)

    def to_json(self):
        """This tokenizer as a Hugging Face tokenizer.json, written without their library: a BPE
        model whose vocabulary is the characters and which has no merges, so every character is
        one token, and a decoder that joins the tokens as they are (the default joins with spaces).
        No normalizer or pre-tokenizer: spaces and newlines are tokens like any other."""
        model = {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": self.stoi,
            "merges": [],
        }
        parts = dict.fromkeys(["truncation", "padding", "normalizer", "pre_tokenizer", "post_processor"])
        return json.dumps({"version": "1.0", **parts, "added_tokens": [], "decoder": {"type": "Fuse"}, "model": model})


class TextDataset:
    """A text as token ids, split into train (first 90%) and val (last 10%)."""

    def __init__(self, text, tokenizer=None):
        self.tokenizer = tokenizer or CharTokenizer.from_text(text)
        ids = self.tokenizer.encode(text)
        n = int(TRAIN_FRACTION * len(ids))
        self.splits = {"train": ids[:n], "val": ids[n:]}

    def get_batch(self, split, batch_size, block_size, rng):
        """batch_size random windows of `split`: inputs x and next-token targets y, (B, T) int64.
        Drawn from rng (a numpy Generator), so a seeded rng gives the same batch everywhere."""
        data = self.splits[split]
        starts = rng.integers(0, len(data) - block_size, size=batch_size)
        positions = starts[:, None] + np.arange(block_size)  # (B, T)
        return data[positions], data[positions + 1]


def load_dataset(path, block_size, tokenizer=None):
    """Read and tokenize the text at path, checking both splits can hold a (block_size + 1) window.
    With a tokenizer (a resumed run's, or a pretrained model's), the text must use only
    characters it can encode; without one, the text's own characters are the vocabulary."""
    text = read_text(path)
    if tokenizer is not None and (unknown := tokenizer.unknown_chars(text)):
        raise DataError(f"data file {path} has characters the model's vocabulary lacks: {format_chars(unknown)}")
    dataset = TextDataset(text, tokenizer)
    shortest = min(len(ids) for ids in dataset.splits.values())
    if shortest < block_size + 1:
        raise DataError(
            f"data file {path} is too short: {len(text)} characters make {sum(map(len, dataset.splits.values()))} "
            f"tokens, but each split (first 90% train, last 10% val) needs at least block_size + 1 = "
            f"{block_size + 1}; use a longer text or a smaller --block-size"
        )
    return dataset


def format_chars(chars, limit=20):
    """Characters for an error message, quoted so that newlines and spaces stay visible."""
    shown = ", ".join(repr(ch) for ch in chars[:limit])
    return shown + (f" and {len(chars) - limit} more" if len(chars) > limit else "")
