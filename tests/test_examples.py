"""The runnable studies in examples/ run, learn, and say what they promise."""

import re
import subprocess
import sys

import pytest

from tiny_runs import REPO, clean_env


def run_example(name, *args, cwd):
    """Run examples/NAME with ARGS in the folder `cwd` (where an example writes its files)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(),
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def losses(output):
    return [float(v) for v in re.findall(r"train loss (\d+\.\d+)", output)]


def test_backprop_by_hand_traces_and_agrees(tmp_path):
    out = run_example("backprop_by_hand.py", cwd=tmp_path)
    assert "MatMul" in out and "Tanh" in out and "-> input" in out  # the trace
    assert out.count("agree") == 4 and "DISAGREE" not in out
    step_losses = [float(v) for v in re.findall(r"step +\d+ +loss (\d+\.\d+)", out)]
    assert step_losses[-1] < step_losses[0] / 10
    dot = (tmp_path / "backprop_by_hand.dot").read_text()  # the graph, drawn
    assert all(f'label="{name}\\n' in dot for name in ("W1", "b1", "W2", "b2")), dot


@pytest.mark.parametrize("name, steps", [("bigram.py", 100), ("gpt.py", 60)])
def test_language_model_examples_learn(tmp_path, corpus, name, steps):
    out = run_example(name, corpus, "--steps", steps, cwd=tmp_path)
    first, last = losses(out)[0], losses(out)[-1]
    assert last < first - 0.5, out


def test_the_readme_imports_work():
    from tinygrad_gpt import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4))
    assert model.num_params() > 0


def test_gpt_by_hand_agrees_with_the_engine(tmp_path):
    from tinygrad_gpt import GPT, GPTConfig

    out = run_example("gpt_by_hand.py", cwd=tmp_path)
    engine_loss, by_hand_loss = re.findall(r"^loss = (\d+\.\d+)$", out, re.M)
    assert engine_loss == by_hand_loss
    rows = re.findall(r"^(transformer\.\S+) +(\(.*?\)) +(\S+) +(\S+)$", out, re.M)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16))  # the example's
    assert [(name, shape) for name, shape, _, _ in rows] == [(n, str(p.shape)) for n, p in model.named_parameters()]
    assert all(float(relative) <= 1e-10 for _, _, _, relative in rows), out
    assert f"all {len(rows)} gradients agree" in out
