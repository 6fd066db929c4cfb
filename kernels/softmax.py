"""Softmax and log-softmax along one axis, stable by subtracting the max."""

from kernels.array_module import xp_of


def softmax_forward(x, axis=-1):
    xp = xp_of(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


# y_i = e^{x_i} / sum_j e^{x_j}, so dy_i/dx_k = y_i (delta_ik - y_k). Then
#   dx_k = sum_i dy_i y_i (delta_ik - y_k) = y_k (dy_k - sum_i dy_i y_i)
# Only y is saved: the input is not needed.
def softmax_backward(dy, y, axis=-1):
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))


def log_softmax_forward(x, axis=-1):
    xp = xp_of(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    shifted -= xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
    return shifted


# y_i = x_i - log sum_j e^{x_j}, so dy_i/dx_k = delta_ik - softmax(x)_k. Then
#   dx_k = dy_k - softmax(x)_k sum_i dy_i,   with softmax(x) = exp(y).
def log_softmax_backward(dy, y, axis=-1):
    xp = xp_of(y)
    return dy - xp.exp(y) * dy.sum(axis=axis, keepdims=True)
