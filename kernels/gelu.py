"""GELU in GPT-2's tanh form.

Written with in-place updates of one or two buffers: on the CPU every fresh temporary of a
(B, T, 4C) activation costs more than the arithmetic done in it.
"""

import math

from kernels.array_module import xp_of

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_COEF = 0.044715


def _tanh_u(x, x2):
    """tanh(u), given x2 = x^2, with u = sqrt(2/pi) (x + 0.044715 x^3) written as
    x (sqrt(2/pi) + sqrt(2/pi) 0.044715 x^2): one pass fewer."""
    t = x2 * (SQRT_2_OVER_PI * GELU_COEF)
    t += SQRT_2_OVER_PI
    t *= x
    return xp_of(x).tanh(t, out=t)


def gelu_forward(x):
    """y = x/2 (1 + tanh u). Returns y and tanh u, which backward would otherwise recompute."""
    tanh_u = _tanh_u(x, x * x)
    y = tanh_u + 1.0
    y *= x
    y *= 0.5
    return y, tanh_u


# y = x/2 (1 + tanh u), u = sqrt(2/pi) (x + 0.044715 x^3). Product and chain rule:
#   dy/dx = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) du/dx,   du/dx = sqrt(2/pi) (1 + 3*0.044715 x^2)
# With tanh u saved by the forward (one more array kept), the backward spends no tanh and about a
# third fewer passes; without it (tanh_u=None) it is recomputed from x.
def gelu_backward(dy, x, tanh_u=None):
    x2 = x * x
    t = _tanh_u(x, x2) if tanh_u is None else tanh_u
    du = x2  # x2 is not needed again: reuse it for du/dx
    du *= 3.0 * GELU_COEF * SQRT_2_OVER_PI
    du += SQRT_2_OVER_PI
    du *= x
    sech2 = t * t
    xp_of(x).subtract(1.0, sech2, out=sech2)  # 1 - tanh^2 u
    du *= sech2  # x (1 - tanh^2 u) du/dx
    du += t
    du += 1.0
    du *= 0.5  # dy/dx
    du *= dy
    return du
