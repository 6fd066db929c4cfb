"""Hugging Face GPT-2 folders made offline for the tests: transformers builds a tiny GPT-2 and
`tokenizers` learns a small byte-level BPE on a made-up corpus (never the real GPT-2, which these
machines cannot download). Importing this module skips the test file, with the reason, where
transformers, PyTorch or tokenizers are missing."""

import json
from pathlib import Path

import pytest

from tiny_runs import write_corpus

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
transformers = pytest.importorskip("transformers", reason="transformers is not installed (pip install transformers)")
tokenizers = pytest.importorskip("tokenizers", reason='tokenizers is not installed (pip install -e ".[hf]")')

END_OF_TEXT = "<|endoftext|>"
# multi-byte characters, so that byte-level tokens split them and sampling meets incomplete UTF-8
ACCENTED = "À bientôt — naïve café, ☃ and 🎭 señor Ωmega\n"


def bpe_corpus(path):
    """The play-like test corpus with accented, symbol and emoji lines mixed in."""
    write_corpus(path)
    lines = Path(path).read_text(encoding="utf-8").split("\n\n")
    text = "\n\n".join(line + ("\n" + ACCENTED if i % 10 == 0 else "") for i, line in enumerate(lines))
    Path(path).write_text(text, encoding="utf-8")
    return path


def train_bpe(text, vocab_size=400):
    """A byte-level BPE learned on text, GPT-2's kind (all 256 bytes, <|endoftext|> special)."""
    tokenizer = tokenizers.ByteLevelBPETokenizer()
    tokenizer.train_from_iterator([text], vocab_size=vocab_size, min_frequency=1, special_tokens=[END_OF_TEXT])
    return tokenizer


def gpt2_folder(directory, tokenizer, n_positions=64, n_embd=32, n_layer=2, n_head=4, seed=0, std=0.1):
    """A GPT-2 saved by transformers into directory with the tokenizer's tokenizer.json, every
    parameter (LayerNorm gains and biases too) drawn from N(0, std^2) around its usual init so
    that a tensor loaded into the wrong place shows in the logits."""
    torch.manual_seed(seed)
    eos = tokenizer.token_to_id(END_OF_TEXT)
    config = transformers.GPT2Config(
        vocab_size=tokenizer.get_vocab_size(),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * std)
    model.save_pretrained(directory)
    tokenizer.save(str(Path(directory) / "tokenizer.json"))
    return Path(directory)


def transformers_model(directory, dtype=torch.float32):
    return transformers.GPT2LMHeadModel.from_pretrained(directory, dtype=dtype).eval()


def transformers_logits(model, ids):
    with torch.no_grad():
        return model(torch.as_tensor(ids)).logits.numpy()


def transformers_greedy(model, ids, max_new_tokens):
    """transformers' greedy continuation of ids (1, T) with its KV cache, never stopping early."""
    with torch.no_grad():
        out = model.generate(
            torch.as_tensor(ids),
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
    return out.numpy()


def edit_config(directory, **changes):
    path = Path(directory) / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))
