"""GPT-2 124M-shaped (random weights), ours against transformers eager on the same CPU, in one run.

transformers builds GPT-2 small's shape (12 layers, 12 heads, width 768, vocab 50257, 1024
positions, dropout 0) and saves it; GPT.from_pretrained loads that folder. Then, taking turns so
that neither side always meets a warm or a cold machine:
  - sampling, in this process, run by run: greedy decoding with a KV cache (ours: GPT.generate
    with top_k=1; theirs: model.generate(do_sample=False)), new tokens per second, the median of
    --runs after one warm-up each;
  - training, process by process: --rounds times, a fresh process that trains ours alone, then
    one that trains transformers' model alone, each importing only its own libraries (as a user
    runs either), two warm-up steps and then --steps timed ones (forward, backward, gradient
    clipping, AdamW; ours as `tinygpt train` runs it, theirs as a PyTorch loop would). Milliseconds
    a step, the median over all timed steps of a side, and each side's peak resident memory
    (VmHWM, Linux). Two libraries in one process would share one malloc heap, which ours tunes
    for training (engine.backend.keep_freed_host_memory), and each other's spinning idle threads.
    --their-malloc-as-ours gives transformers' processes the same glibc settings through the
    environment (MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, MALLOC_ARENA_MAX), which PyTorch
    does not make by itself.
Also the logits' worst relative error between the two (float32, and float64 from the same folder),
and whether their greedy tokens agree.

    python benchmarks/gpt2_vs_transformers.py [--runs 5] [--rounds 4] [--steps 3] [--their-malloc-as-ours] [--json]
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from tinygrad_gpt import GPT
from tinygrad_gpt.engine import backend
from tinygrad_gpt.optim import AdamW, clip_grad_norm_
from tinygrad_gpt.parallel.shards import DataParallel, default_shards


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed sampling runs of each, after one warm-up")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens generated per sampling run")
    parser.add_argument("--batch-size", type=int, default=1, help="sequences per training step (as finetune)")
    parser.add_argument("--block-size", type=int, default=256, help="tokens per sequence (default 256, as finetune)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the results")
    parser.add_argument("--rounds", type=int, default=4, help="training processes of each side, taking turns")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per process, after 2 warm-up")
    parser.add_argument("--their-malloc-as-ours", action="store_true", help="glibc settings of ours for theirs")
    parser.add_argument("--alone", choices=("ours", "theirs"), help=argparse.SUPPRESS)  # a training process
    parser.add_argument("--folder", help=argparse.SUPPRESS)
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
    import torch

    with torch.no_grad():
        reference = theirs(torch.as_tensor(ids)).logits.numpy()
    logits = ours(ids)[0].numpy()
    return float((np.abs(logits - reference).max(-1) / np.abs(reference).max(-1)).max())


def main():
    args = parse_args()
    if args.alone:
        return alone(args)
    with tempfile.TemporaryDirectory() as folder:
        run(args, folder)


def our_train_step(ours, x, y):
    """One training step of ours as `tinygpt train` runs it: the batch split over the cores."""
    ours.train()
    optimizer = AdamW(ours.named_parameters(), lr=3e-5, betas=(0.9, 0.95), weight_decay=0.1)
    forward_backward = DataParallel(ours, default_shards(len(x)), optimizer=optimizer)
    optimizer, params = forward_backward.optimizer, ours.parameters()  # the processes share AdamW out

    def train_ours():
        forward_backward.step(x, y, 0)
        clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()

    return train_ours


def their_train_step(theirs, x, y):
    """One training step of transformers' model in a plain PyTorch loop."""
    import torch

    theirs.train()
    decay = [p for p in theirs.parameters() if p.ndim >= 2]
    no_decay = [p for p in theirs.parameters() if p.ndim < 2]
    torch_optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=3e-5, betas=(0.9, 0.95)
    )
    tx, ty = torch.as_tensor(x), torch.as_tensor(y)

    def train_theirs():
        logits = theirs(tx).logits
        loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), ty.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(theirs.parameters(), 1.0)
        torch_optimizer.step()
        torch_optimizer.zero_grad(set_to_none=True)

    return train_theirs


def batch(args, vocab_size):
    rng = np.random.default_rng(1)
    return [rng.integers(0, vocab_size, (args.batch_size, args.block_size)) for _ in range(2)]


