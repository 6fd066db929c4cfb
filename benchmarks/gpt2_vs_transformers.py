"""GPT-2 124M-shaped (random weights), ours against transformers eager on the same CPU, in one run.

transformers builds GPT-2 small's shape (12 layers, 12 heads, width 768, vocab 50257, 1024
positions, dropout 0) and saves it; GPT.from_pretrained loads that folder. Then, interleaved run by
run so that neither side always meets a warm or a cold machine:
  - sampling: greedy decoding with a KV cache (ours: GPT.generate with top_k=1; theirs:
    model.generate(do_sample=False)), new tokens per second;
  - training: one step (forward, backward, gradient clipping, AdamW), milliseconds; ours as
    `tinygpt train` runs it (the batch split over the cores), theirs as a PyTorch loop would.
Medians of --runs after one warm-up each; also the logits' worst relative error between the two
(float32, and float64 from the same folder), and whether their greedy tokens agree.

    python benchmarks/gpt2_vs_transformers.py [--runs 5] [--json]
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import numpy as np
import torch
import transformers

from tinygrad_gpt import GPT
from tinygrad_gpt.engine import backend
from tinygrad_gpt.optim import AdamW, clip_grad_norm_
from tinygrad_gpt.parallel.shards import DataParallel, default_shards


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each, after one warm-up (default 5)")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens generated per sampling run")
    parser.add_argument("--batch-size", type=int, default=1, help="sequences per training step (as finetune)")
    parser.add_argument("--block-size", type=int, default=256, help="tokens per sequence (default 256, as finetune)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    return parser.parse_args()


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(ours, theirs, runs):
    """Median seconds of ours() and theirs(), one warm-up each, then taking turns."""
    ours(), theirs()
    times = [(seconds(ours), seconds(theirs)) for _ in range(runs)]
    return statistics.median(t for t, _ in times), statistics.median(t for _, t in times)


def worst_relative_error(ours, theirs, ids):
    """The largest, over positions, of max |ours - theirs| / max |theirs| along the vocabulary."""
    with torch.no_grad():
        reference = theirs(torch.as_tensor(ids)).logits.numpy()
    logits = ours(ids)[0].numpy()
    return float((np.abs(logits - reference).max(-1) / np.abs(reference).max(-1)).max())


def main():
    args = parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run(args, folder)


def run(args, folder):
    backend.keep_freed_host_memory()  # as training does
    torch.manual_seed(0)
    config = transformers.GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # GPT-2 small's shape
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    theirs = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    ours = GPT.from_pretrained(folder)
    rng = np.random.default_rng(0)
    V = config.vocab_size
    ids = rng.integers(0, V, (1, 128))
    worst = worst_relative_error(ours, theirs, ids)

    prompt = rng.integers(0, V, (1, args.prompt_tokens))
    n = args.new_tokens
    generated = {}

    def sample_ours():
        generated["ours"] = ours.generate(prompt, n, top_k=1)

    def sample_theirs():
        with torch.no_grad():
            generated["theirs"] = theirs.generate(
                torch.as_tensor(prompt), max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0
            ).numpy()

    sample_s = interleaved(sample_ours, sample_theirs, args.runs)
    same_tokens = bool(np.array_equal(generated["ours"], generated["theirs"]))

    x, y = (rng.integers(0, V, (args.batch_size, args.block_size)) for _ in range(2))
    ours.train()
    optimizer = AdamW(ours.named_parameters(), lr=3e-5, betas=(0.9, 0.95), weight_decay=0.1)
    shards = default_shards(args.batch_size)
    forward_backward = DataParallel(ours, shards, optimizer=optimizer)  # as training does:
    optimizer, params = forward_backward.optimizer, ours.parameters()  # the processes share AdamW out

    def train_ours():
        forward_backward.step(x, y, 0)
        clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()

    theirs.train()
    decay = [p for p in theirs.parameters() if p.ndim >= 2]
    no_decay = [p for p in theirs.parameters() if p.ndim < 2]
    torch_optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=3e-5, betas=(0.9, 0.95)
    )
    tx, ty = torch.as_tensor(x), torch.as_tensor(y)

    def train_theirs():
        logits = theirs(tx).logits
        loss = torch.nn.functional.cross_entropy(logits.view(-1, V), ty.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
        torch_optimizer.step()
        torch_optimizer.zero_grad(set_to_none=True)

    train_s = interleaved(train_ours, train_theirs, args.runs)
    worst64 = worst_relative_error(
        GPT.from_pretrained(folder, dtype=np.float64),
        transformers.GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float64).eval(),
        ids,
    )

    result = {
        "machine": f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores, {platform.platform()}",
        "numpy": np.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "our_shards": shards,
        "attention": theirs.config._attn_implementation,
        "runs": args.runs,
        "logits_worst_relative_error_f32": worst,
        "logits_worst_relative_error_f64": worst64,
        "greedy_tokens_equal": same_tokens,
        "sample": {
            "prompt_tokens": args.prompt_tokens,
            "new_tokens": n,
            "ours_tokens_per_s": n / sample_s[0],
            "theirs_tokens_per_s": n / sample_s[1],
            "time_ratio_ours_over_theirs": sample_s[0] / sample_s[1],
        },
        "train_step": {
            "batch_size": args.batch_size,
            "block_size": args.block_size,
            "ours_ms": train_s[0] * 1e3,
            "theirs_ms": train_s[1] * 1e3,
            "time_ratio_ours_over_theirs": train_s[0] / train_s[1],
        },
    }
    s, t = result["sample"], result["train_step"]
    print(f"GPT-2 124M shape, random weights; {result['machine']}; medians of {args.runs} interleaved runs")
    print(f"transformers {transformers.__version__} ({result['attention']} attention), torch {torch.__version__}")
    print(f"logits, worst relative error: {worst:.1e} (float32), {worst64:.1e} (float64)")
    print(f"greedy tokens equal: {same_tokens}")
    print(f"{'':34}{'ours':>12}{'transformers':>14}{'time ours/theirs':>18}")
    print(
        f"{'sampling, tokens/s (KV cache)':34}{s['ours_tokens_per_s']:>12.2f}{s['theirs_tokens_per_s']:>14.2f}"
        f"{s['time_ratio_ours_over_theirs']:>18.2f}"
    )
    print(
        f"{f'train step, ms ({args.batch_size}x{args.block_size})':34}{t['ours_ms']:>12.0f}{t['theirs_ms']:>14.0f}"
        f"{t['time_ratio_ours_over_theirs']:>18.2f}"
    )
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
