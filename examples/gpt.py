"""A GPT trained on Shakespeare in one screen: the library's pieces, without the CLI.

    python examples/gpt.py [PATH] [--steps N]

The same loop `tinygpt train` runs (tinygrad_gpt/train.py adds checkpoints, resume, logging and
error handling): sample a batch, forward to the loss, backward, clip, AdamW step on a
warmup-then-cosine learning rate. A small model, so that a laptop CPU shows it learning in a
minute. The data is Tiny Shakespeare (PATH, else $TINYGPT_DATA, else the copy that ships with tinygrad_gpt).
"""

import argparse

import numpy as np

from tinygrad_gpt import GPT, GPTConfig
from tinygrad_gpt.data import load_dataset, resolve_data_path
from tinygrad_gpt.engine import no_grad
from tinygrad_gpt.optim import AdamW, clip_grad_norm_, get_lr

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("path", nargs="?", help="a UTF-8 text file")
parser.add_argument("--steps", type=int, default=1500)
args = parser.parse_args()

block_size, batch_size = 32, 16
data = load_dataset(resolve_data_path(args.path), block_size)
model = GPT(GPTConfig(data.tokenizer.vocab_size, block_size, n_layer=2, n_head=4, n_embd=64))
optimizer = AdamW(model.named_parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=0.1)
rng = np.random.default_rng(0)
print(f"{model.num_params():,} parameters")

for step in range(args.steps + 1):
    optimizer.lr = get_lr(step, 3e-3, 3e-4, warmup_iters=50, lr_decay_iters=args.steps)
    x, y = data.get_batch("train", batch_size, block_size, rng)
    logits, loss = model(x, y)  # logits (B, T, vocab), loss: mean cross-entropy
    loss.backward()
    clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad()
    if step % (args.steps // 4 or 1) == 0:
        model.eval()
        with no_grad():
            val = np.mean([model(*data.get_batch("val", batch_size, block_size, rng))[1].item() for _ in range(10)])
        model.train()
        print(f"step {step:4d}  train loss {loss.item():.3f}  val loss {val:.3f}")

prompt = data.tokenizer.encode("ROMEO:" if not data.tokenizer.unknown_chars("ROMEO:") else data.tokenizer.vocab[0])
out = model.generate(prompt[None], max_new_tokens=200, temperature=0.8, top_k=40, seed=1)
print(data.tokenizer.decode(out[0]))
