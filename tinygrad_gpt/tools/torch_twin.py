"""The same GPT and training step in plain PyTorch eager, for `tinygpt bench --vs-torch` only.

PyTorch is never a dependency: this module is imported only when asked for, and only to time a
reference in the same run as ours, in a process of its own (tinygrad_gpt/tools/torch_contender.py). The
model mirrors tinygrad_gpt.model (GPT-2 architecture, tied head, fused qkv) written the idiomatic
PyTorch way (nn.Linear, F.scaled_dot_product_attention, torch.optim.AdamW as nanoGPT configures
it), and starts from our weights so the two first losses can be compared.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, dropout):
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd)
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class MLP(nn.Module):
    def __init__(self, n_embd, dropout):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd)
        self.c_proj = nn.Linear(4 * n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, dropout):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, dropout)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TorchGPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config.n_embd, config.n_head, config.dropout) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)

    def forward(self, idx, targets):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.h:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.T  # tied head
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    def load_ours(self, state_dict):
        """Copy our weights in: the names match once "transformer." is dropped; nn.Linear stores
        (out, in) where we store (in, out)."""
        with torch.no_grad():
            for name, p in self.named_parameters():
                value = torch.as_tensor(state_dict["transformer." + name])
                p.copy_(value.T if p.ndim == 2 and not name.startswith(("wte", "wpe")) else value)


def torch_step(config, train, state_dict, x, y, device):
    """One training iteration (forward, backward, clip, AdamW) of the PyTorch twin of GPT(config)
    with the optimizer settings of `train` (a TrainConfig), as a callable, and its first loss."""
    model = TorchGPT(config).to(device)
    model.load_ours(state_dict)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=train.learning_rate, betas=(0.9, train.beta2), fused=device == "cuda")
    x, y = (torch.as_tensor(a, device=device) for a in (x, y))
    model.eval()
    with torch.no_grad():
        first_loss = model(x, y).item()  # without dropout, to compare with ours
    model.train()

    def step():
        loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, first_loss
