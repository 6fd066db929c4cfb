"""Function: one node of the graph (Chainer's FunctionNode, micrograd's _backward, as a class).

An op subclasses Function and says two things, in this order, so each op reads as a small story:
  forward(*arrays, **params) -> the output array; it keeps on `self` what backward will need
  backward(dout)             -> one gradient per input (None where none is needed), each of the
                                input's own shape or one that broadcasts to it (the engine sums
                                it back to the input's shape)
Inputs that are not Tensors (scalars, index arrays) pass straight through to forward; keyword
parameters (an axis, an epsilon) are named in forward's signature. `self.needs_input_grad[i]`
says whether input i wants a gradient (torch's name), so forward can skip saving for one that
does not. A forward may return a tuple of arrays (split does): each becomes a Tensor, and the
node's backward runs once, after all of them, as backward(*douts), None for an output no
gradient reached. A backward never writes into the gradient it is given: it may be shared.
"""

import numpy

from tinygrad_gpt.engine.grad_mode import is_grad_enabled
from tinygrad_gpt.engine.profiler import timed
from tinygrad_gpt.engine.tensor import Tensor, check_same_device


class Function:
    n_outputs = 1
    outputs_walked = 0  # by backward walks so far; the node lets go of its inputs once all are

    @classmethod
    def apply(cls, *inputs, **params):
        """Run the op on `inputs` (Tensors and plain values) and, when a gradient may flow back
        through it, record the node that will run its backward."""
        # (lists where generators would read as well: this runs for every op, and they are quicker)
        check_same_device(cls.__name__, inputs)
        inputs = [_operand(x) for x in inputs]
        fn = cls()
        fn.needs_input_grad = tuple([isinstance(x, Tensor) and x.requires_grad for x in inputs])
        arrays = [x.data if isinstance(x, Tensor) else x for x in inputs]
        result = timed(cls.__name__, "forward", fn.forward, *arrays, **params)
        several = isinstance(result, tuple)
        outputs = tuple([Tensor._from_array(a) for a in result]) if several else (Tensor._from_array(result),)
        if is_grad_enabled() and any(fn.needs_input_grad):
            # only the inputs a gradient goes to are kept: the walk needs nothing else
            fn.inputs = tuple([x if needs else None for x, needs in zip(inputs, fn.needs_input_grad)])
            fn.n_outputs = len(outputs)
            for index, out in enumerate(outputs):
                out.requires_grad, out._ctx, out._output_index = True, fn, index
        return outputs if several else outputs[0]

    def forward(self, *arrays, **params):
        raise NotImplementedError

    def backward(self, *douts):
        raise NotImplementedError

    def __repr__(self):
        return type(self).__name__


def _operand(x):
    """A NumPy scalar becomes a Python one (np.float64(2.0) would upcast float32 arrays; a Python
    float does not); a list becomes a Tensor by Tensor()'s rule (float lists are float32)."""
    if isinstance(x, numpy.generic):
        return x.item()
    return Tensor(x) if isinstance(x, list) else x
