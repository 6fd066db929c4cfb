"""GELU (kernels/gelu.py has the formula and the derivation) in two loops around NumPy's tanh.

Numba has no SIMD tanh: LLVM would call the C library's once per number, several times slower
than NumPy's vectorized loop. So the forward is three passes: u from x (one loop), tanh u
(NumPy, in place), out from x and tanh u (one loop); the fast NumPy kernel makes eight. tanh u is
kept for the backward, which is one loop."""

import numpy

from kernels.cpu.compiler import compiled, flat
from kernels.gelu import GELU_COEF, SQRT_2_OVER_PI


@compiled
def _u(x, u):
    c, k = x.dtype.type(SQRT_2_OVER_PI), x.dtype.type(GELU_COEF)
    for i in range(x.size):
        u[i] = c * (x[i] + k * x[i] * x[i] * x[i])


@compiled
def _out(x, tanh_u, out):
    half, one = x.dtype.type(0.5), x.dtype.type(1)
    for i in range(x.size):
        out[i] = half * x[i] * (one + tanh_u[i])


# dout/dx = (1 + tanh u) / 2 + x / 2 (1 - tanh^2 u) du/dx,  du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
@compiled
def _backward(dout, x, tanh_u, dx):
    c, k3 = x.dtype.type(SQRT_2_OVER_PI), x.dtype.type(3 * GELU_COEF)
    half, one = x.dtype.type(0.5), x.dtype.type(1)
    for i in range(x.size):
        t = tanh_u[i]
        du_dx = c * (one + k3 * x[i] * x[i])
        dx[i] = dout[i] * (half * (one + t) + half * x[i] * (one - t * t) * du_dx)


def gelu_forward(x):
    x_flat = flat(x)
    tanh_u, out = numpy.empty(x.shape, x.dtype), numpy.empty(x.shape, x.dtype)
    _u(x_flat, flat(tanh_u))
    numpy.tanh(tanh_u, out=tanh_u)
    _out(x_flat, flat(tanh_u), flat(out))
    return out, tanh_u


def gelu_backward(dout, x, tanh_u=None):
    if tanh_u is None:  # the CUDA forward saves none; recompute it as the forward would
        _, tanh_u = gelu_forward(x)
    dx = numpy.empty(x.shape, x.dtype)
    _backward(flat(dout), flat(x), flat(tanh_u), flat(dx))
    return dx
