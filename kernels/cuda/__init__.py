"""Hand-written CUDA kernels through CuPy: drop-in replacements for the references in kernels/.

Each public function has the name, arguments and results of its reference, and hands the call to
that reference for whatever its kernels do not cover (numpy arrays, dtypes other than float32 and
float64, softmax over another axis, ...), so the engine's dispatcher can call it unconditionally.
The .cu sources sit next to this file; each is compiled by NVRTC on first use, with common.cuh
in front, and kept for the process (CuPy also caches the binary on disk). CuPy is imported only
inside functions: importing this package works on machines without it.
docs/cuda_kernels.md explains each kernel's thread mapping.
"""

import functools
import math
import pathlib
from typing import NamedTuple

import numpy

from tinygrad_gpt.kernels import adamw as xp_adamw
from tinygrad_gpt.kernels import attention as xp_attention
from tinygrad_gpt.kernels import cross_entropy as xp_cross_entropy
from tinygrad_gpt.kernels import dropout as xp_dropout
from tinygrad_gpt.kernels import gelu as xp_gelu
from tinygrad_gpt.kernels import layernorm as xp_layernorm
from tinygrad_gpt.kernels import softmax as xp_softmax
from tinygrad_gpt.kernels.array_module import xp_of

_SOURCE_DIR = pathlib.Path(__file__).parent
_SUFFIX = {numpy.dtype(numpy.float32): "f32", numpy.dtype(numpy.float64): "f64"}
_NULL = numpy.uint64(0)  # a null pointer argument (weight=None, no dropout mask)
_ROW_WARPS = 4  # row kernels: one warp per row, this many per block (ROW_WARPS in common.cuh)
_BLOCK = 256  # threads per block of the elementwise and layernorm-backward kernels
_FLASH_THREADS = 128  # FLASH_THREADS in flash_attention.cu
_FLASH_MAX_HEAD_DIM = 128  # 32 dims per lane, at most 4 lanes per row
_MAX_SHARED = 48 * 1024  # shared memory a block gets without opting in
NVRTC_OPTIONS = ("-std=c++17",)


def source_code(name):
    """The text NVRTC compiles for `name`.cu: common.cuh in front of it, with the .cu file's own
    line numbers kept for error messages."""
    code = (_SOURCE_DIR / "common.cuh").read_text()
    return code + f'#line 1 "{name}.cu"\n' + (_SOURCE_DIR / f"{name}.cu").read_text()


@functools.cache
def _module(name):
    import cupy

    return cupy.RawModule(code=source_code(name), options=NVRTC_OPTIONS)


@functools.cache
def _kernel(source, name):
    return _module(source).get_function(name)


@functools.cache
def _sm_count():
    import cupy

    return cupy.cuda.Device().attributes["MultiProcessorCount"]


def _empty(shape, dtype):
    """Every output the kernels write is allocated here, so tests can fill it with NaN first."""
    import cupy

    return cupy.empty(shape, dtype=dtype)


def _suffix(*arrays):
    """The entry-point suffix ("f32" or "f64") when all arrays are non-empty cupy arrays of that
    one dtype, else None: the caller then uses the reference."""
    if any(xp_of(a) is numpy for a in arrays):
        return None
    dtype = arrays[0].dtype
    if any(a.dtype != dtype or a.size == 0 for a in arrays):
        return None
    return _SUFFIX.get(dtype)


def _contiguous(a):
    import cupy

    return cupy.ascontiguousarray(a)


def _or_null(a):
    return _NULL if a is None else a


