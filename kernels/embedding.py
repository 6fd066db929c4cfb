"""Embedding lookup: rows of a table picked by integer indices."""
from kernels.array_module import xp_of


def embedding_forward(idx, weight):
    """idx (...) ints, weight (V, D) -> (..., D)."""
    return weight[idx]


# out[n] = W[idx[n]], so each output row's gradient flows to exactly one row of W, and a row
# picked k times collects k contributions: dW[v] = sum_{n: idx[n] = v} dout[n]. A scatter-add,
# not an assignment (an assignment would keep only the last of repeated indices).
def embedding_backward(dout, idx, num_embeddings):
    xp = xp_of(dout)
    d = dout.shape[-1]
    dweight = xp.zeros((num_embeddings, d), dtype=dout.dtype)
    xp.add.at(dweight, idx.reshape(-1), dout.reshape(-1, d))
    return dweight
