"""GPT-2's byte-level BPE, read from a Hugging Face folder through their `tokenizers` library (the
`hf` extra: pip install "tinygrad-gpt[hf]"). Nothing here imports it until a tokenizer is built, so
the character tokenizer (data.py) and everything else work without it."""

from pathlib import Path

import numpy as np

from tinygrad_gpt.errors import TinyGPTError, one_line
from tinygrad_gpt.fileio import read_small

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE, MERGES_FILE = "vocab.json", "merges.txt"  # GPT-2's original pair, before tokenizer.json
END_OF_TEXT = "<|endoftext|>"  # GPT-2's one special token, between documents


def _tokenizers():
    try:
        import tokenizers
    except ImportError:
        raise TinyGPTError(
            'this model\'s BPE tokenizer needs the tokenizers library: pip install "tinygrad-gpt[hf]"'
        ) from None
    return tokenizers


class BPETokenizer:
    """A `tokenizers.Tokenizer` with CharTokenizer's interface: encode, decode, vocab_size,
    unknown_chars, to_json, eos_token."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        # the rows a model needs: one past the largest id, which a vocabulary with gaps puts beyond its count
        self.vocab_size = max(tokenizer.get_vocab(with_added_tokens=True).values(), default=-1) + 1
        self.eos_token = END_OF_TEXT if tokenizer.token_to_id(END_OF_TEXT) is not None else None

    @classmethod
    def from_json(cls, text):
        """From the text of a tokenizer.json."""
        tokenizers = _tokenizers()
        try:
            return cls(tokenizers.Tokenizer.from_str(text))
        except Exception as e:  # the library reports every malformed file as a bare Exception
            raise TinyGPTError(f"not a valid {TOKENIZER_FILE} ({one_line(e)})") from None

    @classmethod
    def from_folder(cls, folder):
        """From folder/tokenizer.json, else GPT-2's vocab.json + merges.txt (byte-level BPE, with
        <|endoftext|> as a special token, as transformers' GPT2Tokenizer reads them)."""
        folder = Path(folder)
        path = folder / TOKENIZER_FILE
        if path.is_file():
            try:
                text = read_small(path, TinyGPTError).decode("utf-8")
            except UnicodeDecodeError as e:
                raise TinyGPTError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
            try:
                return cls.from_json(text)
            except TinyGPTError as e:
                raise TinyGPTError(f"{path}: {e}") from None
        if not ((folder / VOCAB_FILE).is_file() and (folder / MERGES_FILE).is_file()):
            raise TinyGPTError(f"{folder} has no tokenizer: neither {TOKENIZER_FILE} nor {VOCAB_FILE} + {MERGES_FILE}")
        tokenizers = _tokenizers()
        try:
            model = tokenizers.models.BPE.from_file(str(folder / VOCAB_FILE), str(folder / MERGES_FILE))
        except Exception as e:
            raise TinyGPTError(f"{folder}: cannot read {VOCAB_FILE} + {MERGES_FILE} ({one_line(e)})") from None
        tokenizer = tokenizers.Tokenizer(model)
        tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = tokenizers.decoders.ByteLevel()
        if tokenizer.token_to_id(END_OF_TEXT) is not None:
            tokenizer.add_special_tokens([END_OF_TEXT])
        return cls(tokenizer)

    def encode(self, text):
        """str -> int64 ids (no special tokens added around it; a literal <|endoftext|> is one)."""
        return np.array(self._tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def decode(self, ids):
        """ids -> str, special tokens shown (a byte sequence cut inside a character gives U+FFFD)."""
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def unknown_chars(self, text):
        """The characters of text that do not come back from encode and decode, sorted (none for a
        byte-level BPE; a tokenizer.json with a smaller alphabet drops or replaces some)."""
        return sorted(ch for ch in set(text) if self.decode(self.encode(ch)) != ch)

    def token_to_id(self, token):
        return self._tokenizer.token_to_id(token)

    def to_json(self):
        return self._tokenizer.to_str()
