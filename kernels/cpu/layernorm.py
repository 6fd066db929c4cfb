"""LayerNorm as llm.c writes it in C: one row at a time, three loops over its C numbers (the sum,
the squares, the output) that read x while it is in the cache and keep the rest in registers,
where the fast NumPy kernel makes a pass over all rows (and often a fresh array) per operation.
The derivation is above layernorm_backward in kernels/layernorm.py; the names here follow it."""

import numpy

from tinygrad_gpt.kernels.cpu.compiler import compiled, flat, rows


@compiled
def _forward_rows(x, weight, bias, eps, out, mean, rstd):
    rows, C = x.shape
    zero, one, inv_c = x.dtype.type(0), x.dtype.type(1), x.dtype.type(1.0 / C)
    for i in range(rows):
        total = zero
        for j in range(C):
            total += x[i, j]
        m = total * inv_c
        squares = zero
        for j in range(C):
            xc = x[i, j] - m
            squares += xc * xc
        r = one / numpy.sqrt(squares * inv_c + eps)
        for j in range(C):
            out[i, j] = (x[i, j] - m) * r * weight[j] + bias[j]
        mean[i], rstd[i] = m, r


# Per row: dnorm = dout * weight; dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)).
# The first loop sums both means and adds the row's share of dweight and dbias; the second
# writes dx. norm is recomputed from mean and rstd in each loop (a multiply, cheaper than a store).
@compiled
def _backward_rows(dout, x, weight, mean, rstd, dx, dweight, dbias):
    rows, C = x.shape
    zero, inv_c = x.dtype.type(0), x.dtype.type(1.0 / C)
    dweight[:] = zero
    dbias[:] = zero
    for i in range(rows):
        m, r = mean[i], rstd[i]
        dnorm_sum = zero
        dnorm_norm_sum = zero
        for j in range(C):
            norm = (x[i, j] - m) * r
            dnorm = dout[i, j] * weight[j]
            dnorm_sum += dnorm
            dnorm_norm_sum += dnorm * norm
            dbias[j] += dout[i, j]
            dweight[j] += dout[i, j] * norm
        dnorm_mean, dnorm_norm_mean = dnorm_sum * inv_c, dnorm_norm_sum * inv_c
        for j in range(C):
            norm = (x[i, j] - m) * r
            dx[i, j] = r * (dout[i, j] * weight[j] - dnorm_mean - norm * dnorm_norm_mean)


def _affine(weight, bias, C, dtype):
    """weight and bias, with ones and zeros standing in for None (LayerNorm(bias=False))."""
    weight = numpy.ones(C, dtype) if weight is None else numpy.ascontiguousarray(weight)
    bias = numpy.zeros(C, dtype) if bias is None else numpy.ascontiguousarray(bias)
    return weight, bias


def layernorm_forward(x, weight, bias, eps=1e-5):
    C = x.shape[-1]
    weight, bias = _affine(weight, bias, C, x.dtype)
    out = numpy.empty(x.shape, x.dtype)
    mean = numpy.empty(x.shape[:-1] + (1,), x.dtype)
    rstd = numpy.empty(x.shape[:-1] + (1,), x.dtype)
    _forward_rows(rows(x), weight, bias, x.dtype.type(eps), rows(out), flat(mean), flat(rstd))
    return out, mean, rstd


def layernorm_backward(dout, x, weight, mean, rstd):
    C = x.shape[-1]
    weight, _ = _affine(weight, None, C, x.dtype)
    dx = numpy.empty(x.shape, x.dtype)
    dweight, dbias = numpy.empty(C, x.dtype), numpy.empty(C, x.dtype)
    _backward_rows(rows(dout), rows(x), weight, flat(mean), flat(rstd), rows(dx), dweight, dbias)
    return dx, dweight, dbias
