"""Gradient checks: the analytic backward against central finite differences, in float64.

gradcheck(fn, *inputs), for an op or any function of a few small tensors: like Chainer's
check_backward, a tensor output is reduced to a scalar through a fixed random projection r
(L = sum(r * f(x))), so one backward gives dL/dx for every input at once, and each input element
is nudged by +-eps to measure the same derivative numerically.

gradcheck_parameters(loss_fn, named_parameters), for a whole model: too many numbers to nudge
one by one, so each parameter is checked along a random direction (every element of it moves
at once) and at a few random elements, with a fourth-order difference.
"""

import numpy

from tinygrad_gpt.engine.backend import to_numpy
from tinygrad_gpt.engine.grad_mode import no_grad
from tinygrad_gpt.engine.tensor import Tensor
from tinygrad_gpt.kernels.array_module import xp_of

# Central differences along a direction d, as {multiple of the step h: weight}; the derivative is
# sum(weight * f(x + multiple * h * d)) / h.
TWO_POINT = {1: 1 / 2, -1: -1 / 2}  # error O(h^2)
FOUR_POINT = {2: -1 / 12, 1: 8 / 12, -1: -8 / 12, -2: 1 / 12}  # error O(h^4): a larger h, less rounding


def directional_derivative(f, x, direction, h, stencil=TWO_POINT):
    """d f / d x along `direction` by central differences: f() is evaluated with x.data moved to
    x + k h direction for each k of the stencil; x.data is put back (the very same array) after."""
    original, xp = x.data, xp_of(x.data)
    try:
        total = 0.0
        for k, weight in stencil.items():
            x.data = xp.asarray(original + (k * h) * direction)  # asarray: 0-d stays an array
            total += weight * f()
    finally:
        x.data = original
    return total / h


def gradcheck(fn, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, seed=0):
    """True if fn's gradients w.r.t. every input that requires grad match finite differences.

    fn takes the inputs (Tensors; float64 ones give meaningful results) and returns a Tensor.
    Raises AssertionError naming the input, the element, and the numeric and analytic values.
    """
    checked = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for x in checked:
        if x.dtype != numpy.float64:
            raise ValueError(f"gradcheck needs float64 inputs for accurate differences, got {x.dtype}")
    users_grads = [x.grad for x in checked]  # put back afterwards: gradcheck is an observer
    try:
        return _check(fn, inputs, checked, eps, atol, rtol, seed)
    finally:
        for x, grad in zip(checked, users_grads):
            x.grad = grad


def _check(fn, inputs, checked, eps, atol, rtol, seed):
    for x in checked:
        x.grad = None
    out = fn(*inputs)
    r = xp_of(out.data).asarray(numpy.random.default_rng(seed).standard_normal(out.shape))

    def projected():
        with no_grad():
            return float((fn(*inputs).data * r).sum())

    (out * Tensor._from_array(r)).sum().backward()
    for i, x in enumerate(inputs):
        if not (isinstance(x, Tensor) and x.requires_grad):
            continue
        analytic = numpy.zeros(x.shape) if x.grad is None else to_numpy(x.grad)
        for j in range(x.size):
            one_hot = xp_of(x.data).zeros(x.size, dtype=x.dtype)
            one_hot[j] = 1.0
            numeric = directional_derivative(projected, x, one_hot.reshape(x.shape), eps)
            exact = analytic.reshape(-1)[j]
            if not abs(numeric - exact) <= atol + rtol * abs(numeric):
                where = numpy.unravel_index(j, x.shape) if x.shape else ()
                raise AssertionError(
                    f"gradcheck: input {i} (shape {x.shape}), element {tuple(int(k) for k in where)}: "
                    f"numeric {numeric:.8g} vs analytic {exact:.8g}"
                )
    return True


def gradcheck_parameters(loss_fn, named_parameters, elements=3, h=1e-3, atol=1e-6, seed=0):
    """For each (name, parameter): the worst relative error between d loss / d parameter from one
    backward and from central differences, along a random unit direction and at `elements` random
    elements. Yields (name, shape, worst error) as each parameter is done; the caller decides what
    is too much.

    loss_fn() returns the scalar loss as a Tensor and must be the same function of the parameters
    at every call (reseed dropout inside it). Parameters should be float64: float32's rounding
    swamps the differences. The error of one derivative is |analytic - numeric| / max(|analytic|,
    |numeric|, atol): relative, since gradients span orders of magnitude from parameter to
    parameter, except that derivatives below atol are compared in absolute terms (one that is
    exactly 0, like a key bias's, differs from its numeric value by rounding alone: ~1e-12 at
    h = 1e-3 for a loss of a few units). The parameters' .grad are left as the backward made them."""
    named_parameters = list(named_parameters)
    for _, p in named_parameters:
        p.grad = None
    loss_fn().backward()

    def loss():
        with no_grad():
            return float(loss_fn().item())

    for index, (name, p) in enumerate(named_parameters):
        rng = numpy.random.default_rng([seed, index])
        xp = xp_of(p.data)
        grad = to_numpy(p.grad) if p.grad is not None else numpy.zeros(p.shape)
        direction = rng.standard_normal(p.shape)
        direction /= numpy.linalg.norm(direction)
        checks = [(direction, float((grad * direction).sum()))]
        for j in rng.choice(p.size, size=min(elements, p.size), replace=False):
            one_hot = numpy.zeros(p.size)
            one_hot[j] = 1.0
            checks.append((one_hot.reshape(p.shape), float(grad.reshape(-1)[j])))
        worst = 0.0
        for d, analytic in checks:
            numeric = directional_derivative(loss, p, xp.asarray(d, dtype=p.dtype), h, FOUR_POINT)
            worst = max(worst, abs(analytic - numeric) / max(abs(analytic), abs(numeric), atol))
        yield name, p.shape, worst
