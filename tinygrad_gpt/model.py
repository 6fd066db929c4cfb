"""GPT-2-style language model (nanoGPT's model.py, on our engine), with KV-cache generation.

Parameter names and shapes are Hugging Face GPT-2's, weights stored (in, out) as in its Conv1D.
The lm head shares wte's matrix: logits = x @ wte.T.
"""

import math

import numpy as np

import tinygrad_gpt.engine.functional as F
from tinygrad_gpt.config import GPTConfig
from tinygrad_gpt.engine import Tensor, backend, no_grad
from tinygrad_gpt.errors import CheckpointError
from tinygrad_gpt.hf import gpt2
from tinygrad_gpt.kernels.array_module import xp_of
from tinygrad_gpt.nn import Dropout, Embedding, LayerNorm, Linear, Module

# The smallest sampling temperature: logits / temperature must stay finite (a subnormal one
# overflows them to inf, and the probabilities to NaN), and below it every draw is the argmax
# already wherever the two likeliest logits differ by more than a ten-thousandth.
MIN_TEMPERATURE = 1e-6

__all__ = ["GPT", "GPTConfig"]  # GPTConfig lives in config.py, beside the training config


class KVCache:
    """One layer's keys and values for the positions seen so far, in buffers preallocated to
    block_size: a decode step writes its position and attends to the filled prefix, so nothing is
    recomputed or copied again."""

    def __init__(self, batch_size, config, xp, dtype):
        shape = (batch_size, config.n_head, config.block_size, config.n_embd // config.n_head)
        self.k = xp.zeros(shape, dtype=dtype)
        self.v = xp.zeros(shape, dtype=dtype)
        self.length = 0  # positions filled; also the position of the next token

    def append(self, k, v):
        """Store k, v (B, nh, T, hs) after the cached positions; return all of them so far."""
        end = self.length + k.shape[2]
        self.k[:, :, self.length : end] = k.data
        self.v[:, :, self.length : end] = v.data
        self.length = end
        return Tensor(self.k[:, :, :end]), Tensor(self.v[:, :, :end])


class CausalSelfAttention(Module):
    def __init__(self, config, rng):
        super().__init__()
        # query, key, value projections for all heads in one matmul
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, bias=config.bias, rng=rng)
        # residual projections get a smaller init: n_layer * 2 of them add up on the residual stream
        self.c_proj = Linear(
            config.n_embd, config.n_embd, bias=config.bias, rng=rng, std=0.02 / math.sqrt(2 * config.n_layer)
        )
        self.resid_dropout = Dropout(config.dropout)
        self.n_head = config.n_head
        self.dropout = config.dropout

    def forward(self, x, kv_cache=None):
        B, T, C = x.shape  # batch, sequence length, embedding width (n_embd)
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(C, axis=2)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)  # (B, nh, T_past + T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(Module):
    def __init__(self, config, rng):
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, bias=config.bias, rng=rng)
        self.c_proj = Linear(
            4 * config.n_embd, config.n_embd, bias=config.bias, rng=rng, std=0.02 / math.sqrt(2 * config.n_layer)
        )
        self.dropout = Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config, rng):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config, rng)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config, rng)

    def forward(self, x, kv_cache=None):
        x = x + self.attn(self.ln_1(x), kv_cache)
        x = x + self.mlp(self.ln_2(x))
        return x


class Transformer(Module):
    """The trunk under GPT-2's name `transformer`: embeddings, blocks, final LayerNorm."""

    def __init__(self, config, rng):
        super().__init__()
        self.wte = Embedding(config.vocab_size, config.n_embd, rng=rng)
        self.wpe = Embedding(config.block_size, config.n_embd, rng=rng)
        self.drop = Dropout(config.dropout)
        self.h = [Block(config, rng) for _ in range(config.n_layer)]
        self.ln_f = LayerNorm(config.n_embd, bias=config.bias, eps=config.layer_norm_epsilon)

    def forward(self, idx, kv_cache=None):
        """idx (B, T) -> hidden states (B, T, C); with a cache, idx continues the cached positions."""
        start = kv_cache[0].length if kv_cache is not None else 0
        pos = np.arange(start, start + idx.shape[1])  # (T,): on the host, where their range check needs no sync
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C) + (T, C)
        for i, block in enumerate(self.h):
            x = block(x, kv_cache[i] if kv_cache is not None else None)
        return self.ln_f(x)


