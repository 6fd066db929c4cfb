"""The training loop: it learns, logs, keeps the best model, and resumes bit for bit."""

import json
import math
import signal
from dataclasses import replace

import numpy as np
import pytest

from helpers import assert_close
from tiny_runs import tiny_config
from tinygrad_gpt import train as train_module
from tinygrad_gpt.checkpoint import BEST_DIR, read_checkpoint
from tinygrad_gpt.errors import CheckpointError, TinyGPTError, TrainingInterrupted, UsageError
from tinygrad_gpt.optim import AdamW
from tinygrad_gpt.parallel.processes import SharedAdamW
from tinygrad_gpt.train import LOG_FILE, run_config, train


def log_of(out_dir):
    """log.jsonl without the wall-clock field."""
    records = [json.loads(line) for line in (out_dir / LOG_FILE).read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records]


def snapshot(out_dir):
    """Every file of the latest checkpoint, byte for byte."""
    return {
        name: (out_dir / name).read_bytes() for name in ("model.safetensors", "optimizer.safetensors", "config.json")
    }


def test_tiny_model_learns(tmp_path, corpus):
    config = tiny_config(
        n_embd=32, block_size=32, batch_size=8, max_iters=100, eval_interval=50, eval_iters=4, log_interval=10
    )
    train(config, tmp_path, corpus)
    log = log_of(tmp_path)
    vocab_size = read_checkpoint(tmp_path).model_config.vocab_size
    assert [r["step"] for r in log] == [50, 100]
    assert log[-1]["val_loss"] < 0.6 * math.log(vocab_size)  # an untrained model sits at log(vocab)
    assert log[-1]["lr"] == pytest.approx(config.min_lr, rel=0.1)  # the cosine decay has ended
    best = read_checkpoint(tmp_path / BEST_DIR)
    assert best.best_val_loss == min(r["val_loss"] for r in log) and best.step == 100


@pytest.mark.parametrize("stop, accumulate", [("max_iters", 1), ("sigint", 1), ("max_iters", 2)])
def test_resumed_run_matches_an_uninterrupted_one_bit_for_bit(tmp_path, corpus, monkeypatch, stop, accumulate):
    """Straight to 12 steps, versus stopping (at max_iters 6, or Ctrl-C during step 4) and
    resuming to 12: the same losses in the log and the same bytes in the checkpoint. Dropout is
    on, so its random stream must be restored too (one per micro-batch with accumulation)."""
    config = tiny_config(max_iters=12, eval_interval=3, dropout=0.1, gradient_accumulation_steps=accumulate)
    train(config, tmp_path / "straight", corpus)

    resumed = tmp_path / "resumed"
    if stop == "max_iters":
        train(replace(config, max_iters=6), resumed, corpus)  # lr_decay_iters stays 12
    else:

        def get_lr_then_interrupt(step, *args):
            if step == 4:
                signal.raise_signal(signal.SIGINT)
            return get_lr(step, *args)

        get_lr = train_module.get_lr
        monkeypatch.setattr(train_module, "get_lr", get_lr_then_interrupt)
        # Ctrl-C must reach the loop however pytest was started: a shell's background job (`pytest &`)
        # starts with SIGINT ignored, which the loop respects and this test must not inherit
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            with pytest.raises(TrainingInterrupted, match="at step 5.*--resume"):
                train(config, resumed, corpus)
        finally:
            signal.signal(signal.SIGINT, previous)
        monkeypatch.undo()
        assert read_checkpoint(resumed).step == 5
    # what a crash between the log line and its checkpoint leaves: a line the resume must drop
    with open(resumed / LOG_FILE, "a") as f:
        f.write('{"step": 9, "train_loss": 0.0}\n{"step": 1')
    train(run_config(resumed, None, {"max_iters": 12}, resume=True), resumed, corpus, resume=True)

    assert log_of(resumed) == log_of(tmp_path / "straight")
    assert [r["step"] for r in log_of(resumed)] == [3, 6, 9, 12]
    assert snapshot(resumed) == snapshot(tmp_path / "straight")


def test_resume_at_max_iters_changes_nothing(tmp_path, corpus):
    train(tiny_config(max_iters=4, eval_interval=2), tmp_path, corpus)
    before = snapshot(tmp_path), log_of(tmp_path)
    train(run_config(tmp_path, None, {}, resume=True), tmp_path, corpus, resume=True)
    assert (snapshot(tmp_path), log_of(tmp_path)) == before


