"""engine.draw: the graph behind a tensor as DOT text, with gradient norms once backward has run."""

import re
import shutil

import numpy as np
import pytest

from helpers import host, normal
from tinygrad_gpt import engine
from tinygrad_gpt.engine import Tensor


def read(dot):
    """The DOT text as {box or op: its label lines} and a set of (from, to) arrows by those labels,
    a box named by its first two lines ("W (3, 2)"), an op by its class ("MatMul")."""
    labels = dict(re.findall(r'^  (\w+) \[.*label="(.*)"\]$', dot, re.M))
    lines = {node: label.split("\\n") for node, label in labels.items()}
    name = {node: " ".join(label[:2]) for node, label in lines.items()}
    arrows = re.findall(r"^  (\w+) -> (\w+)$", dot, re.M)
    return lines, {(name[a], name[b]) for a, b in arrows}, len(arrows)


def small_graph():
    """loss = sum(tanh(x W + b)), with x a constant (no gradient goes to it, so it is not drawn)."""
    W = Tensor(normal(3, 2), requires_grad=True)
    b = Tensor(normal(2, seed=1), requires_grad=True)
    h = (Tensor(normal(4, 3, seed=2)) @ W + b).tanh()
    return W, b, h, h.sum()


def test_draws_a_box_per_tensor_and_a_node_per_op(backend):
    W, b, _, loss = small_graph()
    lines, arrows, n_arrows = read(engine.draw(loss, names={"W": W, "b": b}).dot)
    assert sorted(label[0] for label in lines.values() if len(label) == 1) == ["Add", "MatMul", "Sum", "Tanh"]
    assert len(lines) == 4 + 6 and n_arrows == 9
    assert arrows == {
        ("W (3, 2)", "MatMul"),
        ("MatMul", "MatMul (4, 2)"),
        ("MatMul (4, 2)", "Add"),
        ("b (2,)", "Add"),
        ("Add", "Add (4, 2)"),
        ("Add (4, 2)", "Tanh"),
        ("Tanh", "Tanh (4, 2)"),
        ("Tanh (4, 2)", "Sum"),
        ("Sum", "Sum ()"),
    }


def test_an_unnamed_leaf_is_a_leaf():
    x = Tensor(np.ones(3), requires_grad=True)
    lines, arrows, _ = read(engine.draw((x * 2.0).sum()).dot)  # the scalar 2.0 is not drawn
    assert ("leaf (3,)", "Mul") in arrows and len(lines) == 5


def test_gradient_norms_appear_after_backward_and_are_numpys(backend):
    W, b, h, loss = small_graph()
    (W * 1.0).sum().backward()  # W.grad from an earlier graph: not this drawing's before its backward
    drawing = engine.draw(loss, names={"W": W, "b": b, "h": h, "loss": loss})
    assert "grad" not in drawing.dot
    loss.backward()
    lines, _, _ = read(drawing.dot)
    norms = {label[0]: float(label[2].removeprefix("grad norm ")) for label in lines.values() if len(label) == 3}
    assert len(norms) == 6  # every tensor drawn, leaves and the rest
    assert norms["W"] == pytest.approx(np.linalg.norm(host(W.grad)), rel=1e-3)
    assert norms["b"] == pytest.approx(np.linalg.norm(host(b.grad)), rel=1e-3)
    assert norms["h"] == pytest.approx(np.sqrt(8), rel=1e-3)  # d sum(h) / dh is ones, (4, 2)
    assert norms["loss"] == 1


def test_a_split_is_drawn_once_with_an_arrow_to_each_piece(backend):
    x = Tensor(normal(2, 6), requires_grad=True)
    q, k, v = x.split(2, axis=1)
    lines, arrows, _ = read(engine.draw((q * k + v).sum(), names={"x": x}).dot)
    assert [label[0] for label in lines.values()].count("Split") == 1
    assert {a for a in arrows if a[0] == "Split"} == {("Split", f"Split[{i}] (2, 2)") for i in range(3)}
    assert ("x (2, 6)", "Split") in arrows


def test_drawing_after_backward_says_to_draw_before():
    _, _, _, loss = small_graph()
    loss.backward()
    with pytest.raises(RuntimeError, match="before backward"):
        engine.draw(loss)


def test_save_dot_writes_the_text(tmp_path):
    drawing = engine.draw(small_graph()[-1])
    drawing.save(tmp_path / "graph.dot")
    assert (tmp_path / "graph.dot").read_text() == drawing.dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (apt install graphviz)")
def test_save_svg_renders_with_graphviz(tmp_path):
    engine.draw(small_graph()[-1]).save(tmp_path / "graph.svg")
    svg = (tmp_path / "graph.svg").read_text()
    assert "<svg" in svg and "MatMul" in svg


def test_save_svg_without_graphviz_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda command: None)
    with pytest.raises(RuntimeError, match="install Graphviz or save as .dot") as error:
        engine.draw(small_graph()[-1]).save(tmp_path / "graph.svg")
    assert "\n" not in str(error.value) and not (tmp_path / "graph.svg").exists()


def test_save_rejects_a_format_it_does_not_know(tmp_path):
    with pytest.raises(ValueError, match=r"\.dot, \.svg or \.png"):
        engine.draw(small_graph()[-1]).save(tmp_path / "graph.pdf")
