"""Softmax and log-softmax along one axis, stable by subtracting the max."""

from tinygrad_gpt.kernels.array_module import xp_of


def softmax_forward(x, axis=-1):
    xp = xp_of(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))  # the shift cancels; no exp overflows
    return e / e.sum(axis=axis, keepdims=True)


# y_i = e^{x_i} / sum_j e^{x_j}, so dy_i/dx_k = y_i (delta_ik - y_k). Then
#   dx_k = sum_i dout_i y_i (delta_ik - y_k) = y_k (dout_k - sum_i dout_i y_i)
# Only y is saved: the input is not needed.
def softmax_backward(dout, y, axis=-1):
    return y * (dout - (dout * y).sum(axis=axis, keepdims=True))


def log_softmax_forward(x, axis=-1):
    xp = xp_of(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


# y_i = x_i - log sum_j e^{x_j}, so dy_i/dx_k = delta_ik - softmax(x)_k. Then
#   dx_k = dout_k - softmax(x)_k sum_i dout_i,   with softmax(x) = exp(y).
def log_softmax_backward(dout, y, axis=-1):
    xp = xp_of(y)
    return dout - xp.exp(y) * dout.sum(axis=axis, keepdims=True)
