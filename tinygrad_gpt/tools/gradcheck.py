"""`tinygpt gradcheck`: the whole GPT's backward against finite differences, parameter by parameter.

The op tests check each hand-written backward alone; this checks them all at once, wired as
training uses them: the loss of a GPT (a preset's shapes and initial weights, or a trained
checkpoint) on random tokens in float64, and d loss / d parameter for every parameter against
central differences (engine.gradcheck_parameters: a random direction and a few elements each).
Dropout stays as the model has it, its masks fixed by reseeding before every evaluation, so its
backward is checked too.
"""

import numpy

from tinygrad_gpt import engine
from tinygrad_gpt.checkpoint import load_model, read_checkpoint
from tinygrad_gpt.config import CHAR_VOCAB_SIZE, preset_config
from tinygrad_gpt.engine import backend
from tinygrad_gpt.engine.dispatch import kernels_for
from tinygrad_gpt.errors import TinyGPTError, UsageError
from tinygrad_gpt.model import GPT, GPTConfig

# Clean runs stay near 1e-8 (fourth-order differences in float64); a backward 0.1% off gives ~1e-3.
TOLERANCE = 1e-5


class GradcheckFailed(TinyGPTError):
    """A parameter's gradient disagrees with finite differences."""


def gradcheck(preset="tiny", out_dir=None, batch_size=4, elements=3, seed=0, tolerance=TOLERANCE, file=None):
    """Check every parameter of the preset's GPT at its initial weights (or of out_dir's checkpoint)."""
    for flag, value, valid in [
        ("--batch-size", batch_size, batch_size >= 1),
        ("--elements", elements, elements >= 0),
        ("--seed", seed, seed >= 0),
        ("--tolerance", tolerance, tolerance > 0),
    ]:
        if not valid:
            raise UsageError(f"gradcheck: {flag} {value} is out of range (see tinygpt gradcheck --help)")
    if out_dir is not None:
        model, source = load_model(read_checkpoint(out_dir)), f"the checkpoint in {out_dir}"
    else:
        config = preset_config(preset)
        model_config = GPTConfig(
            CHAR_VOCAB_SIZE, config.block_size, config.n_layer, config.n_head, config.n_embd, dropout=config.dropout
        )
        model, source = GPT(model_config, seed=config.seed), f"the {preset} preset's initial weights"
    gradcheck_model(model, batch_size, elements, seed, tolerance, source, file)


def gradcheck_model(model, batch_size=4, elements=3, seed=0, tolerance=TOLERANCE, source="", file=None):
    """Turn `model` float64 and check every parameter on random tokens, printing a table to `file`
    (default stdout); raises GradcheckFailed naming the first parameter past `tolerance`."""
    model.double().train()
    c = model.config
    tokens = numpy.random.default_rng(seed).integers(0, c.vocab_size, (batch_size, c.block_size + 1))
    idx, targets = backend.asarray(tokens[:, :-1]), backend.asarray(tokens[:, 1:])  # the same on any backend

    def loss_fn():
        engine.manual_seed(seed)  # the same dropout masks at every evaluation
        return model(idx, targets)[1]

    weights = model.transformer.wte.weight.data
    print(
        f"gradcheck: a GPT of {c.n_layer} layers, {c.n_head} heads, width {c.n_embd}, dropout {c.dropout}"
        f"{f' ({source})' if source else ''}, on {batch_size} x {c.block_size} random tokens, float64, "
        f"{backend.name()}, {kernels_for(weights).name} kernels",
        file=file,
    )
    print(f"{'parameter':<40}{'shape':<16}{'worst relative error':>22}", file=file, flush=True)
    failed, worst = None, 0.0
    for name, shape, error in engine.gradcheck_parameters(loss_fn, model.named_parameters(), elements, seed=seed):
        verdict = "" if error <= tolerance else "  FAIL"
        print(f"{name:<40}{str(shape):<16}{error:>22.1e}{verdict}", file=file, flush=True)
        worst = max(worst, error)
        if verdict and failed is None:
            failed = (name, shape, error)
    if failed:
        name, shape, error = failed
        raise GradcheckFailed(
            f"gradcheck failed at {name} {shape}: relative error {error:.1e} > {tolerance:.0e}; the backward "
            f"of an op its gradient flows through is wrong"
        )
    print(f"all {len(model.parameters())} parameters agree (worst {worst:.1e}, tolerance {tolerance:.0e})", file=file)
