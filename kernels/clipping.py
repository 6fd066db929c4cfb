"""Gradient clipping's second pass (tinygrad_gpt/optim.py has the clipping): every gradient scaled
by one factor, all the arrays in one call, as AdamW's kernel takes them, so that a faster rung can
share them out over threads (the cpu one) or launch one kernel for all of them."""


def scale_multi(arrays, scale):
    """a *= scale for each array, in place; scale is a number or a 0-d array on their device."""
    for a in arrays:
        a *= scale
