"""The process `tinygpt bench --vs-torch` times PyTorch in (bench.TorchContender starts it as
`python -m tinygrad_gpt.tools.torch_contender`). It reads the twin's config, our weights, its warm-up
count and the device pickled on stdin, builds and warms the twin (tinygrad_gpt/tools/torch_twin.py),
answers PyTorch's version and the first loss, then the seconds of `iters` steps per request, until
sent None. Answers go pickled to the stdout it was started with; anything printed goes to stderr."""

import os
import pickle
import sys

from tinygrad_gpt.tools.bench import NEEDS_TORCH, random_batch, time_steps


def serve(requests, answers):
    def answer(kind, value):
        pickle.dump((kind, value), answers)
        answers.flush()

    config, model_config, weights, warmup, device = pickle.load(requests)  # read whole, whatever comes next
    try:
        import torch

        from tinygrad_gpt.tools.torch_twin import torch_step
    except ImportError:
        answer("usage", NEEDS_TORCH)
        return
    try:
        synchronize = torch.cuda.synchronize if device == "cuda" else lambda: None
        x, y = random_batch(config)
        step, first_loss = torch_step(model_config, config, weights, x, y, device)
        time_steps(step, 0, warmup, synchronize)
        answer("ok", (str(torch.__version__), float(first_loss)))  # plain types: no torch to unpickle
        while (iters := pickle.load(requests)) is not None:
            answer("ok", time_steps(step, iters, 0, synchronize))
        answer("ok", torch.cuda.max_memory_reserved() / 2**20 if device == "cuda" else None)
    except EOFError:
        return  # the benchmark ended without closing the twin (an error, or interrupted): so do we
    except Exception as error:
        answer("error", f"{type(error).__name__}: {error}")


if __name__ == "__main__":
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what anything prints goes to stderr, not into the answers
    serve(sys.stdin.buffer, answers)
