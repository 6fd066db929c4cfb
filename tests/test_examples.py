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


@pytest.mark.parametrize("name, steps", [("bigram.py", 100), ("gpt.py", 60)])
def test_language_model_examples_learn(tmp_path, corpus, name, steps):
    out = run_example(name, corpus, "--steps", steps, cwd=tmp_path)
    first, last = losses(out)[0], losses(out)[-1]
    assert last < first - 0.5, out


def test_the_readme_imports_work():
    from tinygrad_gpt import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4))
    assert model.num_params() > 0
