"""A bigram language model: the simplest thing that learns Shakespeare's characters.

    python examples/bigram.py [PATH] [--steps N]

Each character predicts the next through one row of a (V, V) table of logits: logits = W[x].
That is an embedding lookup followed by cross-entropy, so its whole backward is two of our
kernels: the softmax-minus-one-hot gradient of cross-entropy, scattered back into the rows of W
that were picked (kernels/cross_entropy.py, kernels/embedding.py). The data is Tiny Shakespeare
(PATH, else $TINYGPT_DATA, else the copy that ships with tinygrad_gpt).
"""

import argparse

import numpy as np

import tinygrad_gpt.engine.functional as F
from tinygrad_gpt.data import load_dataset, resolve_data_path
from tinygrad_gpt.engine import Tensor, no_grad

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("path", nargs="?", help="a UTF-8 text file")
parser.add_argument("--steps", type=int, default=2000)
args = parser.parse_args()

data = load_dataset(resolve_data_path(args.path), block_size=32)
V = data.tokenizer.vocab_size
rng = np.random.default_rng(0)
W = Tensor(np.zeros((V, V), dtype=np.float32), requires_grad=True)  # row a: logits of the char after a

for step in range(args.steps + 1):
    x, y = data.get_batch("train", 32, 32, rng)  # (B, T) ids and the ids that follow them
    loss = F.cross_entropy(F.embedding(x, W), y)  # logits (B, T, V)
    W.zero_grad()
    loss.backward()
    W.data -= 50.0 * W.grad  # plain gradient descent (the loss is convex in W; 50 was found by trying)
    if step % (args.steps // 5 or 1) == 0:
        with no_grad():
            xv, yv = data.get_batch("val", 256, 32, rng)
            val = F.cross_entropy(F.embedding(xv, W), yv).item()
        print(f"step {step:5d}  train loss {loss.item():.3f}  val loss {val:.3f}  (uniform: {np.log(V):.3f})")

# sample: each next character drawn from softmax(W[previous])
probs = F.softmax(Tensor(W.data), axis=-1).numpy()
ids = [data.tokenizer.stoi.get("\n", 0)]
for _ in range(200):
    ids.append(int(rng.choice(V, p=probs[ids[-1]] / probs[ids[-1]].sum())))
print(data.tokenizer.decode(ids))
