"""GELU in GPT-2's tanh form."""
import math

from kernels.array_module import xp_of

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_COEF = 0.044715


def gelu_forward(x):
    xp = xp_of(x)
    return 0.5 * x * (1.0 + xp.tanh(SQRT_2_OVER_PI * (x + GELU_COEF * x * x * x)))


# y = x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). Product and chain rule:
#   dy/dx = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) du/dx,   du/dx = sqrt(2/pi) (1 + 3*0.044715 x^2)
# We save x (not y) and recompute tanh u: one array saved, one tanh spent.
def gelu_backward(dy, x):
    xp = xp_of(x)
    x2 = x * x
    t = xp.tanh(SQRT_2_OVER_PI * x * (1.0 + GELU_COEF * x2))
    du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEF * x2)
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)
