"""A whole GPT, forward and backward, by hand: llm.c's train_gpt2.c in NumPy, checked against the engine.

    python examples/gpt_by_hand.py

1. gpt_forward runs the model of tinygrad_gpt/model.py on plain arrays, one kernels/ function per
   layer, and keeps per block exactly the activations the backward will need.
2. gpt_backward walks the same lines in reverse, one kernel backward per forward line, and returns
   the gradient of the loss for every parameter. What has no kernel is plain NumPy: the residual
   adds, the q/k/v split, the head reshapes, the tied lm head's transpose.
3. A small GPT in float64 computes the same loss and gradients with the engine (autograd), and we
   compare the two, parameter by parameter.

Shapes in the comments: B batch, T positions, C = n_embd, nh heads of hs = C / nh numbers, V vocab.
"""

import numpy as np

from tinygrad_gpt import GPT, GPTConfig
from tinygrad_gpt.kernels.attention import attention_backward, attention_forward
from tinygrad_gpt.kernels.cross_entropy import cross_entropy_backward, cross_entropy_forward
from tinygrad_gpt.kernels.embedding import embedding_backward, embedding_forward
from tinygrad_gpt.kernels.gelu import gelu_backward, gelu_forward
from tinygrad_gpt.kernels.layernorm import layernorm_backward, layernorm_forward
from tinygrad_gpt.kernels.matmul import linear_backward, linear_forward


def block_params(params, i):
    """Block i's arrays under their names inside the block: 'ln_1.weight', 'attn.c_attn.bias', ..."""
    prefix = f"transformer.h.{i}."
    return {name.removeprefix(prefix): array for name, array in params.items() if name.startswith(prefix)}


# The heads sit side by side along C (head h owns channels h*hs to (h+1)*hs), as in model.py.
# Both reshapes only move numbers around, so each one's backward is the other one.
def split_heads(x, nh):
    B, T, C = x.shape
    hs = C // nh
    return x.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B, nh, T, hs)


def merge_heads(x):
    B, nh, T, hs = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, nh * hs)  # (B, T, C)


def gpt_forward(params, idx, targets, config):
    """idx, targets (B, T) ints -> (mean cross-entropy, the activations gpt_backward needs)."""
    B, T = idx.shape
    wte, wpe = params["transformer.wte.weight"], params["transformer.wpe.weight"]
    x = embedding_forward(idx, wte) + embedding_forward(np.arange(T), wpe)  # (B, T, C) + (T, C)
    layers = []
    for i in range(config.n_layer):
        p = block_params(params, i)
        # attention half: x_mid = x + c_proj(attention(c_attn(ln_1(x))))
        ln1, ln1_mean, ln1_rstd = layernorm_forward(x, p["ln_1.weight"], p["ln_1.bias"])  # (B, T, C)
        qkv = linear_forward(ln1, p["attn.c_attn.weight"], p["attn.c_attn.bias"])  # (B, T, 3C): [q | k | v]
        q, k, v = (split_heads(a, config.n_head) for a in np.split(qkv, 3, axis=-1))  # each (B, nh, T, hs)
        y_heads, att = attention_forward(q, k, v, is_causal=True)  # (B, nh, T, hs), att (B, nh, T, T)
        y = merge_heads(y_heads)  # (B, T, C)
        x_mid = x + linear_forward(y, p["attn.c_proj.weight"], p["attn.c_proj.bias"])  # (B, T, C)
        # MLP half: x_next = x_mid + c_proj(gelu(c_fc(ln_2(x_mid))))
        ln2, ln2_mean, ln2_rstd = layernorm_forward(x_mid, p["ln_2.weight"], p["ln_2.bias"])  # (B, T, C)
        fc = linear_forward(ln2, p["mlp.c_fc.weight"], p["mlp.c_fc.bias"])  # (B, T, 4C)
        fc_gelu, fc_tanh = gelu_forward(fc)  # (B, T, 4C), and tanh u for gelu's backward
        x_next = x_mid + linear_forward(fc_gelu, p["mlp.c_proj.weight"], p["mlp.c_proj.bias"])  # (B, T, C)
        layers.append(
            dict(  # what this block's backward reads: each kernel's input and the state it saved
                x=x,  # ln_1's input, with its mean and rstd
                ln1_mean=ln1_mean,
                ln1_rstd=ln1_rstd,
                ln1=ln1,  # c_attn's input
                q=q,  # attention's inputs, with its probabilities
                k=k,
                v=v,
                att=att,
                y=y,  # attn.c_proj's input
                x_mid=x_mid,  # ln_2's input, with its mean and rstd
                ln2_mean=ln2_mean,
                ln2_rstd=ln2_rstd,
                ln2=ln2,  # c_fc's input
                fc=fc,  # gelu's input, with its tanh u
                fc_tanh=fc_tanh,
                fc_gelu=fc_gelu,  # mlp.c_proj's input
            )
        )
        x = x_next
    lnf, lnf_mean, lnf_rstd = layernorm_forward(x, params["transformer.ln_f.weight"], params["transformer.ln_f.bias"])
    logits = linear_forward(lnf, wte.T)  # tied head: (B, T, C) @ (C, V), no bias
    loss, lse = cross_entropy_forward(logits.reshape(B * T, -1), targets.reshape(-1))  # lse (B*T, 1)
    acts = dict(
        idx=idx,
        targets=targets,
        layers=layers,
        x=x,  # ln_f's input, with its mean and rstd
        lnf_mean=lnf_mean,
        lnf_rstd=lnf_rstd,
        lnf=lnf,  # the head's input
        logits=logits,  # cross-entropy's input, with its log-sum-exp
        lse=lse,
    )
    return loss, acts


