"""The training text (Tiny Shakespeare by default, any UTF-8 file works), a character-level
tokenizer, and random (x, y) batches of the train or validation split."""

import codecs
import hashlib
import json
import lzma
import os
from pathlib import Path

import numpy as np

from tinygrad_gpt.errors import DataError
from tinygrad_gpt.fileio import check_regular_file

# Tiny Shakespeare ships with the package, compressed (datasets/README.md says where it comes from);
# the sha256 is the text's, uncompressed.
TINY_SHAKESPEARE = Path(__file__).parent / "datasets" / "tinyshakespeare.txt.xz"
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
HOW_TO_PASS = "pass a UTF-8 text file with --data PATH (or set TINYGPT_DATA)"
TRAIN_FRACTION = 0.9  # the first 90% trains, the last 10% validates
# A text is read whole and held as int64 ids besides (8 bytes a character): a larger file is
# refused before it is read. Its first TEXT_PROBE bytes are checked to be text before that too.
MAX_TEXT_BYTES = 2**30
TEXT_PROBE = 2**16


def resolve_data_path(path=None):
    """The text to train on: `path` (--data), else $TINYGPT_DATA, else Tiny Shakespeare, which ships
    with the package (no network needed)."""
    if path is not None:
        return Path(path)
    if os.environ.get("TINYGPT_DATA"):
        return Path(os.environ["TINYGPT_DATA"])
    return TINY_SHAKESPEARE


def tiny_shakespeare():
    """The whole of Tiny Shakespeare as a str, checked against its sha256."""
    return read_text(TINY_SHAKESPEARE)


def _unpack_tiny_shakespeare(packed):
    try:
        raw = lzma.decompress(packed)
    except lzma.LZMAError:
        raw = b""
    if hashlib.sha256(raw).hexdigest() != TINY_SHAKESPEARE_SHA256:
        raise DataError(f"{TINY_SHAKESPEARE} is damaged (not Tiny Shakespeare's sha256); reinstall, or {HOW_TO_PASS}")
    return raw


def read_text(path):
    """The whole file as a str (Tiny Shakespeare unpacked and checked); missing, unreadable, empty or
    non-UTF-8 files raise DataError, and so does what is not a regular file (a FIFO would block the
    read for ever)."""
    check_regular_file(path, DataError)
    try:
        if Path(path) != TINY_SHAKESPEARE:  # which is compressed, and checked by its sha256
            _check_looks_like_text(path)
        raw = Path(path).read_bytes()
    except OSError as e:
        raise DataError(f"cannot read data file {path}: {e.strerror or e}; {HOW_TO_PASS}") from None
    if Path(path) == TINY_SHAKESPEARE:
        raw = _unpack_tiny_shakespeare(raw)
    if not raw:
        raise DataError(f"data file {path} is empty; {HOW_TO_PASS}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _not_utf8(path, e) from None


def _check_looks_like_text(path):
    """DataError for a file too large to read whole, or whose first bytes are not UTF-8 text (a
    NUL byte, or an invalid sequence), found before the whole file is read."""
    size = os.stat(path).st_size
    if size > MAX_TEXT_BYTES:
        raise DataError(f"data file {path} is {size} bytes, over the {MAX_TEXT_BYTES // 2**30} GiB a run reads")
    with open(path, "rb") as f:
        head = f.read(TEXT_PROBE)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head)  # not final: a character cut at the end is fine
    except UnicodeDecodeError as e:
        raise _not_utf8(path, e) from None
    if b"\0" in head:
        raise DataError(f"data file {path} is not text (a NUL byte at offset {head.index(0)}); {HOW_TO_PASS}")


def _not_utf8(path, error):
    return DataError(f"data file {path} is not UTF-8 text (invalid byte at offset {error.start}); {HOW_TO_PASS}")


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
        self.sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()  # which text, for resumes and ranks
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
