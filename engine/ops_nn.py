"""The neural-network ops, each a thin node around its hand-written kernel in kernels/.

The math (forward, backward and the derivation above it) lives in the kernel; these classes only
say what is kept between the two passes. Each forward takes its kernels from the rung chosen for
its arrays (engine/dispatch.py), and its backward uses the same ones: what one rung's forward
returns for the backward (`saved`) is that rung's business.
"""

from tinygrad_gpt.engine.dispatch import kernels_for
from tinygrad_gpt.engine.function import Function


class Linear(Function):
    def forward(self, x, weight, bias=None):
        self.kernels = kernels_for(x)
        self.x, self.weight, self.has_bias = x, weight, bias is not None
        return self.kernels.linear_forward(x, weight, bias)

    def backward(self, dout):
        return self.kernels.linear_backward(dout, self.x, self.weight, self.has_bias)


class LayerNorm(Function):
    def forward(self, x, weight, bias, eps):
        self.kernels = kernels_for(x)
        out, self.mean, self.rstd = self.kernels.layernorm_forward(x, weight, bias, eps)
        self.x, self.weight = x, weight
        return out

    def backward(self, dout):
        return self.kernels.layernorm_backward(dout, self.x, self.weight, self.mean, self.rstd)


class Softmax(Function):
    def forward(self, x, axis):
        self.kernels, self.axis = kernels_for(x), axis
        self.out = self.kernels.softmax_forward(x, axis)
        return self.out

    def backward(self, dout):
        return self.kernels.softmax_backward(dout, self.out, self.axis)


class LogSoftmax(Function):
    def forward(self, x, axis):
        self.kernels, self.axis = kernels_for(x), axis
        self.out = self.kernels.log_softmax_forward(x, axis)
        return self.out

    def backward(self, dout):
        return self.kernels.log_softmax_backward(dout, self.out, self.axis)


class CrossEntropy(Function):
    """Mean cross-entropy of logits (N, C) against integer targets (N,), over the targets that
    are not ignore_index."""

    def forward(self, logits, targets, ignore_index=-100):
        self.kernels = kernels_for(logits)
        self.logits, self.targets, self.ignore_index = logits, targets, ignore_index
        loss, self.lse = self.kernels.cross_entropy_forward(logits, targets, ignore_index)
        return loss

    def backward(self, dout):
        dlogits = self.kernels.cross_entropy_backward(dout, self.logits, self.targets, self.lse, self.ignore_index)
        return dlogits, None


class Embedding(Function):
    def forward(self, idx, weight):
        self.kernels = kernels_for(weight)
        self.idx, self.num_embeddings = idx, weight.shape[0]
        return self.kernels.embedding_forward(idx, weight)

    def backward(self, dout):
        return None, self.kernels.embedding_backward(dout, self.idx, self.num_embeddings)


class Dropout(Function):
    def forward(self, x, mask):
        self.kernels, self.mask = kernels_for(x), mask
        return self.kernels.dropout_forward(x, mask)

    def backward(self, dout):
        return self.kernels.dropout_backward(dout, self.mask)


class Attention(Function):
    """Scaled dot-product attention on (B, nh, T, hs) as one node: one fused backward."""

    def forward(self, q, k, v, is_causal, dropout_mask):
        self.kernels = kernels_for(q)
        self.q, self.k, self.v, self.dropout_mask = q, k, v, dropout_mask
        out, self.saved = self.kernels.attention_forward(q, k, v, is_causal, dropout_mask)
        return out

    def backward(self, dout):
        return self.kernels.attention_backward(dout, self.q, self.k, self.v, self.saved, self.dropout_mask)