def gpt_backward(params, acts, config):
    """The gradient of the loss for every parameter, in a dict under the parameters' names."""
    idx, targets = acts["idx"], acts["targets"]
    B, T = idx.shape
    wte = params["transformer.wte.weight"]
    grads = {}
    dloss = 1.0  # d loss / d loss: where the chain rule starts
    dlogits = cross_entropy_backward(dloss, acts["logits"].reshape(B * T, -1), targets.reshape(-1), acts["lse"])
    # logits = lnf @ wte.T: the head's share of wte's gradient comes back transposed, (C, V)
    dlnf, dwte_head_t, _ = linear_backward(dlogits.reshape(B, T, -1), acts["lnf"], wte.T, has_bias=False)
    dx, grads["transformer.ln_f.weight"], grads["transformer.ln_f.bias"] = layernorm_backward(
        dlnf, acts["x"], params["transformer.ln_f.weight"], acts["lnf_mean"], acts["lnf_rstd"]
    )
    for i in reversed(range(config.n_layer)):
        a, p, g = acts["layers"][i], block_params(params, i), {}
        # dx is the gradient at this block's output, x_next = x_mid + mlp(ln_2(x_mid)): the add passes
        # it unchanged to both terms, so x_mid gets dx directly plus what comes back through the MLP
        dfc_gelu, g["mlp.c_proj.weight"], g["mlp.c_proj.bias"] = linear_backward(
            dx, a["fc_gelu"], p["mlp.c_proj.weight"]
        )
        dfc = gelu_backward(dfc_gelu, a["fc"], a["fc_tanh"])
        dln2, g["mlp.c_fc.weight"], g["mlp.c_fc.bias"] = linear_backward(dfc, a["ln2"], p["mlp.c_fc.weight"])
        dx_mid_mlp, g["ln_2.weight"], g["ln_2.bias"] = layernorm_backward(
            dln2, a["x_mid"], p["ln_2.weight"], a["ln2_mean"], a["ln2_rstd"]
        )
        dx_mid = dx + dx_mid_mlp  # the skip path's gradient plus the MLP branch's
        # x_mid = x + attn(ln_1(x)): the same again, through the attention branch
        dy, g["attn.c_proj.weight"], g["attn.c_proj.bias"] = linear_backward(dx_mid, a["y"], p["attn.c_proj.weight"])
        dq, dk, dv = attention_backward(split_heads(dy, config.n_head), a["q"], a["k"], a["v"], a["att"])
        dqkv = np.concatenate([merge_heads(dq), merge_heads(dk), merge_heads(dv)], axis=-1)  # (B, T, 3C)
        dln1, g["attn.c_attn.weight"], g["attn.c_attn.bias"] = linear_backward(dqkv, a["ln1"], p["attn.c_attn.weight"])
        dx_attn, g["ln_1.weight"], g["ln_1.bias"] = layernorm_backward(
            dln1, a["x"], p["ln_1.weight"], a["ln1_mean"], a["ln1_rstd"]
        )
        dx = dx_mid + dx_attn  # the skip path's plus the attention branch's: dx for the block below
        grads.update({f"transformer.h.{i}.{name}": grad for name, grad in g.items()})
    # x = wte[idx] + wpe[pos]. wte is tied, so it adds the lookup's gradient to the head's;
    # wpe's rows were added to every sequence of the batch, so their gradient is summed over B
    grads["transformer.wte.weight"] = embedding_backward(dx, idx, config.vocab_size) + dwte_head_t.T
    grads["transformer.wpe.weight"] = embedding_backward(dx.sum(axis=0), np.arange(T), config.block_size)
    return grads


config = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16)
model = GPT(config, seed=0).double()  # float64: the two sides may then differ by rounding only
rng = np.random.default_rng(0)
# At init all LayerNorms are alike (weight 1, bias 0) and every bias is 0, so a backward that read
# one layer's where another's was meant would still agree. Moving every parameter a little shows it.
for p in model.parameters():
    p.data += rng.normal(0.0, 0.1, size=p.shape)
idx = rng.integers(0, config.vocab_size, size=(4, config.block_size))  # (B, T) int64
targets = rng.integers(0, config.vocab_size, size=(4, config.block_size))

print("== the engine: forward, then autograd's backward ==")
_, loss = model(idx, targets)
loss.backward()
print(f"loss = {loss.item():.12f}\n")

print("== by hand: gpt_forward, then gpt_backward ==")
params = {name: p.data for name, p in model.named_parameters()}
loss_by_hand, acts = gpt_forward(params, idx, targets, config)
grads = gpt_backward(params, acts, config)
print(f"loss = {loss_by_hand:.12f}\n")
assert abs(loss_by_hand - loss.item()) <= 1e-12 * loss.item()

print("== d loss / d parameter: by hand against the engine ==")
print(f"{'parameter':<36} {'shape':<9} {'max |by hand - engine|':>22} {'relative error':>15}")
disagree = []  # the whole table prints first: which rows disagree points at the faulty line
for name, p in model.named_parameters():
    gap = np.abs(grads[name] - p.grad).max()
    relative = gap / np.abs(p.grad).max()  # against the largest entry of the engine's gradient
    print(f"{name:<36} {str(p.shape):<9} {gap:>22.2e} {relative:>15.2e}")
    if not relative <= 1e-10:  # `not <=` so that a NaN counts as disagreeing
        disagree.append(name)
assert not disagree, f"by hand and the engine disagree on d loss / d {', '.join(disagree)}"
print(f"\nall {len(grads)} gradients agree with the engine's (relative error <= 1e-10)")
