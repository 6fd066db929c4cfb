"""The `tinygpt` command: train, sample, bench, gradcheck.

Exit status: 0 done; 1 a runtime problem (data, checkpoint, backend, files), reported as one line
`tinygpt: error: ...`; 2 a usage problem (flags, values, prompt); 130 interrupted (Ctrl-C); 143
terminated (SIGTERM, which training takes as it takes Ctrl-C). --debug shows the traceback instead.
"""

import argparse
import os
import sys
import traceback
from dataclasses import fields

try:  # these take a while to import: Ctrl-C meanwhile ends in one line too
    from tinygrad_gpt.config import PRESETS, TrainConfig
    from tinygrad_gpt.engine import BackendError, backend, set_backend, set_kernels
    from tinygrad_gpt.engine.dispatch import CHOICES
    from tinygrad_gpt.errors import TinyGPTError, TrainingInterrupted, UsageError
    from tinygrad_gpt.parallel import mpi
    from tinygrad_gpt.sample import sample
    from tinygrad_gpt.tools.bench import SHAPE_FIELDS, bench, report
    from tinygrad_gpt.tools.gradcheck import TOLERANCE, gradcheck
    from tinygrad_gpt.train import STEP_TIMEOUT_S, run_config, train
except KeyboardInterrupt:
    print("tinygpt: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

INIT_FROM_HELP = (
    "a Hugging Face GPT-2 folder (config.json, model.safetensors, tokenizer.json), or a Hub name "
    "such as gpt2 (fetched with huggingface_hub where it is installed and online),"
)


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (no usage dump), exit status 2; under mpiexec, from
    rank 0 alone (every rank has the same command line)."""

    def error(self, message):
        launched = mpi.launched_as()
        self.exit(2, f"{self.prog}: error: {message}\n" if launched is None or launched[0] == 0 else None)


def run_train(args):
    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}
    world = mpi.init()
    config = run_config(args.out_dir, args.preset, overrides, args.resume)
    train(config, args.out_dir, args.data, args.resume, world, args.zero, args.step_timeout)


def run_sample(args):
    sample(
        args.out_dir,
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k or None,
        seed=args.seed,
        best=args.best,
        init_from=args.init_from,
    )


def run_bench(args):
    world = mpi.init()
    shape = {name: getattr(args, name) for name in SHAPE_FIELDS if getattr(args, name) is not None}
    result = bench(
        args.preset,
        args.iters,
        args.warmup,
        vs_torch=args.vs_torch,
        profile=args.profile,
        world=world,
        zero=args.zero,
        shape=shape,
    )
    report(result, as_json=args.json)


def run_gradcheck(args):
    gradcheck(args.preset, args.out_dir, args.batch_size, args.elements, args.seed, args.tolerance, args.kernels)


# TrainConfig's fields that `train` takes as flags (--max-iters, ...), with their help
CONFIG_FLAGS = {
    "max_iters": "training iterations in all",
    "eval_interval": "evaluate and checkpoint every this many iterations",
    "eval_iters": "batches per split in each evaluation",
    "log_interval": "read the loss to the host every this many iterations",
    "batch_size": "sequences per micro-batch",
    "gradient_accumulation_steps": "micro-batches per step (the step's gradient is their mean's)",
    "block_size": "context length",
    "n_layer": "transformer blocks",
    "n_head": "attention heads per block",
    "n_embd": "width of the residual stream",
    "dropout": None,
    "learning_rate": "peak learning rate",
    "min_lr": "learning rate at the end of the cosine decay",
    "warmup_iters": None,
    "lr_decay_iters": "cosine decay length (default max_iters)",
    "weight_decay": None,
    "beta2": None,
    "grad_clip": "clip the gradient norm to this (0: off)",
    "seed": "seed of the init, batches and dropout",
}


def add_config_flags(parser, names, note=None):
    """--name-with-dashes for each TrainConfig field in names, typed as the field is."""
    types = {f.name: f.type for f in fields(TrainConfig)}
    for name in names:
        kind = float if types[name] is float else int
        description = f"{CONFIG_FLAGS[name]}, {note}" if note else CONFIG_FLAGS[name]
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=kind, metavar="N" if kind is int else "X", help=description
        )


def positive_seconds(text):
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is None or not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return seconds


def folder(text):
    """--out-dir's value: an empty name would put the run's files in the current directory unsaid."""
    if not text:
        raise argparse.ArgumentTypeError("expected a folder, got an empty name (for the current directory, pass .)")
    return text


def check_kernels(name):
    """Refuse a rung the backend cannot run: its arrays would quietly get the fast rung instead."""
    device = {"cuda": "cupy", "cpu": "numpy"}.get(name)
    if device is not None and device != backend.name():
        raise UsageError(f"--kernels {name} runs on the {device} backend only; this run's is {backend.name()}")


def add_zero_flag(parser):
    parser.add_argument(
        "--zero",
        type=int,
        choices=(0, 1),
        default=0,
        help="under mpiexec, 1: the ranks share AdamW's state out (ZeRO-1) instead of each holding it all",
    )


def build_parser():
    parser = _Parser(
        prog="tinygpt", description="Train and sample a character-level GPT on Tiny Shakespeare, or fine-tune GPT-2."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,sample,bench,gradcheck}")
    common = _Parser(add_help=False)
    common.add_argument(
        "--backend", choices=("numpy", "cupy"), help="array backend (default: $TINYGPT_BACKEND, else numpy)"
    )
    common.add_argument(
        "--kernels",
        choices=CHOICES,
        help="rung of the kernel ladder: the textbook kernels, the fast NumPy/CuPy ones, loops compiled by Numba "
        "on the CPU, or CUDA ones on the GPU (default: $TINYGPT_KERNELS, else auto: cuda on the GPU, cpu on the CPU)",
    )
    common.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    presets = ", ".join(PRESETS)

    p_train = commands.add_parser(
        "train",
        parents=[common],
        help="train a model, checkpointing into --out-dir",
        description="Train a GPT. Unset flags take the preset's value (with --resume: the checkpoint's).",
    )
    p_train.set_defaults(run=run_train)
    p_train.add_argument(
        "--preset", choices=PRESETS, help=f"starting config: {presets} (default cpu, or finetune with --init-from)"
    )
    p_train.add_argument(
        "--data",
        metavar="PATH",
        help="UTF-8 text file (default: $TINYGPT_DATA, else Tiny Shakespeare, which ships with tinygrad_gpt)",
    )
    p_train.add_argument(
        "--out-dir", type=folder, default="out", metavar="DIR", help="checkpoints, log.jsonl and loss.png (default out)"
    )
    p_train.add_argument("--resume", action="store_true", help="continue the checkpoint in --out-dir")
    p_train.add_argument("--init-from", metavar="DIR", help=INIT_FROM_HELP + " to fine-tune, with its tokenizer")
    add_zero_flag(p_train)
    p_train.add_argument(
        "--step-timeout",
        type=positive_seconds,
        default=STEP_TIMEOUT_S,
        metavar="SECONDS",
        help="end the run, in one line, when a worker process or MPI rank has not answered within this "
        f"(default {STEP_TIMEOUT_S:g}, torch.distributed's)",
    )
    add_config_flags(p_train, CONFIG_FLAGS)

    p_sample = commands.add_parser("sample", parents=[common], help="generate text from a checkpoint")
    p_sample.set_defaults(run=run_sample)
    p_sample.add_argument(
        "--out-dir", type=folder, default="out", metavar="DIR", help="the training run's folder (default out)"
    )
    p_sample.add_argument("--best", action="store_true", help="use the best checkpoint by val loss (out-dir/best)")
    p_sample.add_argument("--init-from", metavar="DIR", help=INIT_FROM_HELP + " to sample instead of --out-dir")
    p_sample.add_argument("--prompt", help="text to continue (default: a newline)")
    p_sample.add_argument("--max-new-tokens", type=int, default=500)
    p_sample.add_argument("--temperature", type=float, default=0.8)
    p_sample.add_argument("--top-k", type=int, default=40, help="sample among the k likeliest (0: all)")
    p_sample.add_argument("--seed", type=int, default=1)

    p_bench = commands.add_parser("bench", parents=[common], help="time training iterations on random tokens")
    p_bench.set_defaults(run=run_bench)
    p_bench.add_argument("--preset", choices=PRESETS, default="cpu", help=f"model and batch shapes: {presets}")
    p_bench.add_argument("--iters", type=int, default=10, help="timed iterations (the median is reported)")
    p_bench.add_argument("--warmup", type=int, default=2, help="untimed iterations first")
    p_bench.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    p_bench.add_argument(
        "--vs-torch",
        action="store_true",
        help="also time the same model and recipe in PyTorch eager, in this run, and print the ratio",
    )
    p_bench.add_argument(
        "--profile", action="store_true", help="time each op in a warmed-up one-thread step (1 shard, BLAS on 1 thread)"
    )
    add_config_flags(p_bench, SHAPE_FIELDS, "instead of the preset's")
    add_zero_flag(p_bench)

    p_check = commands.add_parser(
        "gradcheck",
        parents=[common],
        help="check every gradient of the whole GPT against finite differences",
        description="Check d loss / d parameter for every parameter of a GPT, in float64, against central "
        "differences along a random direction and at a few elements, on every rung of kernels this backend runs "
        "(plain, fast, then cpu where Numba is installed or cuda on cupy), or on the one --kernels names "
        "($TINYGPT_KERNELS does not narrow it). Exit 1 names the first rung and parameter that fail.",
    )
    p_check.set_defaults(run=run_gradcheck)
    p_check.add_argument("--preset", choices=PRESETS, default="tiny", help=f"model shapes: {presets} (default tiny)")
    p_check.add_argument(
        "--out-dir", type=folder, metavar="DIR", help="check the checkpoint in DIR instead of a preset"
    )
    p_check.add_argument("--batch-size", type=int, default=4, help="random sequences in the batch (default 4)")
    p_check.add_argument("--elements", type=int, default=3, help="random elements per parameter (default 3)")
    p_check.add_argument("--seed", type=int, default=0, help="seed of the tokens, directions and dropout")
    p_check.add_argument(
        "--tolerance", type=float, default=TOLERANCE, help=f"largest relative error allowed (default {TOLERANCE:g})"
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        mpi.start()  # under mpiexec: MPI first, so that an error on any rank ends the job
        set_backend(args.backend or os.environ.get("TINYGPT_BACKEND") or "numpy")
        set_kernels(args.kernels)
        check_kernels(args.kernels)
        args.run(args)
        return 0
    except BrokenPipeError:  # e.g. `tinygpt sample | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the flush at exit cannot fail
        return mpi.end_job(1)
    except (TrainingInterrupted, KeyboardInterrupt) as e:
        return _fail(args, getattr(e, "exit_code", 130), f"tinygpt: {str(e) or 'interrupted'}")
    except Exception as e:
        return _fail(args, e.exit_code if isinstance(e, TinyGPTError) else 1, f"tinygpt: error: {_describe(e)}")


def _fail(args, code, line):
    """Report a failure on stderr, in one line (with --debug, the traceback), and return the exit
    status; under MPI, end every rank of the job (mpi.end_job), so that none waits on."""
    return mpi.end_job(code, traceback.format_exc().rstrip() if args.debug else line)


def _describe(error):
    """One line for the user: our own errors and OSErrors say what happened; anything else is a bug."""
    if isinstance(error, (TinyGPTError, BackendError)):
        message = str(error)
    elif isinstance(error, MemoryError):
        message = "not enough memory for this configuration (try a smaller --batch-size, --block-size or model)"
    elif isinstance(error, OSError):
        message = f"{error.filename}: {error.strerror}" if error.filename and error.strerror else str(error)
    else:
        message = f"internal error: {type(error).__name__}: {error} (run again with --debug for the traceback)"
    return message.replace("\n", " ")
