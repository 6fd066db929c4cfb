"""Function: one node of the graph (Chainer's FunctionNode, micrograd's _backward, as a class).

A subclass says two things, in this order, so each op reads as a small story:
  forward(*arrays)  -> the output array; it stores on `self` what backward will need
  backward(grad)    -> one gradient per input (None where no gradient flows), each of the
                       input's own shape, or a shape that broadcasts to it (summed back for it)
A forward may return a tuple of arrays (split does): each becomes a Tensor, the node runs its
backward once, after all of them, as backward(*grads), None for an output no gradient reached.
Inputs that are not Tensors (scalars, index arrays) pass straight through to forward.
A backward never writes into the gradient it is given: that array may be shared.
"""

import numpy

from engine.grad_mode import is_grad_enabled
from engine.profiler import timed
from engine.tensor import Tensor, check_same_device


class Function:
    n_outputs = 1
    outputs_walked = 0  # by backward passes so far; the node is freed once all of them are

    def __init__(self, **params):
        self.__dict__.update(params)
        self.inputs = ()

    @classmethod
    def apply(cls, *inputs, **params):
        check_same_device(cls.__name__, inputs)
        # a numpy scalar (np.float64(2.0)) would upcast float32 arrays; a Python scalar does not.
        # A list operand becomes a Tensor by Tensor()'s rule (float lists are float32).
        inputs = tuple(
            x.item() if isinstance(x, numpy.generic) else Tensor(x) if isinstance(x, list) else x for x in inputs
        )
        fn = cls(**params)
        arrays = [x.data if isinstance(x, Tensor) else x for x in inputs]
        result = timed(cls.__name__, "forward", fn.forward, *arrays)
        outputs = tuple(Tensor._from_array(a) for a in (result if isinstance(result, tuple) else (result,)))
        if is_grad_enabled() and any(isinstance(x, Tensor) and x.requires_grad for x in inputs):
            fn.inputs, fn.n_outputs = inputs, len(outputs)
            for index, out in enumerate(outputs):
                out.requires_grad, out._ctx, out._output_index = True, fn, index
        return outputs if isinstance(result, tuple) else outputs[0]

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, *grads):
        raise NotImplementedError

    def __repr__(self):
        return type(self).__name__
