"""engine/autograd.py's two walks: reference_grad, micrograd's loop written for our graphs, and
_walk, the one backward() runs. Its extras (one backward per split, the graph freed as it goes,
gradients kept without a copy) change what the walk holds and when, never a gradient."""

import numpy as np

from tinygrad_gpt import engine
from tinygrad_gpt.engine import Tensor
from tinygrad_gpt.engine.autograd import reference_grad, topological_order
from tinygrad_gpt.engine.ops_shape import Split
from tinygrad_gpt.model import GPT, GPTConfig


def host(array):
    return engine.backend.to_numpy(array)


def test_the_reference_walk_gives_the_gpt_the_gradients_backward_does(backend, rung):
    model = GPT(GPTConfig(vocab_size=11, block_size=6, n_layer=2, n_head=2, n_embd=8, dropout=0.1), seed=1)
    model.double().train()
    tokens = np.random.default_rng(0).integers(0, 11, (3, 7))
    idx, targets = engine.backend.asarray(tokens[:, :-1]), engine.backend.asarray(tokens[:, 1:])

    def loss():
        engine.manual_seed(0)  # the same dropout masks for both walks
        return model(idx, targets)[1]

    graph = loss()
    assert Split in {type(node._ctx) for node in topological_order(graph)}  # a node of several outputs
    reference = reference_grad(graph, model.parameters())
    assert all(p.grad is None for p in model.parameters())  # the reference touches no .grad
    loss().backward()
    for (name, p), expected in zip(model.named_parameters(), reference, strict=True):
        np.testing.assert_allclose(host(p.grad), host(expected), rtol=1e-12, atol=1e-15, err_msg=name)


def test_the_reference_walk_reaches_intermediates_and_leaves_the_graph_whole(backend):
    x = Tensor(engine.backend.get_xp().asarray([1.0, 2.0, 3.0]), requires_grad=True)
    unused = Tensor(engine.backend.get_xp().asarray([1.0]), requires_grad=True)
    h = x * x
    y = (h + x).sum()  # dy/dh = 1, dy/dx = 2x + 1
    dx, dh, dunused = reference_grad(y, [x, h, unused])
    assert host(dx).tolist() == [3.0, 5.0, 7.0] and host(dh).tolist() == [1.0, 1.0, 1.0] and dunused is None
    y.backward()  # the graph is still there to walk
    assert host(x.grad).tolist() == [3.0, 5.0, 7.0]
