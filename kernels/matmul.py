"""Matrix product and the affine map y = x @ W + b (both operands at least 2-D)."""

from tinygrad_gpt.kernels.reductions import column_sum


def matmul_forward(a, b):
    return a @ b


# C = A @ B, with C_ij = sum_k A_ik B_kj. Then
#   dL/dA_ik = sum_j dC_ij B_kj   ->  dA = dC @ B^T
#   dL/dB_kj = sum_i A_ik dC_ij   ->  dB = A^T @ dC
# (batched: the same on the last two axes; broadcast batch axes are summed by the engine)
def matmul_backward(dout, a, b):
    da = dout @ b.swapaxes(-1, -2)
    db = a.swapaxes(-1, -2) @ dout
    return da, db


def linear_forward(x, weight, bias=None):
    """x (..., in) @ weight (in, out) + bias (out,) -> (..., out), as one product on (N, in) rows."""
    out = x.reshape(-1, x.shape[-1]) @ weight
    if bias is not None:
        out += bias
    return out.reshape(*x.shape[:-1], weight.shape[1])


# Flatten the leading axes into N rows: Y = X W + 1 b^T with X (N, in), W (in, out).
#   dX = dY @ W^T                    (each row of X meets W the same way)
#   dW = X^T @ dY                    (sum over the N rows of x_n^T dy_n)
#   db = sum_n dY_n                  (b is added to every row)
def linear_backward(dout, x, weight, has_bias=True):
    x2 = x.reshape(-1, x.shape[-1])
    dout2 = dout.reshape(-1, dout.shape[-1])
    dx = (dout2 @ weight.T).reshape(x.shape)
    dweight = x2.T @ dout2
    dbias = dout2.sum(axis=0) if has_bias else None
    return dx, dweight, dbias


# --- fast ---------------------------------------------------------------------------------------


def linear_backward_fast(dout, x, weight, has_bias=True):
    """linear_backward with db summed by BLAS (a product with a vector of ones, kernels/reductions.py):
    quicker for short rows, the same sum in another rounding order. And dW laid out in memory as the
    weight is: a tied output head multiplies by wte.T, a transposed view, and a dW computed as
    (dY^T X)^T is wte's layout once transposed back, where X^T dY would need the whole (V, D) table
    transposed in memory (the same numbers either way)."""
    x2 = x.reshape(-1, x.shape[-1])
    dout2 = dout.reshape(-1, dout.shape[-1])
    dx = (dout2 @ weight.T).reshape(x.shape)
    transposed = weight.flags.f_contiguous and not weight.flags.c_contiguous
    dweight = (dout2.T @ x2).T if transposed else x2.T @ dout2
    dbias = column_sum(dout) if has_bias else None
    return dx, dweight, dbias
