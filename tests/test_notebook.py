"""examples/lets_build_gpt.ipynb runs top to bottom (its own asserts are the checks: the first
bigram loss, every gradcheck, the final val loss) and is committed without outputs."""

import json
import time

import pytest

from tiny_runs import REPO

NOTEBOOK = REPO / "examples" / "lets_build_gpt.ipynb"


def test_the_notebook_is_committed_without_outputs():
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert code, "the notebook has no code cells"
    dirty = [i for i, cell in enumerate(cells) if cell.get("outputs") or cell.get("execution_count") is not None]
    assert not dirty, f"cells {dirty} have outputs or execution counts: clear them before committing"


def test_the_notebook_runs_in_quick_mode(tmp_path, monkeypatch):
    missing = "the notebook extra is not installed (pip install -e '.[notebook]')"
    nbformat = pytest.importorskip("nbformat", reason=f"nbformat missing: {missing}")
    nbclient = pytest.importorskip("nbclient", reason=f"nbclient missing: {missing}")
    pytest.importorskip("ipykernel", reason=f"ipykernel missing: {missing}")
    pytest.importorskip("matplotlib", reason=f"matplotlib missing: {missing}")
    # the kernel is a child process and inherits this environment
    monkeypatch.setenv("TINYGPT_NOTEBOOK_QUICK", "1")
    for name in ("TINYGPT_KERNELS", "TINYGPT_BACKEND"):  # the defaults: numpy, the auto rung
        monkeypatch.delenv(name, raising=False)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",  # ipykernel's own spec, found in this Python's environment
        timeout=600,  # per cell
        resources={"metadata": {"path": str(tmp_path)}},  # the notebook's working folder: block.dot goes there
    )
    start = time.perf_counter()
    client.execute()  # a failing cell (an assert in the notebook) raises CellExecutionError, naming it
    print(f"the notebook ran in {time.perf_counter() - start:.0f} s")
    text = "\n".join(
        output.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    )
    assert "quick mode" in text
    assert text.count("gradcheck passed") >= 7, text
    figures = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert sum("image/png" in output.get("data", {}) for output in figures) >= 2  # the loss curve, the heatmap
    assert "digraph" in (tmp_path / "block.dot").read_text()
