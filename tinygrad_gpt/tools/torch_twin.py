"""The same GPT and training step in plain PyTorch eager, for `tinygpt bench --vs-torch` only.

PyTorch is never a dependency: bench imports this module only when asked for, to time a reference
in the same run and process as ours. The model mirrors tinygrad_gpt.model (GPT-2 architecture,
tied head, fused qkv) written the idiomatic PyTorch way (nn.Linear, F.scaled_dot_product_attention,
torch.optim.AdamW as nanoGPT configures it), and starts from our weights so the two first losses
can be compared.
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


class TorchTwin:
    """The PyTorch twin of GPT(config) on `device` ("cpu" or "cuda"), from our weights `state_dict`,
    trained on the batch (x, y) with the optimizer settings of `train` (a TrainConfig): step() runs
    one iteration (forward, backward, clip, AdamW), synchronize() waits for the device, first_loss
    is the loss before any step, without dropout (to compare with ours)."""

    def __init__(self, config, train, state_dict, x, y, device):
        self.device, self.version = device, str(torch.__version__)
        self.model = TorchGPT(config).to(device)
        self.model.load_ours(state_dict)
        decay = [p for p in self.model.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        self.optimizer = torch.optim.AdamW(
            groups, lr=train.learning_rate, betas=(0.9, train.beta2), fused=device == "cuda"
        )
        self.grad_clip = train.grad_clip
        self.x, self.y = (torch.as_tensor(a, device=device) for a in (x, y))
        self.model.eval()
        with torch.no_grad():
            self.first_loss = self.model(self.x, self.y).item()
        self.model.train()

    def step(self):
        loss = self.model(self.x, self.y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def synchronize(self):
        if self.device == "cuda":
            torch.cuda.synchronize()

    def peak_mem_mb(self):
        """PyTorch's peak reserved GPU memory in MB (the peer of CuPy's pool), or None on the CPU,
        where the process's RSS is shared with ours."""
        return torch.cuda.max_memory_reserved() / 2**20 if self.device == "cuda" else None
