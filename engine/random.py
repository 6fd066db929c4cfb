"""The engine's random generators (dropout masks), one per array module, seeded by manual_seed.

Each thread (each context) has its own seed and generators, so threads drawing masks at once
never share a generator; a worker thread seeds its own (the data-parallel step does, per shard).
"""

import contextvars

_state = contextvars.ContextVar("random_state", default=(0, {}))  # (seed, {xp: generator})


def manual_seed(seed):
    """Reseed this thread's generators that draw dropout masks, on every backend."""
    _state.set((int(seed), {}))


def generator(xp):
    """The xp.random.Generator for arrays of module `xp` (created on first use from the seed)."""
    seed, generators = _state.get()
    if xp not in generators:
        generators = {**generators, xp: xp.random.default_rng(seed)}  # a new dict: copies of this
        _state.set((seed, generators))  # context keep their own
    return generators[xp]
