"""`tinygpt gradcheck`: the whole GPT's backward against finite differences, parameter by parameter.

The op tests check each hand-written backward alone; this checks them all at once, wired as
training uses them: the loss of a GPT (a preset's shapes and initial weights, or a trained
checkpoint) on random tokens in float64, and d loss / d parameter for every parameter against
central differences (engine.gradcheck_parameters: a random direction and a few elements each).
Dropout stays as the model has it, its masks fixed by reseeding before every evaluation, so its
backward is checked too.

Each rung of the kernel ladder (kernels/rungs.py) has backwards of its own, so the check runs once
per rung the arrays' device has: plain first (the textbook kernels a learner reads and edits),
then fast, then the compiled one (cpu where Numba is installed, cuda on the GPU). `auto` alone,
what training runs, would pass with a wrong plain kernel. A failure names the rung and the first
parameter past the tolerance, and says which rungs passed: a bug in one rung's kernels, not in
the math they share.
"""

import numpy

from tinygrad_gpt import engine
from tinygrad_gpt.checkpoint import load_model, read_checkpoint
from tinygrad_gpt.config import CHAR_VOCAB_SIZE, preset_config
from tinygrad_gpt.engine import backend
from tinygrad_gpt.engine.dispatch import chosen, kernels_for, set_kernels
from tinygrad_gpt.errors import TinyGPTError, UsageError
from tinygrad_gpt.kernels import cpu
from tinygrad_gpt.kernels.array_module import xp_of
from tinygrad_gpt.kernels.rungs import CPU, CUDA, FAST, PLAIN
from tinygrad_gpt.model import GPT, GPTConfig

# Between the two: the error float64's central differences leave on a correct backward (their
# truncation and rounding), and what a backward 0.1% off gives (docs/benchmarks.md has both).
TOLERANCE = 1e-5


class GradcheckFailed(TinyGPTError):
    """A parameter's gradient disagrees with finite differences."""


def gradcheck(
    preset="tiny", out_dir=None, batch_size=4, elements=3, seed=0, tolerance=TOLERANCE, kernels=None, file=None
):
    """Check every parameter of the preset's GPT at its initial weights (or of out_dir's checkpoint)
    on every rung of rungs_for(its arrays), or on rung `kernels` alone (a name of dispatch.CHOICES);
    raises GradcheckFailed naming the first rung and parameter that fail, after all were checked."""
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
    names = [kernels] if kernels else rungs_for(model.transformer.wte.weight.data)
    failures, previous = {}, chosen()
    try:
        for name in names:
            set_kernels(name)
            if name != names[0]:
                print(file=file)
            try:
                gradcheck_model(model, batch_size, elements, seed, tolerance, source, file)
            except GradcheckFailed as e:
                failures[name] = e
    finally:
        set_kernels(previous)
    passed = [name for name in names if name not in failures]
    if failures:
        first = next(iter(failures.values()))
        raise GradcheckFailed(f"{first} (the {' and '.join(passed)} kernels pass)" if passed else str(first))
    if len(names) > 1:
        print(f"\nall {len(model.parameters())} parameters agree on every rung: {', '.join(names)}", file=file)


def rungs_for(array):
    """The rungs of the ladder that run on arrays like `array`, plain first: plain and fast on any
    device, then the compiled one of its device (cpu where Numba is installed, cuda on the GPU)."""
    on_host = xp_of(array) is numpy
    compiled = ([CPU.name] if cpu.AVAILABLE else []) if on_host else [CUDA.name]
    return [PLAIN.name, FAST.name, *compiled]


def gradcheck_model(model, batch_size=4, elements=3, seed=0, tolerance=TOLERANCE, source="", file=None):
    """Turn `model` float64 and check every parameter on random tokens with the kernels chosen now,
    printing a table to `file` (default stdout); raises GradcheckFailed naming the rung and the
    first parameter past `tolerance`."""
    model.double().train()
    c = model.config
    tokens = numpy.random.default_rng(seed).integers(0, c.vocab_size, (batch_size, c.block_size + 1))
    idx, targets = backend.asarray(tokens[:, :-1]), backend.asarray(tokens[:, 1:])  # the same on any backend

    def loss_fn():
        engine.manual_seed(seed)  # the same dropout masks at every evaluation
        return model(idx, targets)[1]

    rung = kernels_for(model.transformer.wte.weight.data).name
    print(
        f"gradcheck: a GPT of {c.n_layer} layers, {c.n_head} heads, width {c.n_embd}, dropout {c.dropout}"
        f"{f' ({source})' if source else ''}, on {batch_size} x {c.block_size} random tokens, float64, "
        f"{backend.name()}, {rung} kernels",
        file=file,
    )
    print(f"{'parameter':<40}{'shape':<16}{'worst relative error':>22}", file=file, flush=True)
    failed, worst, count = [], 0.0, len(model.parameters())
    for name, shape, error in engine.gradcheck_parameters(loss_fn, model.named_parameters(), elements, seed=seed):
        verdict = "" if error <= tolerance else "  FAIL"
        print(f"{name:<40}{str(shape):<16}{error:>22.1e}{verdict}", file=file, flush=True)
        worst = max(worst, error)
        if verdict:
            failed.append((name, shape, error))
    if failed:
        print(f"{len(failed)} of {count} parameters disagree on the {rung} kernels", file=file)
        name, shape, error = failed[0]
        raise GradcheckFailed(
            f"gradcheck failed on the {rung} kernels at {name} {shape}: relative error {error:.1e} > "
            f"{tolerance:.0e}; the backward of an op its gradient flows through is wrong"
        )
    print(
        f"all {count} parameters agree on the {rung} kernels (worst {worst:.1e}, tolerance {tolerance:.0e})", file=file
    )
