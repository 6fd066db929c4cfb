"""Elementwise arithmetic, unary math and the matrix product.

Each backward returns gradients of the output's (broadcast) shape; the backward walk sums them
back to each input's shape, so broadcasting needs no code here.
"""

from tinygrad_gpt.engine.dispatch import kernels_for
from tinygrad_gpt.engine.function import Function
from tinygrad_gpt.kernels.array_module import xp_of


class Add(Function):
    def forward(self, a, b):
        return a + b

    # d(a+b)/da = d(a+b)/db = 1
    def backward(self, dout):
        return dout, dout


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, dout):
        return dout, -dout


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    # d(ab)/da = b, d(ab)/db = a
    def backward(self, dout):
        return dout * self.b, dout * self.a


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
    def backward(self, dout):
        da = dout / self.b
        return da, -da * self.a / self.b


class Pow(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = a**b
        return self.out

    # d(a^b)/da = b a^(b-1);  d(a^b)/db = a^b ln a (only when b is a tensor that wants it)
    def backward(self, dout):
        a_wants, b_wants = self.needs_input_grad
        da = dout * self.b * self.a ** (self.b - 1) if a_wants else None
        xp = xp_of(self.out)
        db = dout * self.out * xp.log(xp.asarray(self.a, dtype=self.out.dtype)) if b_wants else None
        return da, db


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, dout):
        return -dout


class Exp(Function):
    def forward(self, a):
        self.out = xp_of(a).exp(a)
        return self.out

    # d e^a / da = e^a: the output itself is saved
    def backward(self, dout):
        return dout * self.out


class Log(Function):
    def forward(self, a):
        self.a = a
        return xp_of(a).log(a)

    # d ln a / da = 1/a
    def backward(self, dout):
        return dout / self.a


class Sqrt(Function):
    def forward(self, a):
        self.out = xp_of(a).sqrt(a)
        return self.out

    # d sqrt(a)/da = 1 / (2 sqrt(a))
    def backward(self, dout):
        return dout / (2 * self.out)


class Tanh(Function):
    def forward(self, a):
        self.out = xp_of(a).tanh(a)
        return self.out

    # d tanh(a)/da = 1 - tanh(a)^2
    def backward(self, dout):
        return dout * (1 - self.out * self.out)


class Relu(Function):
    def forward(self, a):
        self.positive = a > 0
        return a * self.positive

    # d relu(a)/da = 1 where a > 0, else 0
    def backward(self, dout):
        return dout * self.positive


class Gelu(Function):
    def forward(self, x):
        self.kernels = kernels_for(x)
        out, self.saved = self.kernels.gelu_forward(x)
        self.x = x
        return out

    # derivation above kernels.gelu.gelu_backward
    def backward(self, dout):
        return self.kernels.gelu_backward(dout, self.x, self.saved)


class MatMul(Function):
    """a @ b for operands of at least 2 dimensions (1-D ones are promoted by the caller)."""

    def forward(self, a, b):
        self.kernels = kernels_for(a)
        self.a, self.b = a, b
        return self.kernels.matmul_forward(a, b)

    # derivation above kernels.matmul.matmul_backward
    def backward(self, dout):
        return self.kernels.matmul_backward(dout, self.a, self.b)
