"""engine.functional: the PyTorch-like functional API (`from tinygrad_gpt.engine import functional as F`)."""

import numpy as np

from tinygrad_gpt.engine import ops_math, ops_nn, ops_shape
from tinygrad_gpt.engine.dispatch import kernels_for
from tinygrad_gpt.engine.random import generator
from tinygrad_gpt.engine.tensor import Tensor, as_array
from tinygrad_gpt.kernels.array_module import xp_of


def linear(x, weight, bias=None):
    """y = x @ weight + bias, weight of shape (in, out)."""
    return ops_nn.Linear.apply(x, weight, bias)


def layer_norm(x, weight, bias, eps=1e-5):
    """Normalize over the last axis, then scale by weight and shift by bias (either may be None)."""
    return ops_nn.LayerNorm.apply(x, weight, bias, eps=eps)


def softmax(x, axis=-1):
    return ops_nn.Softmax.apply(x, axis=axis)


def log_softmax(x, axis=-1):
    return ops_nn.LogSoftmax.apply(x, axis=axis)


def gelu(x):
    """GELU in GPT-2's tanh form."""
    return ops_math.Gelu.apply(x)


def cross_entropy(logits, targets, ignore_index=-100):
    """Mean cross-entropy; logits (N, C) or (B, T, C), integer targets (N,) or (B, T), each in
    [0, C) or ignore_index. As PyTorch's: the mean is over the targets not ignored, and the rows
    of ignored targets get no gradient."""
    targets = _checked_ids(targets, logits.shape[-1], "target", ignore_index)
    targets = as_array(targets, logits.data).reshape(-1)
    return ops_nn.CrossEntropy.apply(logits.reshape(-1, logits.shape[-1]), targets, ignore_index=ignore_index)


def embedding(idx, weight):
    """Rows of weight (V, D) picked by the integer array idx, each in [0, V): (...) -> (..., D)."""
    return ops_nn.Embedding.apply(as_array(_checked_ids(idx, weight.shape[0], "id"), weight.data), weight)


def _checked_ids(ids, upper, what, ignore_index=None):
    """ids as an array, each in [0, upper) or equal to ignore_index, else IndexError naming the
    first that is not: indexing would take a negative id for a row from the end, silently.

    The check is one min and one max, done where the ids are: on the host for host ids (before
    they go to the device), and on a CuPy array with one host sync to read the two numbers back."""
    ids = ids.data if isinstance(ids, Tensor) else ids
    ids = ids if hasattr(ids, "dtype") else np.asarray(ids)
    if ids.size == 0:
        return ids
    low, high = xp_of(ids).stack([ids.min(), ids.max()]).tolist()
    if low >= 0 and high < upper:
        return ids
    flat = ids.reshape(-1)
    bad = (flat < 0) | (flat >= upper)
    if ignore_index is not None:
        bad &= flat != ignore_index
    if not bad.any():
        return ids
    allowed = f"[0, {upper})" + (f" or ignore_index ({ignore_index})" if ignore_index is not None else "")
    raise IndexError(f"{what} {int(flat[bad][0])} is out of range: {what}s must be in {allowed}")


def _mask_for(shape, p, like):
    uniform = generator(xp_of(like)).random(shape, dtype=like.dtype)
    return kernels_for(like).dropout_mask(uniform, p)


def dropout(x, p=0.5, training=True):
    """Zero elements with probability p and scale the rest by 1/(1-p); identity when not training."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    return ops_nn.Dropout.apply(x, mask=_mask_for(x.shape, p, x.data))


def scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=0.0):
    """softmax(q k^T / sqrt(hs), causal-masked) @ v on (B, nh, T, hs); dropout on the probabilities.

    q may be shorter than k and v (a KV cache): the causal mask is aligned bottom-right, so query i
    of Tq sees keys up to i + Tk - Tq. Pass dropout_p=0 outside training.
    """
    mask = None
    if dropout_p > 0:
        mask = _mask_for(q.shape[:-1] + (k.shape[-2],), dropout_p, q.data)
    return ops_nn.Attention.apply(q, k, v, is_causal=is_causal, dropout_mask=mask)


def concat(tensors, axis=0):
    return ops_shape.Concat.apply(*tensors, axis=axis)


def stack(tensors, axis=0):
    return ops_shape.Stack.apply(*tensors, axis=axis)