def alone(args):
    """A training process of one side: 2 warm-up steps, --steps timed ones; prints (JSON) their
    milliseconds and the process's peak RSS."""
    if args.alone == "ours":
        backend.keep_freed_host_memory()  # as training does
        model = GPT.from_pretrained(args.folder)
        step = our_train_step(model, *batch(args, model.config.vocab_size))
    else:
        import transformers

        model = transformers.GPT2LMHeadModel.from_pretrained(args.folder)
        step = their_train_step(model, *batch(args, model.config.vocab_size))
    step(), step()
    ms = [seconds(step) * 1e3 for _ in range(args.steps)]
    print(json.dumps({"step_ms": ms, "peak_rss_mb": peak_rss_of_this_process()}))


def peak_rss_of_this_process():
    """VmHWM in MB: this process's peak resident memory since its exec (ru_maxrss would carry the
    parent's over the exec on Linux)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


# engine.backend.keep_freed_host_memory's mallopt calls, as glibc's environment variables
OUR_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30), "MALLOC_ARENA_MAX": "1"}


def train_in_turns(args, folder):
    """{side: (median step ms, peak RSS MB)}, from --rounds processes of each side taking turns."""
    found = {"ours": ([], []), "theirs": ([], [])}
    for _ in range(args.rounds):
        for side, (ms, rss) in found.items():
            command = [sys.executable, __file__, "--alone", side, "--folder", folder, "--steps", str(args.steps)]
            command += ["--batch-size", str(args.batch_size), "--block-size", str(args.block_size)]
            env = dict(os.environ, **(OUR_MALLOC if side == "theirs" and args.their_malloc_as_ours else {}))
            printed = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
            out = json.loads(printed.splitlines()[-1])
            ms += out["step_ms"]
            rss.append(out["peak_rss_mb"])
    return {side: (statistics.median(ms), max(rss)) for side, (ms, rss) in found.items()}


def run(args, folder):
    import torch
    import transformers

    backend.keep_freed_host_memory()  # as training does
    torch.manual_seed(0)
    config = transformers.GPT2Config(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)  # GPT-2 small's shape
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    ids = np.random.default_rng(0).integers(0, config.vocab_size, (1, 128))
    worst, sample_s, same_tokens, attention = sampling(args, folder, ids)
    train = train_in_turns(args, folder)
    worst64 = worst_relative_error(
        GPT.from_pretrained(folder, dtype=np.float64),
        transformers.GPT2LMHeadModel.from_pretrained(folder, dtype=torch.float64).eval(),
        ids,
    )
    report(args, worst, worst64, sample_s, same_tokens, attention, train)


def sampling(args, folder, ids):
    """The float32 logits' worst relative error, and the sampling race: (error, (ours s, theirs s),
    whether the greedy tokens agree, transformers' attention implementation)."""
    import torch
    import transformers

    theirs = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    ours = GPT.from_pretrained(folder)
    worst = worst_relative_error(ours, theirs, ids)
    rng = np.random.default_rng(1)
    V = theirs.config.vocab_size
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
    return worst, sample_s, same_tokens, theirs.config._attn_implementation


def report(args, worst, worst64, sample_s, same_tokens, attention, train):
    import torch
    import transformers

    n = args.new_tokens
    result = {
        "machine": f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores, {platform.platform()}",
        "numpy": np.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "our_shards": default_shards(args.batch_size),
        "attention": attention,
        "runs": args.runs,
        "rounds": args.rounds,
        "steps": args.steps,
        "their_malloc_as_ours": args.their_malloc_as_ours,
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
            "ours_ms": train["ours"][0],
            "theirs_ms": train["theirs"][0],
            "time_ratio_ours_over_theirs": train["ours"][0] / train["theirs"][0],
            "ours_peak_rss_mb": train["ours"][1],
            "theirs_peak_rss_mb": train["theirs"][1],
        },
    }
    s, t = result["sample"], result["train_step"]
    print(f"GPT-2 124M shape, random weights; {result['machine']}")
    print(f"sampling: medians of {args.runs} runs taking turns; training: {args.rounds} processes a side taking turns")
    if args.their_malloc_as_ours:
        print("transformers' training processes with our glibc malloc settings (--their-malloc-as-ours)")
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
    print(f"{'training process, peak RSS, MB':34}{t['ours_peak_rss_mb']:>12.0f}{t['theirs_peak_rss_mb']:>14.0f}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
