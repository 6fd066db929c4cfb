"""What each CUDA kernel of kernels/cuda computes, by the plain rung's NumPy reference, with the
launch's shape checked against what the kernel's threads would cover. Outputs are written in
place, as the kernel writes them; an output the kernel would not write stays as it was."""

import math
from typing import NamedTuple

import numpy

from cupy.kernels import LaunchError
from tinygrad_gpt.kernels import adamw, attention, cross_entropy, dropout, gelu, layernorm, softmax

ROW_WARPS = 4  # common.cuh: one warp per row, this many rows per block
FLASH_THREADS = 128


class Launch(NamedTuple):
    grid: tuple
    block: tuple
    shared_mem: int
    values: dict  # parameter name -> cupy array, None (null pointer) or numpy scalar

    def __getitem__(self, name):
        v = self.values[name]
        return v if v is None or isinstance(v, numpy.generic) else v._a

    def int(self, name):
        return int(self.values[name])


def need(ok, message):
    if not ok:
        raise LaunchError(message)


def put(out, value):
    """Write value into the kernel's output array, whose memory must be contiguous and hold it all."""
    need(out.flags.c_contiguous, "an output array the kernel indexes as contiguous is not")
    need(out.size == numpy.size(value), f"output of {out.size} elements for {numpy.size(value)} values")
    out.reshape(-1)[...] = numpy.asarray(value).reshape(-1)


def contiguous(*arrays):
    for a in arrays:
        need(a is None or a.flags.c_contiguous, "an input the kernel indexes as contiguous is not")


def rows_launch(launch, rows):
    """Row kernels: one warp per row, ROW_WARPS rows per block; every row needs its warp."""
    need(launch.block == (32 * ROW_WARPS, 1, 1), f"row kernel launched with block {launch.block}")
    need(launch.grid[0] * ROW_WARPS >= rows, f"grid {launch.grid} covers fewer than {rows} rows")


def elementwise_launch(launch):
    need(launch.block[1:] == (1, 1), f"grid-stride kernel launched with block {launch.block}")


# --- the kernels ----------------------------------------------------------------------------------


def layernorm_forward(L):
    x, w, b, y, mean, rstd = (L[n] for n in ("x", "weight", "bias", "y", "mean", "rstd"))
    rows, C = L.int("rows"), L.int("C")
    rows_launch(L, rows)
    contiguous(x, w, b)
    need(x.size == rows * C and mean.size == rows == rstd.size, "layernorm_forward: sizes disagree with rows, C")
    need(all(a is None or a.size == C for a in (w, b)), "layernorm_forward: weight or bias not of C elements")
    out, m, r = layernorm.layernorm_forward(x.reshape(rows, C), w, b, L["eps"])
    put(y, out), put(mean, m), put(rstd, r)


def layernorm_backward(L):
    dy, x, w, mean, rstd, dx, dw, db = (
        L[n] for n in ("dy", "x", "weight", "mean", "rstd", "dx", "dweight_part", "dbias_part")
    )
    rows, C = L.int("rows"), L.int("C")
    elementwise_launch(L)
    contiguous(dy, x, w, mean, rstd)
    need(L.shared_mem >= 2 * C * x.itemsize, f"layernorm_backward: {L.shared_mem} bytes of shared memory for C={C}")
    need(dy.size == x.size == rows * C and mean.size == rows == rstd.size, "layernorm_backward: sizes disagree")
    need(dw.shape == db.shape == (L.grid[0], C), "layernorm_backward: partial sums are not (blocks, C)")
    gx, gw, gb = layernorm.layernorm_backward(
        dy.reshape(rows, C), x.reshape(rows, C), w, mean.reshape(rows, 1), rstd.reshape(rows, 1)
    )
    put(dx, gx)
    for part, total in ((dw, gw), (db, gb)):  # the sum over blocks is what the caller reads
        part[...] = 0
        part[0] = total


