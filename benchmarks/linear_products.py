"""The Linear products of a training step alone, NumPy's BLAS against PyTorch's on the same CPU: how
much of PyTorch eager's step our products leave for everything else.

Each Linear of the model (per layer: attention's qkv and output projection, the MLP's two; then the
output layer) makes three matrix products a step: x W^T forward, dy W and dy^T x backward. Our
training cuts the batch in shards, one per core, each multiplying on one BLAS thread
(tinygrad_gpt/parallel/shards.py); PyTorch eager multiplies the whole batch with one thread per
core. This times those products and nothing else, as each side runs them: ours as --shards
processes at once, each with its share of the tokens; theirs as one process with --shards threads.
The two take turns, --rounds times, each process timing --steps steps after one warm-up; a round's
time is a process's median (ours: the slowest shard's, which a step waits for); printed: each
side's median over the rounds, in milliseconds a step, and their ratio. Against PyTorch's whole step (`tinygpt
bench --vs-torch` with the same model), the products of ours are a floor under our step.

    python benchmarks/linear_products.py [--n-layer 6] [--n-embd 384] [--vocab-size 65] [--tokens 1024]
        [--shards 2] [--rounds 3] [--steps 10] [--json]
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np


def step_times(side, shapes, tokens, threads, steps):
    """Seconds of each of `steps` steps of the products (after one warm-up), on numpy or torch."""
    if side == "numpy":
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads, user_api="blas")
        rng = np.random.default_rng(0)
        randn = lambda *shape: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
        empty, matmul = lambda *shape: np.empty(shape, np.float32), np.matmul  # noqa: E731
    else:
        import torch

        torch.set_num_threads(threads)
        randn, empty, matmul = torch.randn, torch.empty, torch.matmul
    # each product into its own array made beforehand: the products alone, no allocation timed
    arrays = [
        (randn(tokens, i), randn(o, i), randn(tokens, o), empty(tokens, o), empty(tokens, i), empty(o, i))
        for i, o in shapes
    ]

    def step():
        for x, w, dy, y, dx, dw in arrays:
            matmul(x, w.T, out=y)
            matmul(dy, w, out=dx)
            matmul(dy.T, x, out=dw)

    step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def run_alone(args, shapes, side, tokens, threads):
    """A fresh process timing one side; its step times."""
    command = [sys.executable, __file__, "--alone", side, "--tokens", str(tokens), "--threads", str(threads)]
    command += ["--shapes", json.dumps(shapes), "--steps", str(args.steps)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def finish(process):
    out, _ = process.communicate()
    if process.returncode != 0:
        sys.exit(f"linear_products: a timing process failed (exit {process.returncode})")
    return json.loads(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-layer", type=int, default=6)
    parser.add_argument("--n-embd", type=int, default=384)
    parser.add_argument("--vocab-size", type=int, default=65)
    parser.add_argument("--tokens", type=int, default=1024, help="tokens a step (batch x block)")
    parser.add_argument("--shards", type=int, default=2, help="our processes, and PyTorch's threads")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--alone", choices=["numpy", "torch"], help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--shapes", type=json.loads, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.alone:  # a timing process imports only its side's library, not ours
        print(json.dumps(step_times(args.alone, args.shapes, args.tokens, args.threads, args.steps)))
        return
    from tinygrad_gpt.tools.flops import linear_shapes

    shapes = [*linear_shapes(args.n_layer, args.n_embd), (args.n_embd, args.vocab_size)]  # and the head
    try:
        import torch  # noqa: F401  (only checked here: each side imports its own in its process)
    except ImportError:
        sys.exit("linear_products: PyTorch is not installed (pip install torch)")
    ours, theirs = [], []
    for _ in range(args.rounds):
        share = [args.tokens * (s + 1) // args.shards - args.tokens * s // args.shards for s in range(args.shards)]
        processes = [run_alone(args, shapes, "numpy", tokens, 1) for tokens in share]
        ours.append(max(statistics.median(finish(p)) for p in processes))  # a step waits for its slowest shard
        theirs.append(statistics.median(finish(run_alone(args, shapes, "torch", args.tokens, args.shards))))
    flops = sum(3 * 2 * args.tokens * i * o for i, o in shapes)
    result = {
        "shapes": f"{args.n_layer} layers x {args.n_embd}, vocab {args.vocab_size}, {args.tokens} tokens",
        "gflop": flops / 1e9,
        "ours_ms": statistics.median(ours) * 1e3,
        "pytorch_ms": statistics.median(theirs) * 1e3,
    }
    result["ratio"] = result["ours_ms"] / result["pytorch_ms"]
    if args.json:
        print(json.dumps(result))
        return
    print(f"Linear products of {result['shapes']}: {result['gflop']:.2f} GFLOP a step")
    print(f"  ours (NumPy's BLAS, {args.shards} processes of 1 thread): {result['ours_ms']:.1f} ms")
    print(f"  PyTorch ({args.shards} threads, one process): {result['pytorch_ms']:.1f} ms")
    print(f"  ratio ours/PyTorch: {result['ratio']:.2f}")


if __name__ == "__main__":
    main()
