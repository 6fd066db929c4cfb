"""Text from a trained checkpoint or a Hugging Face GPT-2 folder, printed as it is generated."""

import sys
from pathlib import Path

from tinygrad_gpt.checkpoint import BEST_DIR, load_model, load_tokenizer, read_checkpoint
from tinygrad_gpt.data import format_chars
from tinygrad_gpt.errors import UsageError
from tinygrad_gpt.hf.gpt2 import pretrained_tokenizer, resolve
from tinygrad_gpt.model import GPT, MIN_TEMPERATURE


def sample(
    out_dir="out",
    prompt=None,
    max_new_tokens=500,
    temperature=0.8,
    top_k=40,
    seed=1,
    best=False,
    init_from=None,
    file=sys.stdout,
):
    """Continue `prompt` with max_new_tokens tokens from out_dir's checkpoint (or its best/), or
    from the GPT-2 folder init_from, writing the prompt and then the new text to `file` as soon
    as it is whole (see TextStream). Without a prompt: a newline, or token 0's text if the
    vocabulary has no newline."""
    if prompt is not None and not prompt:
        raise UsageError("the prompt is empty; pass at least one character with --prompt")
    if not temperature >= MIN_TEMPERATURE:
        raise UsageError(f"--temperature must be >= {MIN_TEMPERATURE:g}, got {temperature}")
    if max_new_tokens < 0:
        raise UsageError(f"--max-new-tokens must be >= 0, got {max_new_tokens}")
    if top_k is not None and top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {top_k}")
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    if init_from is not None and best:
        raise UsageError("--best picks a checkpoint in --out-dir; a --init-from folder has only one")
    if init_from is None:
        checkpoint = read_checkpoint(Path(out_dir) / BEST_DIR if best else out_dir)
        tokenizer = load_tokenizer(checkpoint)
    else:
        folder = resolve(init_from)
        tokenizer = pretrained_tokenizer(folder)
    prompt = default_prompt(tokenizer) if prompt is None else prompt
    if unknown := tokenizer.unknown_chars(prompt):
        raise UsageError(f"the prompt has characters the model's vocabulary lacks: {format_chars(unknown)}")
    model = load_model(checkpoint) if init_from is None else GPT.from_pretrained(folder)
    context = tokenizer.encode(prompt)[None, -model.config.block_size :]  # (1, T)
    file.write(prompt)
    text = TextStream(tokenizer)
    for token in model.stream(context, max_new_tokens, temperature=temperature, top_k=top_k, seed=seed):
        file.write(text.push(token))
        file.flush()
    file.write(text.finish() + "\n")
    file.flush()


def default_prompt(tokenizer):
    """A newline (nanoGPT's start), or token 0's text where the vocabulary has no newline."""
    return "\n" if not tokenizer.unknown_chars("\n") else tokenizer.decode([0])


class TextStream:
    """The text of a growing sequence of token ids, handed out as soon as it is final.

    A byte-level BPE token can end inside a UTF-8 character; until its other bytes arrive, they
    decode to U+FFFD, so replacement characters at the end are held back until more tokens (or
    finish()) settle them. The pieces joined equal decoding the whole sequence at once. Only the
    ids since the last point where everything was final are decoded again, at a character
    boundary, where decoding in two parts equals decoding the whole.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.ids = []  # since the last point where all text was final
        self.emitted = 0  # characters of decode(self.ids) handed out

    def push(self, ids):
        """The text that the new ids make final (possibly empty)."""
        self.ids.extend(int(i) for i in ids)
        text = self.tokenizer.decode(self.ids)
        final = len(text.rstrip("\ufffd"))
        piece = text[self.emitted : final]
        if final == len(text):
            self.ids, self.emitted = [], 0
        else:
            self.emitted = final
        return piece

    def finish(self):
        """What was held back, as the whole sequence decodes it (U+FFFD for bytes left incomplete)."""
        piece = self.tokenizer.decode(self.ids)[self.emitted :]
        self.ids, self.emitted = [], 0
        return piece
