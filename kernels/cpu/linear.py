"""The Linear layer, y = x @ W + b, with its products through MKL where it is installed
(kernels/cpu/mkl.py; NumPy's `@` where not): the fast kernels otherwise, tested against the plain ones."""

from tinygrad_gpt.kernels import matmul
from tinygrad_gpt.kernels.cpu import mkl


def linear_forward(x, weight, bias=None):
    out = mkl.matmul(x.reshape(-1, x.shape[-1]), weight)
    if bias is not None:
        out += bias
    return out.reshape(*x.shape[:-1], weight.shape[1])


def linear_backward(dout, x, weight, has_bias=True):
    return matmul.linear_backward_fast(dout, x, weight, has_bias, product=mkl.matmul)
