"""The engine's random generators (dropout masks), one per array module, seeded by manual_seed."""
_seed = 0
_generators = {}


def manual_seed(seed):
    """Reseed the generators that draw dropout masks, on every backend."""
    global _seed
    _seed = int(seed)
    _generators.clear()


def generator(xp):
    """The xp.random.Generator for arrays of module `xp` (created on first use from the seed)."""
    if xp not in _generators:
        _generators[xp] = xp.random.default_rng(_seed)
    return _generators[xp]