class GPT(Module):
    def __init__(self, config, seed=0):
        super().__init__()
        self.config = config
        self.transformer = Transformer(config, np.random.default_rng(seed))

    @classmethod
    def from_pretrained(cls, path, dtype=np.float32, dropout=0.0):
        """A Hugging Face GPT-2 folder (config.json, model.safetensors or its shards), or a Hub
        name like "gpt2" where huggingface_hub can fetch it, as our GPT; its weights in `dtype`
        (float64 for exact comparisons); `dropout` for fine-tuning."""
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        folder = gpt2.resolve(path)
        config = gpt2.read_config(folder, dropout)
        gpt2.check_weights_fit(config, gpt2.weight_files(folder), folder / gpt2.CONFIG_FILE)  # before building it
        model = cls(config)
        if np.dtype(dtype) == np.float64:
            model.double()  # before loading, so float64 weights keep every digit
        tensors = gpt2.read_weights(folder)
        try:
            model.load_state_dict(tensors)
        except ValueError as e:
            raise CheckpointError(f"{folder}: the weights do not fit its {gpt2.CONFIG_FILE}: {e}") from None
        return model

    def crop_block_size(self, block_size):
        """Keep the first block_size positions (nanoGPT's surgery for a shorter fine-tuning context)."""
        if not 0 < block_size <= self.config.block_size:
            raise ValueError(f"block_size must be in [1, {self.config.block_size}], got {block_size}")
        self.config.block_size = block_size
        self.transformer.wpe.weight.data = self.transformer.wpe.weight.data[:block_size].copy()

    def num_params(self):
        """Parameter count, the tied wte/lm-head matrix once."""
        return sum(p.size for p in self.parameters())

    def forward(self, idx, targets=None, kv_cache=None):
        """idx (B, T) ints -> (logits (B, T, vocab_size), mean cross-entropy or None).

        kv_cache (from `new_kv_cache`) makes idx the continuation of the positions already in it."""
        if len(idx.shape) != 2:
            raise ValueError(f"idx must have shape (B, T), got {tuple(idx.shape)}")
        end = idx.shape[1] + (kv_cache[0].length if kv_cache is not None else 0)
        if end > self.config.block_size:
            raise ValueError(f"sequence length {end} exceeds block_size {self.config.block_size}")
        x = self.transformer(idx, kv_cache)
        logits = F.linear(x, self.transformer.wte.weight.T)  # tied head: (B, T, C) @ (C, V)
        loss = F.cross_entropy(logits, targets) if targets is not None else None
        return logits, loss

    def new_kv_cache(self, batch_size):
        """An empty cache per block, on the parameters' backend and dtype."""
        weight = self.transformer.wte.weight.data
        return [KVCache(batch_size, self.config, xp_of(weight), weight.dtype) for _ in range(self.config.n_layer)]

    def stream(self, idx, max_new_tokens, temperature=1.0, top_k=None, seed=None):
        """Yield max_new_tokens sampled ids, each a host int array (B,), continuing idx (B, T).

        The prompt is run once to fill a KV cache; after that each step feeds only the newest token.
        Once the context is full, every further step crops it to the last block_size tokens and
        refills the cache from them (learned positions cannot slide), so from then on each token
        costs a full pass over block_size tokens.
        """
        if not temperature >= MIN_TEMPERATURE:
            raise ValueError(f"temperature must be >= {MIN_TEMPERATURE:g}, got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        context = _host_ids(idx)
        if context.shape[1] == 0:
            raise ValueError("the prompt idx needs at least one token")
        rng = np.random.default_rng(seed)
        cache = None
        for _ in range(max_new_tokens):
            if cache is None or cache[0].length == self.config.block_size:
                cache = self.new_kv_cache(context.shape[0])
                step_input = context[:, -self.config.block_size :]
            else:
                step_input = context[:, -1:]
            logits = self._inference_logits(step_input, cache)
            next_id = _sample(logits, temperature, top_k, rng)
            context = np.concatenate([context, next_id[:, None]], axis=1)
            yield next_id

    def _inference_logits(self, idx, kv_cache):
        """Host float64 logits (B, V) of the last position, in eval mode without a graph.
        The training flag is restored before returning, so nothing leaks across `yield`s."""
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                logits, _ = self.forward(idx, kv_cache=kv_cache)
        finally:
            self.train(was_training)
        return backend.to_numpy(logits.data[:, -1, :]).astype(np.float64)

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, seed=None):
        """idx (B, T) followed by max_new_tokens sampled ids: a host int array (B, T + new)."""
        new = [t[:, None] for t in self.stream(idx, max_new_tokens, temperature, top_k, seed)]
        return np.concatenate([_host_ids(idx)] + new, axis=1)


def _host_ids(idx):
    ids = idx.numpy() if isinstance(idx, Tensor) else backend.to_numpy(idx)
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise ValueError(f"idx must be an integer array of shape (B, T), got {ids.dtype} {ids.shape}")
    return ids.astype(np.int64)


def _sample(logits, temperature, top_k, rng):
    """One id per row of host logits (B, V): scale, keep the top_k, softmax, inverse-CDF draw."""
    logits = logits / temperature
    if top_k is not None:
        kth_largest = np.sort(logits, axis=-1)[:, [-min(top_k, logits.shape[-1])]]
        logits = np.where(logits < kth_largest, -np.inf, logits)
    probs = np.exp(logits - logits.max(axis=-1, keepdims=True))
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random((len(cdf), 1)) * cdf[:, -1:]  # uniform in [0, total mass)
    return (cdf <= u).sum(axis=-1)  # the first id whose cdf exceeds u; zero-mass ids are never picked
