"""engine: Tensor, reverse-mode autograd, and the functional API, on numpy or cupy.

from engine import Tensor, no_grad, gradcheck, set_backend, set_kernels
import engine.functional as F
"""

from engine import methods as _methods  # noqa: F401  (attaches operators and methods to Tensor)
from engine.autograd import grad
from engine.backend import BackendError, set_backend
from engine.dispatch import set_kernels
from engine.draw import draw
from engine.grad_mode import is_grad_enabled, no_grad
from engine.gradcheck import gradcheck, gradcheck_parameters
from engine.random import manual_seed
from engine.tensor import Tensor
from engine.trace import trace

__all__ = [
    "Tensor",
    "grad",
    "no_grad",
    "is_grad_enabled",
    "gradcheck",
    "gradcheck_parameters",
    "set_backend",
    "set_kernels",
    "BackendError",
    "manual_seed",
    "trace",
    "draw",
]
