"""tinygrad_gpt: a GPT (nanoGPT's shakespeare_char) assembled from engine Tensors, with its
optimizer, data pipeline, training loop and command line."""

from tinygrad_gpt.model import GPT, GPTConfig

__all__ = ["GPT", "GPTConfig"]
