"""The training loop (nanoGPT's train.py on our engine): resumable bit for bit, stops cleanly.

Reproducibility: every random draw of a step comes from (seed, step) alone. The batch of step s
comes from np.random.default_rng([seed, s]) (all its micro-batches in one draw) and its dropout
masks from engine.manual_seed(a number derived from (seed, s, micro-batch), and the shard on a
multi-core CPU: tinygrad_gpt/parallel/shards.py); eval batches come from their own fixed streams. So a
run resumed from a checkpoint at step s replays exactly what the uninterrupted run would have done. (Batches are
drawn on the host, the same on both backends; dropout masks come from the backend's generator.)

Under MPI (`mpiexec -n N tinygpt train`, tinygrad_gpt/parallel/mpi.py) every rank runs this loop on
its rows of each batch, and rank 0 alone writes: the log, the checkpoints, stdout.
"""

import functools
import hashlib
import json
import math
import shlex
import signal
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tinygrad_gpt import engine
from tinygrad_gpt.checkpoint import (
    BEST_DIR,
    CONFIG_FILE,
    PREVIOUS_DIR,
    Checkpoint,
    check_no_links_out,
    load_model,
    load_optimizer,
    load_tokenizer,
    read_checkpoint,
    save_checkpoint,
)
from tinygrad_gpt.config import MODEL_FIELDS, TrainConfig, preset_config
from tinygrad_gpt.data import TextDataset, load_dataset, resolve_data_path
from tinygrad_gpt.engine import backend, no_grad
from tinygrad_gpt.errors import TrainingDiverged, TrainingInterrupted, UsageError
from tinygrad_gpt.fileio import OutDirLock, atomic_write
from tinygrad_gpt.hf.gpt2 import pretrained_tokenizer, read_config, resolve
from tinygrad_gpt.model import GPT, GPTConfig
from tinygrad_gpt.optim import AdamW, clip_grad_norm_, get_lr, grad_norm
from tinygrad_gpt.parallel import data_parallel, processes, shard_workers
from tinygrad_gpt.parallel.mpi import World
from tinygrad_gpt.parallel.shards import default_shards, describe_shards
from tinygrad_gpt.parallel.zero import ShardedAdamW
from tinygrad_gpt.sample import default_prompt

LOG_FILE = "log.jsonl"
LOSS_PLOT = "loss.png"
# Seed words that keep the dropout and eval streams apart from the batch stream [seed, step]
# (2**32 - 1 stands where a step number would, one no run reaches).
DROPOUT_STREAM = 1
EVAL_STREAMS = {"train": [2**32 - 1, 1], "val": [2**32 - 1, 2]}
# How long a wait on another process (a worker process's answer, the other ranks in a collective)
# may last before the run ends: torch.distributed's default process-group timeout.
STEP_TIMEOUT_S = 600.0


def batch_rng(seed, step):
    return np.random.default_rng([seed, step])


def dropout_seed(seed, step, micro_step=0):
    # micro-step 0 keeps the seed that runs without gradient accumulation have always had
    words = [seed, step, DROPOUT_STREAM] + ([micro_step] if micro_step else [])
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def run_config(out_dir, preset, overrides, resume):
    """The TrainConfig for a run: a preset (default: cpu, or finetune with --init-from) with the
    given flags replacing its values, or on resume the checkpoint's config with them."""
    init_from = overrides.get("init_from")
    if init_from and resume:
        raise UsageError("--init-from starts a new run from a pretrained model; --resume continues --out-dir's")
    preset = preset or ("finetune" if init_from else "cpu")
    if preset == "finetune" and not init_from and not resume:
        raise UsageError("the finetune preset starts from a pretrained model: pass --init-from DIR (or gpt2)")
    if init_from and (shaped := [name for name in ("n_layer", "n_head", "n_embd") if name in overrides]):
        raise UsageError(f"--{shaped[0].replace('_', '-')}: the model's shape comes from --init-from")
    saved = read_checkpoint(out_dir).train_config if resume else None
    try:
        return replace(saved, **overrides) if resume else preset_config(preset, **overrides)
    except ValueError as e:
        raise UsageError(f"invalid config: {e}") from None


