"""Hugging Face's formats, in and out: GPT-2 folders (gpt2.py: `GPT.from_pretrained` reads them,
every checkpoint of ours is one) and GPT-2's byte-level BPE tokenizer (bpe.py, through Hugging
Face's `tokenizers`, the `hf` extra)."""
