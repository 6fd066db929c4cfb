"""engine: Tensor, reverse-mode autograd, and the functional API, on numpy or cupy.

from tinygrad_gpt.engine import Tensor, no_grad, gradcheck, set_backend, set_kernels
import tinygrad_gpt.engine.functional as F
"""

from tinygrad_gpt.engine import methods as _methods  # noqa: F401  (attaches operators and methods to Tensor)
from tinygrad_gpt.engine.autograd import grad
from tinygrad_gpt.engine.backend import BackendError, set_backend
from tinygrad_gpt.engine.dispatch import set_kernels
from tinygrad_gpt.engine.draw import draw
from tinygrad_gpt.engine.grad_mode import is_grad_enabled, no_grad
from tinygrad_gpt.engine.gradcheck import gradcheck, gradcheck_parameters
from tinygrad_gpt.engine.random import manual_seed
from tinygrad_gpt.engine.tensor import Tensor
from tinygrad_gpt.engine.trace import trace

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