def _softmax_rows(reference, inputs, output):
    def kernel(L):
        rows, C = L.int("rows"), L.int("C")
        rows_launch(L, rows)
        arrays = [L[n] for n in inputs]
        contiguous(*arrays)
        need(all(a.size == rows * C for a in arrays), f"{reference.__name__}: sizes disagree with rows, C")
        put(L[output], reference(*(a.reshape(rows, C) for a in arrays), axis=-1))

    return kernel


def cross_entropy_forward(L):
    logits, t, row_loss, lse = L["logits"], L["targets"], L["row_loss"], L["lse"]
    rows, C = L.int("rows"), L.int("C")
    rows_launch(L, rows)
    contiguous(logits, t)
    need(logits.size == rows * C and t.size == rows, "cross_entropy_forward: sizes disagree with rows, C")
    _, s = cross_entropy.cross_entropy_forward(logits.reshape(rows, C), numpy.zeros(rows, dtype=numpy.int64))
    inside = (t >= 0) & (t < C)
    picked = logits.reshape(rows, C)[numpy.arange(rows), numpy.where(inside, t, 0)]
    put(lse, s)
    put(row_loss, numpy.where(inside, s[:, 0] - picked, numpy.nan).astype(logits.dtype))


def cross_entropy_backward(L):
    logits, t, lse = L["logits"], L["targets"], L["lse"]
    rows, C = L.int("rows"), L.int("C")
    elementwise_launch(L)
    contiguous(logits, t, lse)
    need(logits.size == rows * C and t.size == rows == lse.size, "cross_entropy_backward: sizes disagree")
    need(L["dloss"].size >= 1, "cross_entropy_backward: dloss is empty")
    dloss = L["dloss"].reshape(-1)[0]
    shape = (rows, C)
    if "ignore_index" in L.values:
        kept = L["kept"].reshape(-1)[0]
        ignore = L.int("ignore_index")
        need(kept == numpy.count_nonzero(t != ignore), "cross_entropy_backward: kept is not the count of kept targets")
        got = cross_entropy.cross_entropy_backward(dloss, logits.reshape(shape), t, lse.reshape(rows, 1), ignore)
    else:
        got = cross_entropy.cross_entropy_backward(dloss, logits.reshape(shape), t, lse.reshape(rows, 1))
    put(L["dlogits"], got.astype(logits.dtype))


def gelu_forward(L):
    elementwise_launch(L)
    x, n = L["x"], L.int("n")
    contiguous(x)
    need(x.size == n == L["y"].size, "gelu_forward: n is not the arrays' size")
    put(L["y"], gelu.gelu_forward(x)[0])


def gelu_backward(L):
    elementwise_launch(L)
    dy, x, n = L["dy"], L["x"], L.int("n")
    contiguous(dy, x)
    need(dy.size == x.size == n == L["dx"].size, "gelu_backward: n is not the arrays' size")
    put(L["dx"], gelu.gelu_backward(dy, x, gelu.gelu_forward(x)[1]))


def dropout_mask(L):
    elementwise_launch(L)
    u, n, p = L["u"], L.int("n"), L["p"]
    contiguous(u)
    need(u.size == n == L["mask"].size, "dropout_mask: n is not the arrays' size")
    need(L["scale"] == u.dtype.type(1.0 / (1.0 - float(p))), "dropout_mask: scale is not 1/(1-p)")
    put(L["mask"], dropout.dropout_mask(u, float(p)))