def _launch_rows(kernel, rows, args):
    kernel(((rows + _ROW_WARPS - 1) // _ROW_WARPS,), (32 * _ROW_WARPS,), args)


def _launch_elementwise(kernel, n, args):
    """Grid-stride kernels: enough blocks to fill the GPU, fewer for small n."""
    blocks = min((n + _BLOCK - 1) // _BLOCK, 8 * _sm_count())
    kernel((blocks,), (_BLOCK,), args)


# --- layernorm ----------------------------------------------------------------------------------


def layernorm_forward(x, weight, bias, eps=1e-5):
    affine = [a for a in (weight, bias) if a is not None]
    suffix = _suffix(x, *affine)
    if suffix is None or any(a.shape != x.shape[-1:] for a in affine):
        return xp_layernorm.layernorm_forward_fast(x, weight, bias, eps)
    x, weight, bias = (None if a is None else _contiguous(a) for a in (x, weight, bias))
    C = x.shape[-1]
    rows = x.size // C
    y = _empty(x.shape, x.dtype)
    mean = _empty(x.shape[:-1] + (1,), x.dtype)
    rstd = _empty(x.shape[:-1] + (1,), x.dtype)
    _launch_rows(
        _kernel("layernorm", f"layernorm_forward_{suffix}"),
        rows,
        (x, _or_null(weight), _or_null(bias), y, mean, rstd, numpy.int64(rows), numpy.int64(C), x.dtype.type(eps)),
    )
    return y, mean, rstd


def layernorm_backward(dout, x, weight, mean, rstd):
    C = x.shape[-1]
    shared = 2 * C * x.dtype.itemsize  # the block's dweight and dbias sums
    suffix = _suffix(dout, x, mean, rstd, *([] if weight is None else [weight]))
    if (
        suffix is None
        or dout.shape != x.shape
        or mean.size * C != x.size
        or rstd.size != mean.size
        or (weight is not None and weight.shape != (C,))
        or shared > _MAX_SHARED
    ):
        return xp_layernorm.layernorm_backward_fast(dout, x, weight, mean, rstd)
    dout, x, mean, rstd = (_contiguous(a) for a in (dout, x, mean, rstd))
    weight = None if weight is None else _contiguous(weight)
    rows = x.size // C
    blocks = min((rows + _BLOCK // 32 - 1) // (_BLOCK // 32), 2 * _sm_count())
    dx = _empty(x.shape, x.dtype)
    dweight_part = _empty((blocks, C), x.dtype)  # one partial sum per block
    dbias_part = _empty((blocks, C), x.dtype)
    _kernel("layernorm", f"layernorm_backward_{suffix}")(
        (blocks,),
        (_BLOCK,),
        (dout, x, _or_null(weight), mean, rstd, dx, dweight_part, dbias_part, numpy.int64(rows), numpy.int64(C)),
        shared_mem=shared,
    )
    return dx, dweight_part.sum(axis=0), dbias_part.sum(axis=0)


# --- softmax and log-softmax (last axis; the reference for any other) ---------------------------


def _rows_kernel(name, reference, arrays, axis):
    """Run softmax.cu's `name` over the rows of the last axis: arrays are the inputs, one output."""
    suffix = _suffix(*arrays)
    first = arrays[0]
    if suffix is None or axis not in (-1, first.ndim - 1) or any(a.shape != first.shape for a in arrays):
        return reference(*arrays, axis=axis)
    arrays = [_contiguous(a) for a in arrays]
    C = first.shape[-1]
    rows = first.size // C
    out = _empty(first.shape, first.dtype)
    _launch_rows(_kernel("softmax", f"{name}_{suffix}"), rows, (*arrays, out, numpy.int64(rows), numpy.int64(C)))
    return out


def softmax_forward(x, axis=-1):
    return _rows_kernel("softmax_forward", xp_softmax.softmax_forward, [x], axis)


def softmax_backward(dout, y, axis=-1):
    return _rows_kernel("softmax_backward", xp_softmax.softmax_backward, [dout, y], axis)


def log_softmax_forward(x, axis=-1):
    return _rows_kernel("log_softmax_forward", xp_softmax.log_softmax_forward, [x], axis)


def log_softmax_backward(dout, y, axis=-1):
    return _rows_kernel("log_softmax_backward", xp_softmax.log_softmax_backward, [dout, y], axis)


# --- cross-entropy ------------------------------------------------------------------------------


def _targets(targets, rows):
    """Targets as a contiguous int64 cupy vector of `rows` entries, or None if they are not that."""
    import cupy

    targets = cupy.asarray(targets)
    if targets.dtype.kind not in "iu" or targets.size != rows:
        return None
    return cupy.ascontiguousarray(targets.reshape(-1), dtype=cupy.int64)


def cross_entropy_forward(logits, targets, ignore_index=-100):
    suffix = _suffix(logits)
    t = _targets(targets, logits.shape[0]) if suffix and logits.ndim == 2 else None
    if t is None:
        return xp_cross_entropy.cross_entropy_forward_fast(logits, targets, ignore_index)
    logits = _contiguous(logits)
    N, C = logits.shape
    row_loss = _empty((N,), logits.dtype)
    lse = _empty((N, 1), logits.dtype)
    _launch_rows(
        _kernel("cross_entropy", f"cross_entropy_forward_{suffix}"),
        N,
        (logits, t, row_loss, lse, numpy.int64(N), numpy.int64(C)),
    )
    return xp_cross_entropy.mean_over_kept(row_loss, t != ignore_index), lse


def cross_entropy_backward(dout, logits, targets, lse, ignore_index=-100):
    import cupy

    suffix = _suffix(logits, lse)
    t = _targets(targets, logits.shape[0]) if suffix and logits.ndim == 2 else None
    if t is None or lse.size != logits.shape[0] or numpy.size(dout) != 1:
        return xp_cross_entropy.cross_entropy_backward_fast(dout, logits, targets, lse, ignore_index)
    logits, lse = _contiguous(logits), _contiguous(lse)
    dout = cupy.asarray(dout, dtype=logits.dtype)  # the kernel reads it on the GPU: no sync
    kept = cupy.count_nonzero(t != ignore_index).astype(cupy.int64)  # and this count too
    N, C = logits.shape
    dlogits = _empty(logits.shape, logits.dtype)
    _launch_elementwise(
        _kernel("cross_entropy", f"cross_entropy_backward_{suffix}"),
        logits.size,
        (dout, logits, t, lse, dlogits, numpy.int64(N), numpy.int64(C), numpy.int64(ignore_index), kept),
    )
    return dlogits


# --- GELU ---------------------------------------------------------------------------------------


def gelu_forward(x):
    """(y, None): the CUDA backward recomputes tanh u in registers, cheaper than reading it back."""
    suffix = _suffix(x)
    if suffix is None:
        return xp_gelu.gelu_forward_fast(x)
    y = _empty(x.shape, x.dtype)  # x's shape, not its contiguous copy's: that is 1-d for a 0-d x
    x = _contiguous(x)
    _launch_elementwise(_kernel("gelu", f"gelu_forward_{suffix}"), x.size, (x, y, numpy.int64(x.size)))
    return y, None


def gelu_backward(dout, x, tanh_u=None):
    suffix = _suffix(dout, x)
    if suffix is None or dout.shape != x.shape:
        return xp_gelu.gelu_backward_fast(dout, x, tanh_u)
    dx = _empty(x.shape, x.dtype)
    dout, x = _contiguous(dout), _contiguous(x)
    _launch_elementwise(_kernel("gelu", f"gelu_backward_{suffix}"), x.size, (dout, x, dx, numpy.int64(x.size)))
    return dx


# --- dropout ------------------------------------------------------------------------------------


def dropout_mask(uniform, p):
    suffix = _suffix(uniform)
    if suffix is None:
        return xp_dropout.dropout_mask(uniform, p)
    mask = _empty(uniform.shape, uniform.dtype)
    uniform = _contiguous(uniform)
    t = uniform.dtype.type
    _launch_elementwise(
        _kernel("dropout", f"dropout_mask_{suffix}"),
        uniform.size,
        (uniform, mask, t(p), t(1.0 / (1.0 - p)), numpy.int64(uniform.size)),
    )
    return mask


# --- AdamW --------------------------------------------------------------------------------------


def _adamw_scalars(dtype, lr, beta1, beta2, eps, weight_decay, step):
    """The step's constants, folded in double precision and then rounded once, like the reference."""
    t = dtype.type
    return (
        t(beta1),
        t(1.0 - beta1),
        t(beta2),
        t(1.0 - beta2),
        t(eps),
        t(1.0 - lr * weight_decay),
        t(lr / (1.0 - beta1**step)),
        t(1.0 - beta2**step),
    )


def _adamw_fits(param, grad, exp_avg, exp_avg_sq):
    """The kernels update in place, so the state must be contiguous and shaped like param."""
    arrays = (param, grad, exp_avg, exp_avg_sq)
    return _suffix(*arrays) is not None and all(a.shape == param.shape and a.flags.c_contiguous for a in arrays)


def adamw_update(param, grad, exp_avg, exp_avg_sq, *, lr, beta1, beta2, eps, weight_decay, step):
    if not _adamw_fits(param, grad, exp_avg, exp_avg_sq):
        return xp_adamw.adamw_update_fast(
            param,
            grad,
            exp_avg,
            exp_avg_sq,
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            eps=eps,
            weight_decay=weight_decay,
            step=step,
        )
    suffix = _SUFFIX[param.dtype]
    _launch_elementwise(
        _kernel("adamw", f"adamw_update_{suffix}"),
        param.size,
        (
            param,
            grad,
            exp_avg,
            exp_avg_sq,
            numpy.int64(param.size),
            *_adamw_scalars(param.dtype, lr, beta1, beta2, eps, weight_decay, step),
        ),
    )


def adamw_update_multi(params, grads, exp_avgs, exp_avg_sqs, *, lr, beta1, beta2, eps, weight_decay, step):
    """adamw_update over lists of arrays (one hyper-parameter set) in a single kernel launch.

    The arrays' addresses and sizes travel in one small table copied to the GPU per call. Lists
    that do not fit the kernel (mixed dtypes, numpy arrays, ...) are updated one array at a time.
    """
    groups = list(zip(params, grads, exp_avgs, exp_avg_sqs, strict=True))
    hyper = {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": weight_decay, "step": step}
    if not groups:
        return
    dtype = groups[0][0].dtype
    if not all(_adamw_fits(*g) and g[0].dtype == dtype for g in groups):
        for g in groups:
            adamw_update(*g, **hyper)
        return
    import cupy

    count = len(groups)
    table = numpy.empty(5 * count + 1, dtype=numpy.uint64)  # see adamw.cu for the layout
    for column, group in enumerate(groups):
        for row, a in enumerate(group):
            table[row * count + column] = a.data.ptr
    table[4 * count :] = numpy.cumsum([0] + [p.size for p in params])
    total = int(table[-1])
    _launch_elementwise(
        _kernel("adamw", f"adamw_update_multi_{_SUFFIX[dtype]}"),
        total,
        (cupy.asarray(table), numpy.int64(count), *_adamw_scalars(dtype, **hyper)),
    )


# --- attention ----------------------------------------------------------------------------------


class FlashSaved(NamedTuple):
    """What the flash forward keeps for its backward, instead of the (Tq, Tk) probabilities."""

    out: object  # (B, H, Tq, hs), the forward's output (the same array, not a copy)
    lse: object  # (B, H, Tq), log-sum-exp of each row of scaled, masked scores
    is_causal: bool


def _flash_lanes(q):
    """Lanes per row (1, 2 or 4) for the flash kernels, or None where they do not apply."""
    hs = q.shape[-1]
    if q.ndim != 4 or q.dtype != numpy.float32 or hs > _FLASH_MAX_HEAD_DIM:
        return None
    return 1 if hs <= 32 else 2 if hs <= 64 else 4


def _rows_contiguous(a):
    """a itself when its last axis is contiguous (strides handle the rest), else a copy."""
    return a if a.strides[-1] == a.itemsize else _contiguous(a)


def _strides(a):
    """Element strides over the (B, H, T) axes, as the flash kernels take them."""
    return tuple(numpy.int64(s // a.itemsize) for s in a.strides[:3])


def _flash_args(q, k, v):
    _, H, Tq, hs = q.shape
    return (
        numpy.int64(H),
        numpy.int64(Tq),
        numpy.int64(k.shape[2]),
        numpy.int64(hs),
        *_strides(q),
        *_strides(k),
        *_strides(v),
        numpy.float32(1.0 / math.sqrt(hs)),
    )


def _flash_grid(B, H, T, lanes):
    return (B * H, (T + _FLASH_THREADS // lanes - 1) // (_FLASH_THREADS // lanes))


def _dense_mask(dropout_mask, att):
    """The dropout mask as a contiguous array shaped and typed like att (usually already is)."""
    import cupy

    mask = cupy.asarray(dropout_mask, dtype=att.dtype)
    return cupy.ascontiguousarray(cupy.broadcast_to(mask, att.shape))


def attention_forward(q, k, v, is_causal=True, dropout_mask=None):
    suffix = _suffix(q, k, v)
    if suffix is None or k.shape != v.shape or q.shape[:-2] != k.shape[:-2] or q.shape[-1] != k.shape[-1]:
        return xp_attention.attention_forward_fast(q, k, v, is_causal, dropout_mask)
    lanes = _flash_lanes(q)
    if dropout_mask is None and lanes is not None:
        q, k, v = (_rows_contiguous(a) for a in (q, k, v))
        B, H, Tq, _ = q.shape
        out = _empty(q.shape, q.dtype)
        lse = _empty((B, H, Tq), q.dtype)
        _kernel("flash_attention", f"flash_forward_g{lanes}")(
            _flash_grid(B, H, Tq, lanes),
            (_FLASH_THREADS,),
            (q, k, v, out, lse, *_flash_args(q, k, v), numpy.int64(is_causal)),
        )
        return out, FlashSaved(out, lse, bool(is_causal))

    # Fused path: cuBLAS for the products, one kernel for scale + mask + softmax (+ dropout).
    Tq, Tk = q.shape[-2], k.shape[-2]
    att = q @ k.swapaxes(-1, -2)  # a fresh contiguous array, normalized in place below
    rows = att.size // Tk
    mask = None if dropout_mask is None else _dense_mask(dropout_mask, att)
    p = None if mask is None else _empty(att.shape, att.dtype)
    _launch_rows(
        _kernel("attention", f"attention_softmax_{suffix}"),
        rows,
        (
            att,
            _or_null(p),
            _or_null(mask),
            numpy.int64(rows),
            numpy.int64(Tq),
            numpy.int64(Tk),
            att.dtype.type(1.0 / math.sqrt(q.shape[-1])),
            numpy.int64(is_causal),
        ),
    )
    return (att if p is None else p) @ v, att


def attention_backward(dout, q, k, v, saved, dropout_mask=None):
    if isinstance(saved, FlashSaved):
        import cupy

        q, k, v = (_rows_contiguous(a) for a in (q, k, v))
        dout = cupy.ascontiguousarray(dout, dtype=q.dtype)
        B, H, Tq, _ = q.shape
        lanes = _flash_lanes(q)
        delta = _empty((B, H, Tq), q.dtype)  # rowsum(dO * O), written by the dq kernel
        dq, dk, dv = _empty(q.shape, q.dtype), _empty(k.shape, k.dtype), _empty(v.shape, v.dtype)
        args = (*_flash_args(q, k, v), numpy.int64(saved.is_causal))
        _kernel("flash_attention", f"flash_backward_dq_g{lanes}")(
            _flash_grid(B, H, Tq, lanes), (_FLASH_THREADS,), (q, k, v, saved.out, dout, saved.lse, delta, dq, *args)
        )
        _kernel("flash_attention", f"flash_backward_dkdv_g{lanes}")(
            _flash_grid(B, H, k.shape[2], lanes), (_FLASH_THREADS,), (q, k, v, dout, saved.lse, delta, dk, dv, *args)
        )
        return dq, dk, dv

    suffix = _suffix(dout, q, k, v, saved)
    if suffix is None or dout.shape != q.shape or saved.shape != q.shape[:-1] + k.shape[-2:-1]:
        return xp_attention.attention_backward_fast(dout, q, k, v, saved, dropout_mask)
    att = _contiguous(saved)
    mask = None if dropout_mask is None else _dense_mask(dropout_mask, att)
    p = att if mask is None else att * mask
    dv = p.swapaxes(-1, -2) @ dout
    ds = dout @ v.swapaxes(-1, -2)  # dP, turned into dS in place
    rows = ds.size // ds.shape[-1]
    _launch_rows(
        _kernel("attention", f"attention_softmax_backward_{suffix}"),
        rows,
        (
            ds,
            att,
            _or_null(mask),
            numpy.int64(rows),
            numpy.int64(ds.shape[-1]),
            att.dtype.type(1.0 / math.sqrt(q.shape[-1])),
        ),
    )
    return ds @ k, ds.swapaxes(-1, -2) @ q, dv
