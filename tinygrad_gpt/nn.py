"""Modules: PyTorch-style containers of parameters, on top of engine Tensors.

A Module finds its parameters by walking its attributes: Tensors that require grad, sub-Modules,
and lists of Modules (named `h.0`, `h.1`, ... like torch's ModuleList). Initial values are drawn
on the host from a numpy Generator the caller passes in, so a seed fixes a model on any backend.
"""

import numpy as np

import tinygrad_gpt.engine.functional as F
from tinygrad_gpt.engine import Tensor, backend


class Module:
    def __init__(self):
        self.training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def named_children(self):
        """(name, Module) for each direct sub-Module, list items named `<list>.<i>`."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, list) and value and all(isinstance(m, Module) for m in value):
                for i, m in enumerate(value):
                    yield f"{name}.{i}", m

    def _all_named_parameters(self, prefix):
        for name, value in vars(self).items():
            if isinstance(value, Tensor) and value.requires_grad:
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child._all_named_parameters(f"{prefix}{name}.")

    def named_parameters(self):
        """[(name, Tensor)]: own parameters first, then each child's, in attribute order.
        A Tensor shared by several modules (tied weights) appears once, under its first name."""
        seen, out = set(), []
        for name, p in self._all_named_parameters(""):
            if id(p) not in seen:
                seen.add(id(p))
                out.append((name, p))
        return out

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def train(self, mode=True):
        self.training = mode
        for _, child in self.named_children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()

    def double(self):
        """Every parameter in float64, in place (torch's name): for gradient checks, where float32's
        rounding would drown the finite differences."""
        for p in self.parameters():
            p.data = p.data.astype(np.float64)
            p.zero_grad()
        return self

    def state_dict(self):
        """name -> the parameter's backend array itself (not a copy)."""
        return {name: p.data for name, p in self.named_parameters()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy numpy or cupy arrays into the existing parameters, keeping their dtype and backend."""
        load_arrays(self.state_dict(), state_dict, strict=strict)


def load_arrays(targets, source, strict=True):
    """Copy each source[name] into the existing array targets[name], in place.

    Names and shapes are checked first, and every kind of problem is reported in one ValueError
    (naming up to five names each), so a bad load never half-happens. Without strict, missing
    and unexpected names are allowed."""
    missing = [k for k in targets if k not in source] if strict else []
    unexpected = [k for k in source if k not in targets] if strict else []
    mismatched = [
        f"{k} {tuple(source[k].shape)} != {tuple(targets[k].shape)}"
        for k in targets
        if k in source and tuple(source[k].shape) != tuple(targets[k].shape)
    ]
    problems = [
        f"{what}: {', '.join(names[:5])}{f' and {len(names) - 5} more' if len(names) > 5 else ''}"
        for what, names in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches (given != expected)", mismatched),
        )
        if names
    ]
    if problems:
        raise ValueError("cannot load state: " + "; ".join(problems))
    for k, dst in targets.items():
        if k in source:
            dst[...] = backend.asarray(source[k], dtype=dst.dtype, device=backend.device_of(dst))


def _param(array):
    return Tensor(array.astype(np.float32), requires_grad=True)


def _normal(rng, shape, std):
    return _param(rng.normal(0.0, std, size=shape))


class Linear(Module):
    """y = x @ weight + bias, weight (in_features, out_features) drawn from N(0, std^2)."""

    def __init__(self, in_features, out_features, bias=True, *, rng, std=0.02):
        super().__init__()
        self.weight = _normal(rng, (in_features, out_features), std)
        self.bias = _param(np.zeros(out_features)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class Embedding(Module):
    """A (num_embeddings, embedding_dim) table drawn from N(0, std^2), indexed by integer ids."""

    def __init__(self, num_embeddings, embedding_dim, *, rng, std=0.02):
        super().__init__()
        self.weight = _normal(rng, (num_embeddings, embedding_dim), std)

    def forward(self, idx):
        return F.embedding(idx, self.weight)


class LayerNorm(Module):
    """LayerNorm over the last axis with weight 1 and an optional bias 0 (GPT-2 has one)."""

    def __init__(self, dim, bias=True, eps=1e-5):
        super().__init__()
        self.weight = _param(np.ones(dim))
        self.bias = _param(np.zeros(dim)) if bias else None
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, self.weight, self.bias, self.eps)


class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)
