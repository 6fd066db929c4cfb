"""The house keeps its shape: imports run one way (tinygrad_gpt -> engine -> kernels, and no circle
inside any package), and the top of tinygrad_gpt/ stays nanoGPT-sized, the optional parts one
folder down."""

import ast

from tiny_runs import REPO

# import name -> folder (pyproject.toml's package-dir)
PACKAGES = {"tinygrad_gpt": "tinygrad_gpt", "tinygrad_gpt.engine": "engine", "tinygrad_gpt.kernels": "kernels"}
LAYERS = ["tinygrad_gpt.kernels", "tinygrad_gpt.engine", "tinygrad_gpt"]  # each imports only those before it


def modules():
    """Every module of the project by import name, with its file."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in (REPO / folder).rglob("*.py"):
            parts = [part for part in path.relative_to(REPO / folder).with_suffix("").parts if part != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def imports(path, known):
    """The project's modules that `path` imports (a `from package import name` imports the
    submodule `name` where there is one, else the package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module in known:
            subs = {f"{node.module}.{alias.name}" for alias in node.names} & known.keys()
            found.update(subs or {node.module})
    return found


def layer(name):
    return max(i for i, prefix in enumerate(LAYERS) if name == prefix or name.startswith(prefix + "."))


def test_imports_run_one_way_without_a_circle():
    known = modules()
    graph = {name: imports(path, known) - {name} for name, path in known.items()}
    upward = [(a, b) for a, targets in graph.items() for b in targets if layer(b) > layer(a)]
    assert not upward, f"a lower layer imports a higher one: {upward}"
    done, path = set(), []

    def visit(name):
        assert name not in path, "import circle: " + " -> ".join(path[path.index(name) :] + [name])
        if name in done:
            return
        path.append(name)
        for target in sorted(graph[name]):
            visit(target)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_the_top_of_tinygrad_gpt_is_nanogpt_sized():
    top = sorted(p.stem for p in (REPO / "tinygrad_gpt").glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(top) <= 12, top
    folders = sorted(p.name for p in (REPO / "tinygrad_gpt").iterdir() if (p / "__init__.py").exists())
    assert folders == ["hf", "parallel", "tools"], folders


def test_the_training_loop_fits_on_a_screen():
    """train.py reads like nanoGPT's: no function in it over 80 lines (setting a run up is its own)."""
    tree = ast.parse((REPO / "tinygrad_gpt" / "train.py").read_text())
    functions = [node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)]
    long = {f.name: f.end_lineno - f.lineno + 1 for f in functions if f.end_lineno - f.lineno + 1 > 80}
    assert not long, long
    assert {"train", "make_run"} <= {f.name for f in functions}
