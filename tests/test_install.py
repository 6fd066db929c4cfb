"""The project installs under one import name, tinygrad_gpt (engine/ as tinygrad_gpt.engine, kernels/
as tinygrad_gpt.kernels), so it sits beside Hugging Face's `kernels`, which transformers requires,
without either one's files or imports reaching the other's."""

import importlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_runs import REPO, TINY_FLAGS, clean_env, write_corpus

HF_KERNELS = importlib.util.find_spec("kernels")
pytestmark = pytest.mark.skipif(
    HF_KERNELS is None or Path(HF_KERNELS.origin).is_relative_to(REPO),
    reason="Hugging Face's `kernels` is not installed (transformers brings it; .ci/run installs it)",
)
SOURCE = ("pyproject.toml", "README.md", "tinygrad_gpt", "engine", "kernels")

# In the scratch environment: which files each import name comes from, and the top-level names
# our distribution's files take against those of every other distribution there.
CHECK = """
import importlib.metadata, json, kernels, tinygrad_gpt.data, tinygrad_gpt.engine, tinygrad_gpt.kernels.cuda
from pathlib import Path
from kernels import CUDAProperties  # Hugging Face's, as transformers imports it

def top_level(dist):
    return {f.parts[0] for f in dist.files if f.parts[0] != ".." and not f.parts[0].endswith(".dist-info")}

ours = importlib.metadata.distribution("tinygrad-gpt")
others = [d for d in importlib.metadata.distributions() if d.metadata["Name"] != "tinygrad-gpt" and d.files]
print(json.dumps({
    "kernels": kernels.__file__,
    "engine": tinygrad_gpt.engine.__file__,
    "tiny_shakespeare": len(tinygrad_gpt.data.tiny_shakespeare()),
    "cuda_sources": sorted(p.name for p in Path(tinygrad_gpt.kernels.cuda.__file__).parent.glob("*.cu*")),
    "ours": sorted(top_level(ours)),
    "shared": sorted(top_level(ours) & set().union(*map(top_level, others))),
}))
"""


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A virtual environment that sees this one's packages (Hugging Face's `kernels` among them),
    with the project installed into it from a copy of its source: a normal install, not editable."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    source.mkdir()
    for name in SOURCE:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, source)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", root / "venv"], check=True)
    python = root / "venv" / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-build-isolation"]
    result = subprocess.run([*map(str, install), str(source)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (root / "elsewhere").mkdir()
    return python, root


def test_a_normal_install_takes_only_its_own_name(scratch):
    python, root = scratch
    result = subprocess.run([python, "-c", CHECK], cwd=root / "elsewhere", capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert Path(found["kernels"]) == Path(HF_KERNELS.origin)  # Hugging Face's, where it was
    assert Path(found["engine"]).is_relative_to(root / "venv")  # ours, from the install
    assert found["tiny_shakespeare"] == 1_115_394  # shipped with the package, checked on read
    assert found["cuda_sources"] == sorted(p.name for p in (REPO / "kernels" / "cuda").glob("*.cu*"))
    assert found["ours"] == ["tinygrad_gpt"]
    assert found["shared"] == []  # no file of ours where another distribution has its own


def test_tinygpt_trains_from_another_folder_in_a_normal_install(scratch):
    python, root = scratch
    folder = root / "elsewhere"
    corpus = write_corpus(folder / "corpus.txt")
    command = [python.parent / "tinygpt", "train", *TINY_FLAGS, "--max-iters", "2", "--data", corpus]
    result = subprocess.run(
        [*map(str, command), "--out-dir", "out"],
        cwd=folder,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (folder / "out" / "model.safetensors").is_file()


def test_this_environment_imports_both_side_by_side():
    """Here, as the suite runs from the repository root (tests/conftest.py keeps the root off
    sys.path): `kernels` is Hugging Face's, tinygrad_gpt.kernels ours."""
    kernels = importlib.import_module("kernels")
    assert Path(kernels.__file__) == Path(HF_KERNELS.origin) and hasattr(kernels, "CUDAProperties")
    assert importlib.import_module("tinygrad_gpt.kernels.rungs").PLAIN.name == "plain"
