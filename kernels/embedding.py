"""Embedding lookup: rows of a table picked by integer indices."""

from tinygrad_gpt.kernels.array_module import xp_of


def embedding_forward(idx, weight):
    """idx (...) ints, weight (V, D) -> (..., D)."""
    return weight[idx]


# out[n] = W[idx[n]], so each output row's gradient flows to exactly one row of W, and a row
# picked k times collects k contributions: dW[v] = sum_{n: idx[n] = v} dout[n]. A scatter-add,
# not an assignment (an assignment would keep only the last of repeated indices).
def embedding_backward(dout, idx, num_embeddings):
    xp = xp_of(dout)
    dweight = xp.zeros((num_embeddings, dout.shape[-1]), dtype=dout.dtype)
    xp.add.at(dweight, idx.reshape(-1), dout.reshape(-1, dout.shape[-1]))
    return dweight


# --- fast ---------------------------------------------------------------------------------------


def embedding_backward_fast(dout, idx, num_embeddings):
    """The same scatter-add into the flattened table, where row v's j-th number sits at v * D + j:
    NumPy's add.at is quick only on a 1-D target, and slow on (V, D) rows. The index array it
    needs is D times larger than idx. The (V, D) table itself is returned, not a view of the flat
    one, so the engine can hand it to the parameter without copying it."""
    xp = xp_of(dout)
    d = dout.shape[-1]
    dweight = xp.zeros((num_embeddings, d), dtype=dout.dtype)
    flat_index = (idx.reshape(-1, 1).astype(xp.int64) * d + xp.arange(d)).reshape(-1)
    xp.add.at(dweight.reshape(-1), flat_index, dout.reshape(-1))
    return dweight
