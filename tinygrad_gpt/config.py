"""Configuration: the model's shape (GPTConfig), every knob of a run (TrainConfig), and the named
presets the CLI starts from."""

import math
from dataclasses import dataclass

# Tiny Shakespeare's character count: the vocabulary of a model built without data (bench, gradcheck),
# so that its shapes are the real run's.
CHAR_VOCAB_SIZE = 65
# The fields that describe the model rather than the run; they also live in GPTConfig.
MODEL_FIELDS = ("block_size", "n_layer", "n_head", "n_embd", "dropout")


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int  # the longest context the model sees (rows of wpe)
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = True  # biases in the Linears and LayerNorms, like GPT-2
    layer_norm_epsilon: float = 1e-5  # GPT-2's name and value

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig.n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.bias, bool):
            raise ValueError(f"GPTConfig.bias must be True or False, got {self.bias!r}")
        eps = self.layer_norm_epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
            raise ValueError(f"GPTConfig.layer_norm_epsilon must be in (0, 1), got {eps!r}")

    def parameter_count(self):
        """The GPT's number of parameters (the tied wte/lm-head matrix once), without building it."""
        c, biases = self.n_embd, int(self.bias)
        layer_norm = c + biases * c
        block = 2 * layer_norm + (c * 3 * c + biases * 3 * c) + (c * c + biases * c)  # ln_1, ln_2, attention
        block += (c * 4 * c + biases * 4 * c) + (4 * c * c + biases * c)  # MLP
        return (self.vocab_size + self.block_size) * c + self.n_layer * block + layer_norm


@dataclass
class TrainConfig:
    # model
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    dropout: float
    # data and schedule
    batch_size: int
    max_iters: int
    eval_interval: int
    eval_iters: int
    log_interval: int
    # AdamW and the learning-rate schedule
    learning_rate: float
    min_lr: float
    warmup_iters: int
    lr_decay_iters: int | None  # None: decay until max_iters
    weight_decay: float
    beta2: float
    grad_clip: float  # 0 turns clipping off
    seed: int
    # defaults, so that checkpoints saved before these fields existed still load
    gradient_accumulation_steps: int = 1  # micro-batches of batch_size per step (nanoGPT's name)
    init_from: str | None = None  # the pretrained folder (or Hub name) a fine-tuning run started from
    data_sha256: str | None = None  # the text the run last trained on (a resume says when it changes)

    def __post_init__(self):
        if self.lr_decay_iters is None:
            self.lr_decay_iters = self.max_iters
        for name in (
            "n_layer",
            "n_head",
            "n_embd",
            "block_size",
            "batch_size",
            "max_iters",
            "eval_interval",
            "eval_iters",
            "log_interval",
            "lr_decay_iters",
            "gradient_accumulation_steps",
        ):
            self._check(name, _is_int, lambda v: v > 0, "a positive integer")
        for name in ("warmup_iters", "seed"):
            self._check(name, _is_int, lambda v: v >= 0, "an integer >= 0")
        self._check("learning_rate", _is_number, lambda v: v > 0, "a number > 0")
        for name in ("min_lr", "weight_decay", "grad_clip"):
            self._check(name, _is_number, lambda v: v >= 0, "a number >= 0")
        for name in ("dropout", "beta2"):
            self._check(name, _is_number, lambda v: 0 <= v < 1, "a number in [0, 1)")
        self._check("init_from", lambda v: v is None or isinstance(v, str), lambda v: v != "", "a folder or model name")
        self._check("data_sha256", lambda v: v is None or isinstance(v, str), lambda v: v != "", "a hex digest")
        if self.min_lr > self.learning_rate:  # the cosine "decay" would climb
            raise ValueError(f"min_lr ({self.min_lr!r}) must be <= learning_rate ({self.learning_rate!r})")

    def _check(self, name, has_type, in_range, expected):
        value = getattr(self, name)
        if not (has_type(value) and in_range(value)):
            raise ValueError(f"{name} must be {expected}, got {value!r}")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


# nanoGPT's shakespeare_char optimizer recipe, shared by the presets
_RECIPE = dict(
    log_interval=10,
    learning_rate=1e-3,
    min_lr=1e-4,
    warmup_iters=100,
    lr_decay_iters=None,
    weight_decay=0.1,
    beta2=0.99,
    grad_clip=1.0,
    seed=1337,
)
# cpu: nanoGPT's shakespeare_char recipe for a laptop; baby: its GPU recipe; tiny: a smoke test;
# finetune: nanoGPT's finetune_shakespeare sized for a CPU (needs --init-from).
PRESETS = {
    "cpu": dict(
        _RECIPE,
        n_layer=4,
        n_head=4,
        n_embd=128,
        block_size=64,
        dropout=0.0,
        batch_size=12,
        max_iters=2000,
        eval_interval=250,
        eval_iters=20,
    ),
    "baby": dict(
        _RECIPE,
        n_layer=6,
        n_head=6,
        n_embd=384,
        block_size=256,
        dropout=0.2,
        batch_size=64,
        max_iters=5000,
        eval_interval=250,
        eval_iters=200,
    ),
    "tiny": dict(
        _RECIPE,
        n_layer=2,
        n_head=2,
        n_embd=32,
        block_size=32,
        dropout=0.0,
        batch_size=8,
        max_iters=100,
        eval_interval=50,
        eval_iters=5,
        learning_rate=3e-3,
        min_lr=3e-4,
        warmup_iters=10,
    ),
    "finetune": dict(
        _RECIPE,
        n_layer=12,  # GPT-2 124M's shape, which --init-from's folder replaces
        n_head=12,
        n_embd=768,
        block_size=256,  # of GPT-2's 1024 positions: a CPU's share
        dropout=0.0,
        batch_size=1,  # one sequence per micro-batch, so one thread: for a model this size, splitting
        gradient_accumulation_steps=8,  # a batch over threads was slower than BLAS on both cores
        max_iters=20,
        eval_interval=5,
        eval_iters=20,
        log_interval=1,
        learning_rate=3e-5,  # small and constant (min_lr the same, no warmup): nudge, do not retrain
        min_lr=3e-5,
        warmup_iters=0,
        beta2=0.95,
    ),
}


def preset_config(preset, **overrides):
    """TrainConfig of a named preset with some fields replaced (ValueError on bad values)."""
    return TrainConfig(**{**PRESETS[preset], **overrides})
