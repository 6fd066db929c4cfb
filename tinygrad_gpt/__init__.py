"""tinygrad_gpt: a GPT (nanoGPT's shakespeare_char) assembled from engine Tensors, with its
optimizer, data pipeline, training loop and command line.

One import name holds three layers, each importing only the ones below it:
tinygrad_gpt (the GPT, training, the CLI) -> tinygrad_gpt.engine (Tensor and autograd: the engine/
folder) -> tinygrad_gpt.kernels (the math on plain arrays: the kernels/ folder).
"""

__all__ = ["GPT", "GPTConfig"]


def __getattr__(name):
    # `from tinygrad_gpt import GPT` loads the model on first use, so that importing the engine or
    # the kernels alone (which runs this file first) does not pull in the layer above them
    if name in __all__:
        from tinygrad_gpt import model

        return getattr(model, name)
    raise AttributeError(f"module 'tinygrad_gpt' has no attribute {name!r}")
