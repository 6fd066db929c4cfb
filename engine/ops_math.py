"""Elementwise arithmetic, unary math and the matrix product.

Each backward returns gradients of the output's (broadcast) shape; Tensor.backward sums them
back to each input's shape, so broadcasting needs no code here.
"""

from engine.dispatch import K
from engine.function import Function
from engine.tensor import Tensor
from kernels.array_module import xp_of


class Add(Function):
    def forward(self, a, b):
        return a + b

    # d(a+b)/da = d(a+b)/db = 1
    def backward(self, g):
        return g, g


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, g):
        return g, -g


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    # d(ab)/da = b, d(ab)/db = a
    def backward(self, g):
        return g * self.b, g * self.a


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
    def backward(self, g):
        gb = g / self.b
        return gb, -gb * self.a / self.b


class Pow(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = a**b
        return self.out

    # d(a^b)/da = b a^(b-1);  d(a^b)/db = a^b ln a (only needed when b is a tensor)
    def backward(self, g):
        a_is_tensor, b_is_tensor = (isinstance(x, Tensor) for x in self.inputs)
        ga = g * self.b * self.a ** (self.b - 1) if a_is_tensor else None
        xp = xp_of(self.out)
        gb = g * self.out * xp.log(xp.asarray(self.a, dtype=self.out.dtype)) if b_is_tensor else None
        return ga, gb


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        return -g


class Exp(Function):
    def forward(self, a):
        self.out = xp_of(a).exp(a)
        return self.out

    # d e^a / da = e^a: the output itself is saved
    def backward(self, g):
        return g * self.out


class Log(Function):
    def forward(self, a):
        self.a = a
        return xp_of(a).log(a)

    # d ln a / da = 1/a
    def backward(self, g):
        return g / self.a


class Sqrt(Function):
    def forward(self, a):
        self.out = xp_of(a).sqrt(a)
        return self.out

    # d sqrt(a)/da = 1 / (2 sqrt(a))
    def backward(self, g):
        return g / (2 * self.out)


class Tanh(Function):
    def forward(self, a):
        self.out = xp_of(a).tanh(a)
        return self.out

    # d tanh(a)/da = 1 - tanh(a)^2
    def backward(self, g):
        return g * (1 - self.out * self.out)


class Relu(Function):
    def forward(self, a):
        self.positive = a > 0
        return a * self.positive

    # d relu(a)/da = 1 where a > 0, else 0
    def backward(self, g):
        return g * self.positive


class Gelu(Function):
    def forward(self, a):
        y, self.tanh_u = K.gelu_forward(a)  # tanh_u: None where the kernel recomputes it instead
        self.a = a
        return y

    # derivation above kernels.gelu.gelu_backward
    def backward(self, g):
        return K.gelu_backward(g, self.a, self.tanh_u)


class MatMul(Function):
    """a @ b for operands of at least 2 dimensions (1-D ones are promoted by the caller)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return K.matmul_forward(a, b)

    # derivation above kernels.matmul.matmul_backward
    def backward(self, g):
        return K.matmul_backward(g, self.a, self.b)
