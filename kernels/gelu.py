"""GELU in GPT-2's tanh form: y = x/2 (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3)."""

import math

from tinygrad_gpt.kernels.array_module import xp_of

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_COEF = 0.044715


def gelu_forward(x):
    """Returns out and tanh u, which backward needs."""
    xp = xp_of(x)
    u = SQRT_2_OVER_PI * (x + GELU_COEF * x**3)
    tanh_u = xp.tanh(u)
    out = 0.5 * x * (1.0 + tanh_u)
    return out, tanh_u


# out = x/2 (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3). Product and chain rule:
#   dout/dx = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) du/dx,   du/dx = sqrt(2/pi) (1 + 3*0.044715 x^2)
def gelu_backward(dout, x, tanh_u):
    du_dx = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEF * x**2)
    local_grad = 0.5 * (1.0 + tanh_u) + 0.5 * x * (1.0 - tanh_u**2) * du_dx
    return dout * local_grad


# --- fast ---------------------------------------------------------------------------------------
# The same arithmetic in one or two reused buffers: on the CPU every fresh temporary of a
# (B, T, 4C) activation costs more than the arithmetic done in it. The constants of u are folded
# (u = x (sqrt(2/pi) + sqrt(2/pi) 0.044715 x^2): one pass fewer), and the backward can also
# recompute tanh u from x when the forward did not keep it (tanh_u=None, as the CUDA forward does).
# (xp.asarray where a buffer is made: on a 0-d x, NumPy's arithmetic returns scalars, not arrays.)


def _tanh_u(x, x2):
    """tanh(u), given x2 = x^2, in one buffer."""
    t = xp_of(x).asarray(x2 * (SQRT_2_OVER_PI * GELU_COEF))
    t += SQRT_2_OVER_PI
    t *= x
    return xp_of(x).tanh(t, out=t)


def gelu_forward_fast(x):
    tanh_u = _tanh_u(x, x * x)
    out = tanh_u + 1.0
    out *= x
    out *= 0.5
    return out, tanh_u


def gelu_backward_fast(dout, x, tanh_u=None):
    xp = xp_of(x)
    x2 = xp.asarray(x * x)
    t = _tanh_u(x, x2) if tanh_u is None else tanh_u
    dx = x2  # x2 is not needed again: the buffer becomes du/dx, then the local gradient, then dx
    dx *= 3.0 * GELU_COEF * SQRT_2_OVER_PI
    dx += SQRT_2_OVER_PI
    dx *= x
    sech2 = xp.asarray(t * t)
    xp.subtract(1.0, sech2, out=sech2)  # 1 - tanh^2 u
    dx *= sech2  # x (1 - tanh^2 u) du/dx
    dx += t
    dx += 1.0
    dx *= 0.5  # dout/dx
    dx *= dout
    return dx
