"""GELU (kernels/gelu.py has the formula and the derivation) as one loop each way, with its own tanh.

Numba has no SIMD tanh: LLVM would call the C library's once per number, far slower than NumPy's
vectorized loop; and NumPy's loop is itself much slower without AVX-512 (docs/benchmarks.md). So
the float32 forward computes tanh from arithmetic that every SIMD unit has (+, *, /), in the same
single pass that makes u and the output:

    tanh y = y / (1 + y^2 / (3 + y^2 / (5 + ... + y^2 / 17)))   (Lambert's continued fraction, cut)
           = y (34459425 + 4729725 y^2 + 135135 y^4 + 990 y^6 + y^8)
             / (34459425 + 16216200 y^2 + 945945 y^4 + 13860 y^6 + 45 y^8)

close to float32's rounding for |y| <= 4.5; the double-angle rule tanh 2y = 2 tanh y / (1 + tanh^2 y)
takes it to |u| <= 9, past which float32's tanh is +-1 (so u is clamped there). It is within 5 ulp
of the exact tanh (tests/test_kernels.py), a little further than NumPy's float32 tanh. Float64,
which the gradient checks use, takes the fast kernel's forward and NumPy's exact tanh. tanh u is
kept for the backward, which is one loop for both."""

import numpy

from tinygrad_gpt.kernels.cpu.compiler import compiled, flat
from tinygrad_gpt.kernels.gelu import GELU_COEF, SQRT_2_OVER_PI, gelu_forward_fast

TANH_CLAMP = 9.0  # float32 tanh rounds to +-1 from 9.01 on


@compiled
def tanh32(u):
    """float32 tanh of the float32 u (see the module's docstring)."""
    f = numpy.float32
    y = min(max(u, f(-TANH_CLAMP)), f(TANH_CLAMP)) * f(0.5)
    s = y * y
    p = y * (f(34459425) + s * (f(4729725) + s * (f(135135) + s * (f(990) + s))))
    q = f(34459425) + s * (f(16216200) + s * (f(945945) + s * (f(13860) + s * f(45))))
    tanh_y = p / q
    return f(2) * tanh_y / (f(1) + tanh_y * tanh_y)


@compiled
def _forward32(x, out, tanh_u):
    c, k = numpy.float32(SQRT_2_OVER_PI), numpy.float32(GELU_COEF)
    half, one = numpy.float32(0.5), numpy.float32(1)
    for i in range(x.size):
        t = tanh32(c * (x[i] + k * x[i] * x[i] * x[i]))
        tanh_u[i] = t
        out[i] = half * x[i] * (one + t)


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
    if x.dtype != numpy.float32:
        return gelu_forward_fast(x)
    tanh_u, out = numpy.empty(x.shape, x.dtype), numpy.empty(x.shape, x.dtype)
    _forward32(flat(x), flat(out), flat(tanh_u))
    return out, tanh_u


def gelu_backward(dout, x, tanh_u=None):
    if tanh_u is None:  # the CUDA forward saves none; recompute it as the forward would
        _, tanh_u = gelu_forward(x)
    dx = numpy.empty(x.shape, x.dtype)
    _backward(flat(dout), flat(x), flat(tanh_u), flat(dx))
    return dx