def train(config, out_dir="out", data=None, resume=False, world=None, zero=0, step_timeout=STEP_TIMEOUT_S):
    """Train per config, checkpointing into out_dir; with resume, continue out_dir's checkpoint.
    data: the text file (else $TINYGPT_DATA, else the Tiny Shakespeare that ships with us). world: the
    processes training together (distributed.init()), else this one alone; zero=1: they share
    AdamW's state out (ZeRO-1, parallel/zero.py). step_timeout: seconds a wait on another process
    may last. The run is out_dir's one writer (OutDirLock, rank 0's): a second run there is
    refused before it writes anything."""
    world, out_dir = world or World(), Path(out_dir)
    world.timeout = step_timeout
    with OutDirLock(out_dir) as lock:
        if world.rank == 0 and out_dir.is_dir():  # else no run holds it yet: taken once it is made
            lock.acquire()
        _train(config, out_dir, data, resume, world, zero, lock)


def _train(config, out_dir, data, resume, world, zero, lock):
    run = make_run(config, out_dir, data, resume)
    world.check_same(agreed_digests(run))  # before the first collective, which other shapes would break
    config, model, dataset, step, best_val_loss = run.config, run.model, run.dataset, run.step, run.best_val_loss
    optimizer = make_optimizer(model, config, world, zero, run.checkpoint)
    if not _prepare_out_dir(out_dir, world, step, config.max_iters, lock):
        return
    shards = default_shards(config.batch_size // world.size, world.local_size)
    _announce(run, world, shards, out_dir)
    save = functools.partial(_save, world, model, dataset.tokenizer, config)
    model.train()
    xp = backend.get_xp()
    backend.keep_freed_host_memory()  # a step makes many large temporaries (set before workers fork)
    parallel, optimizer, params, sum_over = data_parallel(model, optimizer, world, shards, world.timeout)
    accumulate = config.gradient_accumulation_steps
    rows = config.batch_size * accumulate  # a step's batch, taken in `accumulate` micro-batches
    start = synced_time = time.time()
    if run.pretrained:  # where fine-tuning starts from (nanoGPT's evaluation at step 0; nothing saved)
        _log_losses(out_dir, world, step, estimate_loss(model, dataset, config, world), config.learning_rate, start)
    synced_step, finite_flags = step, []  # one 0-d device bool per step since the last sync, read together
    bar = tqdm(total=config.max_iters, initial=step, dynamic_ncols=True, disable=world.rank > 0 or None, unit="it")
    # numpy's overflow warnings would only repeat what the finiteness check reports
    with _InterruptFlag() as interrupted, np.errstate(all="ignore"), bar:
        while step < config.max_iters:
            lr = get_lr(step, config.learning_rate, config.min_lr, config.warmup_iters, config.lr_decay_iters)
            optimizer.lr = lr
            x, y = dataset.get_batch("train", rows, config.block_size, batch_rng(config.seed, step))
            loss = 0.0  # the step's mean loss over its micro-batches, on the device
            for micro_step, (xm, ym) in enumerate(zip(np.split(x, accumulate), np.split(y, accumulate))):
                seed = dropout_seed(config.seed, step, micro_step)
                if parallel is None:
                    engine.manual_seed(seed)  # this micro-step's dropout masks
                    _, micro_loss = model(xm, ym)  # forward (host ids: checked there, then sent to the device)
                    micro_loss = micro_loss / accumulate  # so the summed gradients are the whole batch's
                    micro_loss.backward()  # backward: adds into every parameter's .grad
                else:  # the same, the micro-batch split over CPU cores or MPI ranks, which sum once a step
                    micro_loss = parallel.step(xm, ym, seed, scale=1 / accumulate, sync=micro_step == accumulate - 1)
                loss = loss + micro_loss.data
            if config.grad_clip > 0:
                norm = clip_grad_norm_(params, config.grad_clip, sum_over)
            else:
                norm = grad_norm(params, sum_over)
            finite_flags.append(xp.isfinite(loss) & xp.isfinite(norm))
            optimizer.step()  # AdamW
            optimizer.zero_grad()
            step += 1
            bar.update()
            stop = world.any(interrupted)  # Ctrl-C or SIGTERM (under MPI, any rank's: all stop at this step)

            evaluate = step % config.eval_interval == 0 or step == config.max_iters
            if step % config.log_interval == 0 or evaluate or stop:  # the one host sync of the loop
                _check_finite(finite_flags, synced_step, out_dir)  # before anything gets saved
                now = time.time()
                tokens_per_s = (step - synced_step) * rows * config.block_size / (now - synced_time)
                bar.set_postfix({"loss": f"{float(backend.to_numpy(loss)):.4f}", "tok/s": f"{tokens_per_s:,.0f}"})
                finite_flags, synced_step, synced_time = [], step, now
            if evaluate:
                losses = estimate_loss(model, dataset, config, world)
                _log_losses(out_dir, world, step, losses, lr, start)
                improved = best_val_loss is None or losses["val"] < best_val_loss
                best_val_loss = losses["val"] if improved else best_val_loss
                save(out_dir, step, best_val_loss, optimizer)
                if improved:
                    save(out_dir / BEST_DIR, step, best_val_loss)
                synced_time = time.time()  # tokens/s counts training, not this evaluation and save
            if stop and step < config.max_iters:
                if not evaluate:
                    save(out_dir, step, best_val_loss, optimizer)
                command = _resume_command(world, out_dir, data)
                raise TrainingInterrupted(
                    f"{interrupted.how} at step {step}; checkpoint saved in {out_dir}; resume with: {command}",
                    interrupted.exit_code,
                )
    if world.rank == 0:
        _plot_losses(out_dir)
        _print_sample(model, dataset.tokenizer, config.seed, step)


@dataclass
class Run:
    """Where a run starts: its config (a pretrained model's shape in it), the model, the data (with
    its tokenizer), the step and best val loss so far, the checkpoint it resumes or the pretrained
    folder it fine-tunes (else None), and what it is doing, for its first line."""

    config: TrainConfig
    model: GPT
    dataset: TextDataset
    data_path: Path
    step: int = 0
    best_val_loss: float | None = None
    checkpoint: Checkpoint | None = None
    pretrained: Path | None = None
    doing: str = "training"


def make_run(config, out_dir, data=None, resume=False):
    """A fresh run, one resumed from out_dir's checkpoint, or one fine-tuning the pretrained model
    config.init_from; data as for train()."""
    checkpoint = read_checkpoint(out_dir) if resume else None
    if not resume and (out_dir / CONFIG_FILE).exists():
        raise UsageError(f"{out_dir} already holds a checkpoint; continue it with --resume, or pick another --out-dir")
    pretrained = resolve(config.init_from) if config.init_from and not checkpoint else None
    if pretrained:
        config = _shaped_like(config, read_config(pretrained))
    tokenizer = load_tokenizer(checkpoint) if checkpoint else pretrained_tokenizer(pretrained) if pretrained else None
    path = resolve_data_path(data)
    dataset = load_dataset(path, config.block_size, tokenizer)
    notes = _resume_notes(config, checkpoint, dataset) if checkpoint else []
    config = replace(config, data_sha256=dataset.sha256)
    if checkpoint:
        _check_same_model(config, checkpoint.train_config)
        resumed = dict(step=checkpoint.step, best_val_loss=checkpoint.best_val_loss, checkpoint=checkpoint)
        doing = f"resuming at step {checkpoint.step}" + (f" ({'; '.join(notes)})" if notes else "")
        return Run(config, load_model(checkpoint), dataset, path, **resumed, doing=doing)
    if pretrained:
        model = GPT.from_pretrained(pretrained, dropout=config.dropout)
        model.crop_block_size(config.block_size)
        return Run(config, model, dataset, path, pretrained=pretrained, doing=f"fine-tuning {pretrained}")
    model_config = {name: getattr(config, name) for name in MODEL_FIELDS}
    try:
        model = GPT(GPTConfig(vocab_size=dataset.tokenizer.vocab_size, **model_config), seed=config.seed)
    except ValueError as e:
        raise UsageError(f"invalid config: {e}") from None
    return Run(config, model, dataset, path)


def _resume_notes(config, checkpoint, dataset):
    """What a resumed run changes unasked, for its first line: other data than the checkpoint's
    (older checkpoints did not record theirs), or a --max-iters past the end of the learning-rate
    decay, whose steps would all run at min_lr."""
    saved, notes = checkpoint.train_config, []
    if saved.data_sha256 not in (None, dataset.sha256):
        notes.append(f"other data than the checkpoint's: sha256 {dataset.sha256[:12]}, not {saved.data_sha256[:12]}")
    if config.max_iters > config.lr_decay_iters >= saved.max_iters:
        notes.append(
            f"steps {max(checkpoint.step, config.lr_decay_iters)} to {config.max_iters} run at min_lr "
            f"{config.min_lr:g}, past the decay's end at {config.lr_decay_iters}: --lr-decay-iters moves it"
        )
    return notes


def agreed_digests(run):
    """What every rank of a run must share, as digests: its text, vocabulary and config."""
    config = {k: v for k, v in asdict(run.config).items() if k != "data_sha256"}  # the text has its own
    return {
        "data": run.dataset.sha256,
        "vocabulary": hashlib.sha256(run.dataset.tokenizer.to_json().encode()).hexdigest(),
        "config": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
    }


def make_optimizer(model, config, world, zero=0, checkpoint=None):
    """AdamW over the model's parameters, once every rank holds rank 0's (ZeRO-1's ShardedAdamW,
    which keeps this rank's shard of its state alone, with zero=1), restored from the checkpoint."""
    if config.batch_size < world.size:
        raise UsageError(f"--batch-size {config.batch_size} is less than the {world.size} processes: each needs a row")
    world.broadcast_parameters(model.parameters())
    optimizer = AdamW(
        model.named_parameters(), lr=config.learning_rate, betas=(0.9, config.beta2), weight_decay=config.weight_decay
    )
    if zero:
        optimizer = ShardedAdamW(optimizer, world)
    if checkpoint:
        load_optimizer(checkpoint, optimizer)
    return optimizer


def _prepare_out_dir(out_dir, world, step, max_iters, lock):
    """Whether there is training to do, once out_dir is ready for it: made, locked, with log lines
    past `step` dropped (rank 0, the one writer; this also finds an unwritable out-dir early)."""
    if world.rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        lock.acquire()
        check_no_links_out(out_dir, [BEST_DIR, PREVIOUS_DIR, LOSS_PLOT])
        _keep_log_until(out_dir / LOG_FILE, step)
    if step >= max_iters:
        print(f"{out_dir} is already at step {step} >= max_iters {max_iters}; pass a larger --max-iters to go on")
    return step < max_iters


def _resume_command(world, out_dir, data):
    """The command that continues this run (under MPI, started the same way)."""
    data_flag = ["--data", str(data)] if data else []
    return shlex.join(world.command("train", "--out-dir", str(out_dir), "--resume", *data_flag))


def _print_sample(model, tokenizer, seed, step):
    """What the trained model writes after the default prompt, as training's last words."""
    prompt = tokenizer.encode(default_prompt(tokenizer))[None]
    sample = model.generate(prompt, 200, temperature=0.8, top_k=40, seed=seed)
    print(f"sample after {step} steps:\n{tokenizer.decode(sample[0])}")


def _announce(run, world, shards, out_dir):
    """The run's first line: what it does, on what, from which data, into which folder."""
    processes = f", {world.size} processes" if world.distributed else ""
    threads = describe_shards(shards, shard_workers(world), each=world.distributed)
    ours_only = "" if run.model.config.bias else " (bias=False: ours only, transformers cannot load them)"
    print(
        f"{run.doing}: {run.model.num_params():,} parameters on {backend.name()}{processes}{threads}, "
        f"data {run.data_path} (vocab {run.dataset.tokenizer.vocab_size}), checkpoints in {out_dir}{ours_only}"
    )


def _save(world, model, tokenizer, config, directory, step, best_val_loss, optimizer=None):
    """A checkpoint into directory, written by rank 0; with the optimizer, every rank takes part (a
    ShardedAdamW gathers its state from all)."""
    if world.rank == 0:
        save_checkpoint(directory, model, tokenizer, config, step, best_val_loss, optimizer)
    elif optimizer is not None:
        optimizer.state_dict()  # this rank's part of the gather


def _check_finite(finite_flags, first_step, out_dir):
    """Stop at the first step since first_step whose loss or gradient norm was not finite."""
    flags = backend.to_numpy(backend.get_xp().stack(finite_flags))
    if not flags.all():
        raise TrainingDiverged(
            f"loss or gradient norm is not finite at step {first_step + int(np.argmin(flags))}; stopped "
            f"(try a lower --learning-rate); the last checkpoint in {out_dir} is left as it was"
        )


def _log_losses(out_dir, world, step, losses, lr, start):
    """Print the losses of an evaluation and append them to log.jsonl (rank 0, the one writer)."""
    if not all(map(math.isfinite, losses.values())):
        raise TrainingDiverged(
            f"the eval loss is not finite at step {step}; stopped; the last checkpoint in {out_dir} is left as it was"
        )
    record = dict(
        step=step, train_loss=losses["train"], val_loss=losses["val"], lr=lr, elapsed_s=round(time.time() - start, 3)
    )
    tqdm.write(f"step {step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
    if world.rank == 0:
        with open(out_dir / LOG_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")


def _shaped_like(config, pretrained):
    """The run's config with the pretrained model's shape (pretrained: its GPTConfig); the run's
    context may be shorter than the model's, not longer."""
    if config.block_size > pretrained.block_size:
        raise UsageError(
            f"--block-size {config.block_size} is longer than the pretrained model's {pretrained.block_size} positions"
        )
    return replace(config, n_layer=pretrained.n_layer, n_head=pretrained.n_head, n_embd=pretrained.n_embd)


def _check_same_model(config, saved):
    for name in MODEL_FIELDS:
        if getattr(config, name) != getattr(saved, name):
            raise UsageError(
                f"--{name.replace('_', '-')} {getattr(config, name)} differs from the checkpoint's "
                f"{getattr(saved, name)}; a resumed run keeps its model"
            )


@no_grad()
def estimate_loss(model, dataset, config, world=None):
    """Mean loss over eval_iters batches of each split, in eval mode (no dropout). The batches
    are the same at every eval (fixed streams), so successive evals compare like with like.
    With a world of several processes, each takes its rows of every batch and the sums add up."""
    world = world or World()
    model.eval()
    totals = []
    for split, stream in EVAL_STREAMS.items():
        rng = np.random.default_rng([config.seed, *stream])
        total = 0.0
        for _ in range(config.eval_iters):
            x, y = dataset.get_batch(split, config.batch_size, config.block_size, rng)
            rows, share = world.rows(len(x))
            _, loss = model(x[rows], y[rows])
            total = total + loss.data * share  # summed on the device, read once below
        totals.append(total)
    totals = backend.to_numpy(world.allreduce_sum(backend.get_xp().stack(totals)))
    model.train()
    return {split: float(total) / config.eval_iters for split, total in zip(EVAL_STREAMS, totals)}


def _keep_log_until(path, step):
    """Drop log lines past `step` (written after the checkpoint we resume from) and any torn
    last line, so the log matches the run being continued; a fresh run (step 0) starts empty."""
    kept = []
    if step > 0 and path.exists():
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line + "\n")
            except (ValueError, KeyError, TypeError):
                pass
    atomic_write({path: "".join(kept).encode()})


class _InterruptFlag:
    """Within the block, Ctrl-C or SIGTERM (what a scheduler, systemd or `kill` sends) sets a flag
    (truthy) that the loop checks after each step, so a checkpoint is never cut in half; a second
    one raises KeyboardInterrupt (Ctrl-C) or ends the process with 143 (SIGTERM). The flag also
    tells a wait on a stalled worker process to give up (processes.INTERRUPTED). `how` and
    `exit_code` say which came first."""

    SIGNALS = {signal.SIGINT: ("interrupted", 130), signal.SIGTERM: ("terminated", 143)}

    def __enter__(self):
        self.raised, self.how, self.exit_code = False, None, None
        self.previous = {signum: signal.getsignal(signum) for signum in self.SIGNALS}
        for signum, previous in self.previous.items():
            if previous is not signal.SIG_IGN:  # a process that ignores a signal goes on ignoring it
                signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.raised:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(self.SIGNALS[signum][1])
        self.raised = True
        self.how, self.exit_code = self.SIGNALS[signum]
        processes.INTERRUPTED.set(self.how, self.exit_code)

    def __bool__(self):
        return self.raised

    def __exit__(self, *exc):
        processes.INTERRUPTED.clear()
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)


def _plot_losses(out_dir):
    """out_dir/loss.png from log.jsonl, when matplotlib is installed (the `plot` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    records = [json.loads(line) for line in (out_dir / LOG_FILE).read_text().splitlines()]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("train_loss", "val_loss"):
        ax.plot([r["step"] for r in records], [r[key] for r in records], label=key.replace("_", " "))
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss")
    ax.legend()
    fig.savefig(out_dir / LOSS_PLOT, dpi=120, bbox_inches="tight")
    plt.close(fig)