def test_run_refuses_to_overwrite_or_reshape_a_checkpoint(tmp_path, corpus):
    train(tiny_config(max_iters=2, eval_interval=2), tmp_path, corpus)
    with pytest.raises(TinyGPTError, match="already holds a checkpoint.*--resume"):
        train(tiny_config(max_iters=2), tmp_path, corpus)
    with pytest.raises(UsageError, match="--n-layer 3 differs"):
        train(run_config(tmp_path, None, {"n_layer": 3}, resume=True), tmp_path, corpus, resume=True)


def gradients_of_first_step(tmp_path, corpus, monkeypatch, **overrides):
    """The gradients AdamW receives at step 1 of a run (dropout off, no clipping), whichever AdamW
    steps: the worker processes' SharedAdamW where two shards have a process each."""
    seen = []
    for cls in (AdamW, SharedAdamW):

        def step(self, step=cls.step):
            seen.append({name: p.grad.copy() for name, p in self.named_parameters})
            step(self)

        monkeypatch.setattr(cls, "step", step)
    train(tiny_config(max_iters=1, eval_interval=1, grad_clip=0.0, **overrides), tmp_path, corpus)
    return seen[0]


@pytest.mark.parametrize("threads", ["1", "2"])
def test_accumulated_micro_batches_give_the_gradient_of_one_big_batch(tmp_path, corpus, monkeypatch, threads):
    """Batch 8 in one step, and 4 micro-batches of 2 (on one thread, and split over two): the
    same 8 sequences, the same gradient to float32 rounding."""
    monkeypatch.setenv("TINYGPT_CPU_THREADS", threads)
    big = gradients_of_first_step(tmp_path / "big", corpus, monkeypatch, batch_size=8)
    micro = gradients_of_first_step(
        tmp_path / "micro", corpus, monkeypatch, batch_size=2, gradient_accumulation_steps=4
    )
    for name, grad in big.items():
        assert_close(micro[name], grad, rtol=1e-5)
    halved = gradients_of_first_step(tmp_path / "half", corpus, monkeypatch, batch_size=4)
    assert not np.allclose(halved["transformer.wte.weight"], big["transformer.wte.weight"], rtol=1e-3)


def test_run_config_errors(tmp_path):
    assert run_config(tmp_path, "tiny", {"max_iters": 7}, resume=False).lr_decay_iters == 7
    with pytest.raises(UsageError, match="invalid config: learning_rate"):
        run_config(tmp_path, "tiny", {"learning_rate": -1.0}, resume=False)
    with pytest.raises(UsageError, match="gradient_accumulation_steps must be a positive integer"):
        run_config(tmp_path, "tiny", {"gradient_accumulation_steps": 0}, resume=False)
    assert run_config(tmp_path, None, {"init_from": "gpt2"}, resume=False).learning_rate == 3e-5  # finetune
    with pytest.raises(UsageError, match="finetune preset starts from a pretrained model"):
        run_config(tmp_path, "finetune", {}, resume=False)
    with pytest.raises(UsageError, match="--n-embd: the model's shape comes from --init-from"):
        run_config(tmp_path, None, {"init_from": "gpt2", "n_embd": 64}, resume=False)
    with pytest.raises(UsageError, match="--init-from starts a new run"):
        run_config(tmp_path, None, {"init_from": "gpt2"}, resume=True)
    with pytest.raises(CheckpointError, match="config.json"):
        run_config(tmp_path, None, {}, resume=True)


def test_model_config_errors_are_usage_errors(tmp_path, corpus):
    with pytest.raises(UsageError, match="n_embd=16 must be divisible by n_head=3"):
        train(tiny_config(n_head=3), tmp_path, corpus)


def test_loss_plot(tmp_path, corpus):
    pytest.importorskip("matplotlib")
    train(tiny_config(max_iters=4, eval_interval=2), tmp_path, corpus)
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG")


def test_a_non_finite_gradient_norm_stops_the_run_even_without_clipping(tmp_path, corpus, monkeypatch):
    real_norm, calls = train_module.grad_norm, []

    def norm_that_breaks_at_step_3(params, sum_over=None):
        calls.append(1)
        return real_norm(params, sum_over) * (math.inf if len(calls) == 4 else 1.0)

    monkeypatch.setattr(train_module, "grad_norm", norm_that_breaks_at_step_3)
    with pytest.raises(TinyGPTError, match="not finite at step 3;"):
        train(tiny_config(grad_clip=0.0), tmp_path, corpus)
    assert not (tmp_path / "config.json").exists()  # nothing was saved from the bad steps
