"""gradcheck: compare the analytic backward with central finite differences, in float64.

Like Chainer's check_backward: a tensor output is reduced to a scalar through a fixed random
projection r (L = sum(r * f(x))), so one backward gives dL/dx for every input at once, and each
input element is nudged by +-eps to measure the same derivative numerically.
"""

import numpy

from engine.backend import to_numpy
from engine.grad_mode import no_grad
from engine.tensor import Tensor
from kernels.array_module import xp_of


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
        x.data = xp_of(x.data).ascontiguousarray(x.data)  # so the flat view below nudges x itself

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
        flat = x.data.reshape(-1)  # a view: nudging it nudges x
        for j in range(flat.size):
            original = flat[j].item()
            flat[j] = original + eps
            up = projected()
            flat[j] = original - eps
            down = projected()
            flat[j] = original
            numeric = (up - down) / (2 * eps)
            exact = analytic.reshape(-1)[j]
            if not abs(numeric - exact) <= atol + rtol * abs(numeric):
                where = numpy.unravel_index(j, x.shape) if x.shape else ()
                raise AssertionError(
                    f"gradcheck: input {i} (shape {x.shape}), element {tuple(int(k) for k in where)}: "
                    f"numeric {numeric:.8g} vs analytic {exact:.8g}"
                )
    return True