def _hyper(L):
    """The hyper-parameters the kernel's folded scalars came from (kernels/cuda's _adamw_scalars)."""
    beta1, beta2 = float(L["beta1"]), float(L["beta2"])
    step = max(1, round(math.log(1.0 - float(L["bias2"])) / math.log(beta2))) if float(L["bias2"]) < 1 else 1
    lr = float(L["step_size"]) * (1.0 - beta1**step)
    weight_decay = (1.0 - float(L["decay"])) / lr if lr else 0.0
    eps = float(L["eps"])
    return {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": weight_decay, "step": step}


def adamw_update(L):
    elementwise_launch(L)
    arrays = [L[n] for n in ("param", "grad", "exp_avg", "exp_avg_sq")]
    contiguous(*arrays)
    need(all(a.size == L.int("n") for a in arrays), "adamw_update: n is not the arrays' size")
    adamw.adamw_update(*(a.reshape(-1) for a in arrays), **_hyper(L))


def adamw_update_multi(L):
    from cupy import _POINTERS

    elementwise_launch(L)
    table, count = L["table"], L.int("count")
    need(table.size == 5 * count + 1, "adamw_update_multi: the table is not 5 * count + 1 entries")
    offsets = table[4 * count :].astype(numpy.int64)
    for j in range(count):
        arrays = []
        for row in range(4):
            ptr = int(table[row * count + j])
            need(ptr in _POINTERS, f"adamw_update_multi: table entry {row * count + j} is no live array's address")
            a = _POINTERS[ptr]._a
            need(a.flags.c_contiguous and a.size == offsets[j + 1] - offsets[j], "adamw_update_multi: size or layout")
            need(a.dtype == L["beta1"].dtype, "adamw_update_multi: an array of another dtype")
            arrays.append(a.reshape(-1))
        adamw.adamw_update(*arrays, **_hyper(L))


def attention_softmax(L):
    att, p, mask = L["att"], L["p"], L["mask"]
    rows, Tq, Tk = L.int("rows"), L.int("Tq"), L.int("Tk")
    rows_launch(L, rows)
    contiguous(att, mask)
    need(att.size == rows * Tk and rows % Tq == 0, "attention_softmax: sizes disagree with rows, Tq, Tk")
    need((p is None) == (mask is None), "attention_softmax: p and mask go together")
    scores = att.reshape(-1, Tq, Tk) * L["scale"]
    if L.int("causal"):
        scores = numpy.where(attention.causal_mask(numpy, Tq, Tk), -numpy.inf, scores)
    probs = softmax.softmax_forward(scores)
    put(att, probs)
    if mask is not None:
        need(mask.size == att.size, "attention_softmax: mask is not att's size")
        put(p, probs * mask.reshape(probs.shape))


def attention_softmax_backward(L):
    dp, att, mask = L["dp"], L["att"], L["mask"]
    rows, Tk = L.int("rows"), L.int("Tk")
    rows_launch(L, rows)
    contiguous(dp, att, mask)
    need(dp.size == att.size == rows * Tk, "attention_softmax_backward: sizes disagree with rows, Tk")
    g = dp.reshape(rows, Tk) if mask is None else dp.reshape(rows, Tk) * mask.reshape(rows, Tk)
    put(dp, softmax.softmax_backward(g, att.reshape(rows, Tk)) * L["scale"])


def _flash_inputs(L, lanes):
    """q, k, v as (B, H, T, hs) arrays read through the strides the kernel was given."""
    H, Tq, Tk, hs = (L.int(n) for n in ("H", "Tq", "Tk", "hs"))
    need(L.block == (FLASH_THREADS, 1, 1), f"flash kernel launched with block {L.block}")
    need(hs <= 32 * lanes, f"flash kernel g{lanes} for head size {hs}")
    need(L.grid[0] % H == 0, f"grid {L.grid} is not B * H blocks wide")
    B = L.grid[0] // H
    arrays = []
    for name, T in (("q", Tq), ("k", Tk), ("v", Tk)):
        a = L[name]
        need(a.shape == (B, H, T, hs), f"{name} is {a.shape}, the launch says {(B, H, T, hs)}")
        need(a.strides[-1] == a.itemsize, f"{name}'s rows are not contiguous")
        given = tuple(L.int(f"{name}s{axis}") for axis in "bht")
        need(given == tuple(s // a.itemsize for s in a.strides[:3]), f"{name}'s strides {given} are not its own")
        arrays.append(a)
    need(L["scale"] == numpy.float32(1.0 / math.sqrt(hs)), "flash: scale is not 1/sqrt(hs)")
    return B, H, Tq, Tk, hs, arrays


def _flash_rows(L, lanes, T):
    rows_per_block = FLASH_THREADS // lanes
    need(L.grid[1] * rows_per_block >= T, f"grid {L.grid} covers fewer than {T} rows")


def _probs_and_lse(q, k, causal):
    scores = q @ k.swapaxes(-1, -2) / numpy.float32(math.sqrt(q.shape[-1]))
    if causal:
        scores = numpy.where(attention.causal_mask(numpy, q.shape[-2], k.shape[-2]), -numpy.inf, scores)
    m = scores.max(axis=-1, keepdims=True)
    lse = m + numpy.log(numpy.exp(scores - m).sum(axis=-1, keepdims=True))
    return softmax.softmax_forward(scores), lse[..., 0]


def flash_forward(lanes):
    def kernel(L):
        B, H, Tq, Tk, hs, (q, k, v) = _flash_inputs(L, lanes)
        _flash_rows(L, lanes, Tq)
        causal = bool(L.int("causal"))
        out, _ = attention.attention_forward(q, k, v, causal)
        put(L["out"], out.astype(q.dtype))
        put(L["lse"], _probs_and_lse(q, k, causal)[1].astype(q.dtype))

    return kernel


def flash_backward_dq(lanes):
    def kernel(L):
        B, H, Tq, Tk, hs, (q, k, v) = _flash_inputs(L, lanes)
        _flash_rows(L, lanes, Tq)
        dout, out = L["dout"], L["out"]
        contiguous(dout, out)
        att, _ = _probs_and_lse(q, k, bool(L.int("causal")))
        put(L["delta"], (dout * out).sum(axis=-1))
        put(L["dq"], attention.attention_backward(dout, q, k, v, att)[0].astype(q.dtype))

    return kernel


def flash_backward_dkdv(lanes):
    def kernel(L):
        B, H, Tq, Tk, hs, (q, k, v) = _flash_inputs(L, lanes)
        _flash_rows(L, lanes, Tk)
        dout = L["dout"]
        contiguous(dout)
        att, _ = _probs_and_lse(q, k, bool(L.int("causal")))
        _, dk, dv = attention.attention_backward(dout, q, k, v, att)
        put(L["dk"], dk.astype(q.dtype)), put(L["dv"], dv.astype(q.dtype))

    return kernel


REFERENCES = {
    "layernorm_forward": layernorm_forward,
    "layernorm_backward": layernorm_backward,
    "softmax_forward": _softmax_rows(softmax.softmax_forward, ["x"], "y"),
    "log_softmax_forward": _softmax_rows(softmax.log_softmax_forward, ["x"], "y"),
    "softmax_backward": _softmax_rows(softmax.softmax_backward, ["dy", "y"], "dx"),
    "log_softmax_backward": _softmax_rows(softmax.log_softmax_backward, ["dy", "y"], "dx"),
    "cross_entropy_forward": cross_entropy_forward,
    "cross_entropy_backward": cross_entropy_backward,
    "gelu_forward": gelu_forward,
    "gelu_backward": gelu_backward,
    "dropout_mask": dropout_mask,
    "adamw_update": adamw_update,
    "adamw_update_multi": adamw_update_multi,
    "attention_softmax": attention_softmax,
    "attention_softmax_backward": attention_softmax_backward,
    **{f"flash_forward_g{g}": flash_forward(g) for g in (1, 2, 4)},
    **{f"flash_backward_dq_g{g}": flash_backward_dq(g) for g in (1, 2, 4)},
    **{f"flash_backward_dkdv_g{g}": flash_backward_dkdv(g) for g in (1, 2, 4)},
}


def run(name, launch):
    base = name[: -len("_f32")] if name.endswith(("_f32", "_f64")) else name
    if base not in REFERENCES:
        raise LaunchError(f"the stand-in has no reference for kernel {name}")
    REFERENCES[base](launch)
