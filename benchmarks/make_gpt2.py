"""A GPT-2 folder made offline with Hugging Face's own libraries, to try `--init-from` where
OpenAI's GPT-2 cannot be downloaded: `tokenizers` learns a byte-level BPE on a text, transformers
builds a GPT-2 of the given shape, PyTorch trains it briefly on that text (the "pretraining"), and
save_pretrained writes the folder with its tokenizer.json.

    python benchmarks/make_gpt2.py OUT --text FILE [--vocab-size 8192] [--steps 150] [--n-layer 12 ...]

docs/results.md pretrains on the package descriptions installed here (not Shakespeare), then
fine-tunes on Tiny Shakespeare with `tinygpt train --init-from OUT`.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import tokenizers
import torch
import transformers

END_OF_TEXT = "<|endoftext|>"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the folder to write")
    parser.add_argument("--text", type=Path, required=True, help="UTF-8 text to learn the tokenizer and pretrain on")
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--n-layer", type=int, default=12)
    parser.add_argument("--n-head", type=int, default=12)
    parser.add_argument("--n-embd", type=int, default=768)
    parser.add_argument("--n-positions", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=150, help="pretraining steps (0: random weights)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--learning-rate", type=float, default=6e-4)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main():
    args = parse_args()
    text = args.text.read_text(encoding="utf-8")
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator([text], vocab_size=args.vocab_size, special_tokens=[END_OF_TEXT], show_progress=False)
    ids = np.array(bpe.encode(text).ids, dtype=np.int64)
    print(f"tokenizer: {bpe.get_vocab_size()} tokens; the text is {len(ids):,} of them")

    torch.manual_seed(args.seed)
    eos = bpe.token_to_id(END_OF_TEXT)
    config = transformers.GPT2Config(
        vocab_size=bpe.get_vocab_size(),
        n_positions=args.n_positions,
        n_embd=args.n_embd,
        n_layer=args.n_layer,
        n_head=args.n_head,
        bos_token_id=eos,
        eos_token_id=eos,
    )
    model = transformers.GPT2LMHeadModel(config)
    print(f"GPT-2: {sum(p.numel() for p in model.parameters()):,} parameters")
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.1)
    rng = np.random.default_rng(args.seed)
    model.train()
    start = time.time()
    for step in range(1, args.steps + 1):
        starts = rng.integers(0, len(ids) - args.block_size - 1, args.batch_size)
        batch = torch.as_tensor(np.stack([ids[s : s + args.block_size + 1] for s in starts]))
        loss = model(batch, labels=batch).loss  # transformers shifts the labels by one itself
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 10 == 0 or step == args.steps:
            print(f"step {step}: loss {loss.item():.3f} ({time.time() - start:.0f} s)", flush=True)
    model.save_pretrained(args.out)
    bpe.save(str(args.out / "tokenizer.json"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
