"""Text from a trained checkpoint, printed character by character as it is generated."""

import sys
from pathlib import Path

from tinygrad_gpt.checkpoint import BEST_DIR, load_model, read_checkpoint
from tinygrad_gpt.data import CharTokenizer, format_chars
from tinygrad_gpt.errors import UsageError


def sample(
    out_dir="out", prompt=None, max_new_tokens=500, temperature=0.8, top_k=40, seed=1, best=False, file=sys.stdout
):
    """Continue `prompt` with max_new_tokens characters from out_dir's checkpoint (or its best/),
    writing the prompt and then each new character to `file` as soon as it exists. Without a
    prompt: a newline, or the vocabulary's first character if the text had no newline."""
    if prompt is not None and not prompt:
        raise UsageError("the prompt is empty; pass at least one character with --prompt")
    if not temperature > 0:
        raise UsageError(f"--temperature must be > 0, got {temperature}")
    if max_new_tokens < 0:
        raise UsageError(f"--max-new-tokens must be >= 0, got {max_new_tokens}")
    if top_k is not None and top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {top_k}")
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    checkpoint = read_checkpoint(Path(out_dir) / BEST_DIR if best else out_dir)
    tokenizer = CharTokenizer(checkpoint.vocab)
    if prompt is None:
        prompt = "\n" if "\n" in checkpoint.vocab else checkpoint.vocab[0]
    if unknown := tokenizer.unknown_chars(prompt):
        raise UsageError(f"the prompt has characters the model's vocabulary lacks: {format_chars(unknown)}")
    model = load_model(checkpoint)
    context = tokenizer.encode(prompt)[None, -model.config.block_size :]  # (1, T)
    file.write(prompt)
    for token in model.stream(context, max_new_tokens, temperature=temperature, top_k=top_k, seed=seed):
        file.write(tokenizer.decode(token))
        file.flush()
    file.write("\n")
    file.flush()
