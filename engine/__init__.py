"""engine: Tensor, reverse-mode autograd, and the functional API, on numpy or cupy.

from engine import Tensor, no_grad, gradcheck, set_backend
import engine.functional as F
"""

from engine import methods as _methods  # noqa: F401  (attaches operators and methods to Tensor)
from engine.backend import BackendError, set_backend
from engine.grad_mode import is_grad_enabled, no_grad
from engine.gradcheck import gradcheck
from engine.random import manual_seed
from engine.tensor import Tensor, grad
from engine.trace import trace

__all__ = [
    "Tensor",
    "grad",
    "no_grad",
    "is_grad_enabled",
    "gradcheck",
    "set_backend",
    "BackendError",
    "manual_seed",
    "trace",
]
