"""Backprop by hand: a two-layer MLP on four numbers, traced node by node.

    python examples/backprop_by_hand.py

1. The engine runs forward and backward with trace mode on: each node prints as backward visits
   it, with the gradient arriving at its output and the gradients it sends to its inputs.
   The graph it walked is drawn (engine.draw) into backprop_by_hand.dot in the current folder:
   a box per tensor with its shape and gradient norm, an oval per op. With Graphviz installed it
   is rendered to backprop_by_hand.svg too; else render it with dot -Tsvg (the script says how).
2. We redo the backward pass by hand, one chain-rule line per node, and check we agree.
3. A few steps of gradient descent show the loss going down.
"""

import shutil
from pathlib import Path

import numpy as np

from tinygrad_gpt import engine
from tinygrad_gpt.engine import Tensor

rng = np.random.default_rng(0)
X = np.array([[2.0, 3.0, -1.0], [3.0, -1.0, 0.5], [0.5, 1.0, 1.0], [1.0, 1.0, -1.0]])  # (4, 3)
Y = np.array([[1.0], [-1.0], [-1.0], [1.0]])  # (4, 1) targets
W1 = Tensor(rng.normal(0, 0.5, (3, 4)), requires_grad=True)  # float64 arrays stay float64
b1 = Tensor(np.zeros(4), requires_grad=True)
W2 = Tensor(rng.normal(0, 0.5, (4, 1)), requires_grad=True)
b2 = Tensor(np.zeros(1), requires_grad=True)


def mlp_loss():
    h = (Tensor(X) @ W1 + b1).tanh()  # (4, 4) hidden layer
    pred = h @ W2 + b2  # (4, 1)
    return ((pred - Tensor(Y)) ** 2).mean()  # mean squared error


print("== 1. the engine's backward, traced (last node first) ==")
loss = mlp_loss()
drawing = engine.draw(loss, names={"W1": W1, "b1": b1, "W2": W2, "b2": b2})  # before backward: it frees the graph
with engine.trace():
    loss.backward()
print(f"loss = {loss.item():.6f}")
drawing.save("backprop_by_hand.dot")  # saved after backward, so each box shows its gradient's norm
print(f"wrote the graph backward walked: {Path('backprop_by_hand.dot').resolve()}")
if shutil.which("dot"):  # Graphviz is installed: render it here too
    drawing.save("backprop_by_hand.svg")
    print(f"wrote its picture: {Path('backprop_by_hand.svg').resolve()}")
print("(render a .dot with: dot -Tsvg backprop_by_hand.dot -o backprop_by_hand.svg)\n")

print("== 2. the same gradients by hand ==")
z1 = X @ W1.data + b1.data  # pre-activation
h = np.tanh(z1)
pred = h @ W2.data + b2.data
diff = pred - Y
d_pred = 2 * diff / diff.size  # L = mean(diff^2)      -> dL/dpred = 2 diff / N
dW2 = h.T @ d_pred  # pred = h W2 + b2                  -> dW2 = h^T dpred
db2 = d_pred.sum(axis=0)  # b2 is broadcast over rows  -> sum over rows
d_h = d_pred @ W2.data.T  #                              -> dh = dpred W2^T
d_z1 = d_h * (1 - h**2)  # h = tanh(z1)                 -> dz1 = dh (1 - h^2)
dW1 = X.T @ d_z1
db1 = d_z1.sum(axis=0)
for name, by_hand, param in [("W1", dW1, W1), ("b1", db1, b1), ("W2", dW2, W2), ("b2", db2, b2)]:
    agree = np.allclose(by_hand, param.grad, rtol=1e-12, atol=1e-12)
    gap = np.abs(by_hand - param.grad).max()
    print(f"d loss / d {name}: max |by hand - engine| = {gap:.2e}  {'agree' if agree else 'DISAGREE'}")
    assert agree

print("\n== 3. gradient descent ==")
for step in range(30):
    for p in (W1, b1, W2, b2):
        p.zero_grad()
    loss = mlp_loss()
    loss.backward()
    for p in (W1, b1, W2, b2):
        p.data -= 0.2 * p.grad
    if step % 5 == 0 or step == 29:
        print(f"step {step:2d}  loss {loss.item():.4f}")
