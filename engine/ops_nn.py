"""The neural-network ops, each a thin node around its hand-written kernel in kernels/.

The math (forward, backward and the derivation above it) lives in the kernel; these classes only
say what is saved between the two passes.
"""

from engine.dispatch import K
from engine.function import Function


class Linear(Function):
    def forward(self, x, weight, bias=None):
        self.x, self.weight, self.has_bias = x, weight, bias is not None
        return K.linear_forward(x, weight, bias)

    def backward(self, g):
        return K.linear_backward(g, self.x, self.weight, self.has_bias)


class LayerNorm(Function):
    def forward(self, x, weight, bias):
        y, self.mean, self.rstd = K.layernorm_forward(x, weight, bias, self.eps)
        self.x, self.weight = x, weight
        return y

    def backward(self, g):
        return K.layernorm_backward(g, self.x, self.weight, self.mean, self.rstd)


class Softmax(Function):
    def forward(self, x):
        self.y = K.softmax_forward(x, self.axis)
        return self.y

    def backward(self, g):
        return K.softmax_backward(g, self.y, self.axis)


class LogSoftmax(Function):
    def forward(self, x):
        self.y = K.log_softmax_forward(x, self.axis)
        return self.y

    def backward(self, g):
        return K.log_softmax_backward(g, self.y, self.axis)


class CrossEntropy(Function):
    """Mean cross-entropy of logits (N, C) against integer targets (N,)."""

    def forward(self, logits, targets):
        self.logits, self.targets = logits, targets
        loss, self.lse = K.cross_entropy_forward(logits, targets)
        return loss

    def backward(self, g):
        return K.cross_entropy_backward(g, self.logits, self.targets, self.lse), None


class Embedding(Function):
    def forward(self, idx, weight):
        self.idx, self.num_embeddings = idx, weight.shape[0]
        return K.embedding_forward(idx, weight)

    def backward(self, g):
        return None, K.embedding_backward(g, self.idx, self.num_embeddings)


class Dropout(Function):
    def forward(self, x):
        return K.dropout_forward(x, self.mask)

    def backward(self, g):
        return K.dropout_backward(g, self.mask)


class Attention(Function):
    """Scaled dot-product attention on (B, H, T, hd) as one node: one fused backward."""

    def forward(self, q, k, v):
        self.q, self.k, self.v = q, k, v
        out, self.saved = K.attention_forward(q, k, v, self.is_causal, self.dropout_mask)
        return out

    def backward(self, g):
        return K.attention_backward(g, self.q, self.k, self.v, self.saved, self.dropout_mask)
