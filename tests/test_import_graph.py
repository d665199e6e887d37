"""The package's shape, read from its source with ``ast`` (nothing here imports the modules).

* the analysis half (specs, storage, regimes, advice, plotting, accessor and their torch-free
  foundations) never imports torch nor a torch-half module, not even inside a function, and
  imports only downwards along its layers: _errors -> _registry, _artifacts, spec_io,
  _schema -> spec -> plan, storage, features -> rules -> regimes -> calibrate -> advice ->
  validation, plotting -> accessor -> the package (:data:`LAYERS`; a new torch-free module
  gets a layer there);
* the torch half never imports plotting (nor matplotlib);
* module-level imports form no cycle;
* the accessor is registered in one place, no module swaps its class, no module is over
  500 lines;
* ``import threeregime`` imports no torch, and ``threeregime.advise`` is a function.
"""
from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "threeregime"
TORCH = {"torch", "torchvision", "functorch"}
#: the torch-free half, by layer: a module imports only modules of a lower layer
LAYERS = {"_errors": 0, "_registry": 1, "_artifacts": 1, "spec_io": 1, "_schema": 1, "_paths": 1,
          "spec": 2, "plan": 3, "storage": 3, "features": 3, "rules": 3.5, "regimes": 4,
          "_advice_text": 4.2, "calibrate": 4.5,
          "advice": 5, "_plot_text": 5.5, "validation": 6, "plotting": 6, "tables": 6,
          "accessor": 7, "__init__": 8}
#: front ends that may use both halves
FRONT = {"cli", "__main__"}
MAX_LINES = 500


def _name(path: Path) -> str:
    """``spec``, ``metrics.cka``, ``metrics`` (a package's ``__init__``), ``__init__``."""
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _package_of(mod: str) -> list[str]:
    """The package a module lives in, as parts below ``threeregime``."""
    path = MODULES[mod]
    parts = mod.split(".") if mod != "__init__" else []
    return parts if path.name == "__init__.py" else parts[:-1]


def _resolve(mod: str, dotted: list[str]) -> str | None:
    """The package module named by ``dotted`` (parts below ``threeregime``), or None."""
    while dotted:
        name = ".".join(dotted)
        if name in MODULES:
            return name
        dotted = dotted[:-1]
    return "__init__"


def _targets(mod: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Package modules (and ``torch``) an import statement loads."""
    out = []
    if isinstance(node, ast.Import):
        for alias in node.names:
            top = alias.name.split(".")
            if top[0] in TORCH:
                out.append("torch")
            elif top[0] == "threeregime":
                out.append(_resolve(mod, top[1:]))
        return out
    if node.level == 0:
        top = (node.module or "").split(".")
        if top[0] in TORCH:
            return ["torch"]
        if top[0] != "threeregime":
            return []
        base = top[1:]
    else:
        pkg = _package_of(mod)
        base = pkg[:len(pkg) - (node.level - 1)] + (node.module.split(".") if node.module
                                                    else [])
    for alias in node.names:
        sub = ".".join([*base, alias.name])
        out.append(sub if sub in MODULES else _resolve(mod, list(base)))
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(mod: str) -> tuple[set[str], set[str]]:
    """(module-level targets, all targets including function-local ones)."""
    tree = ast.parse(MODULES[mod].read_text(), filename=str(MODULES[mod]))
    top: set[str] = set()
    every: set[str] = set()

    def walk(node: ast.AST, module_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                got = set(_targets(mod, child))
                every.update(got)
                if module_level:
                    top.update(got)
            elif isinstance(child, ast.If) and _is_type_checking(child):
                continue
            else:
                inner = not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                               ast.Lambda))
                walk(child, module_level and inner)

    walk(tree, True)
    top.discard(mod)
    every.discard(mod)
    return top, every


GRAPH = {m: _imports(m) for m in MODULES}


def test_the_walker_sees_the_package():
    assert {"spec", "storage", "regimes", "plotting", "accessor", "__init__"} <= set(MODULES)
    assert "accessor" in GRAPH["__init__"][0]
    assert "torch" in GRAPH["train"][1] and "spec" in GRAPH["train"][1]
    # a relative import from a subpackage resolves one level up
    assert any(t in GRAPH["metrics.cka"][1] for t in ("_functional", "_device"))


def test_the_walker_sees_function_local_and_skips_type_checking(tmp_path, monkeypatch):
    src = tmp_path / "planted.py"
    src.write_text("from typing import TYPE_CHECKING\n"
                   "from . import spec\n"
                   "if TYPE_CHECKING:\n    from .plotting import PhaseDiagram\n"
                   "def f():\n    import torch.nn\n    from .train import fit\n"
                   "class C:\n    from .storage import STATUS\n")
    monkeypatch.setitem(MODULES, "planted", src)
    top, every = _imports("planted")
    assert top == {"spec", "storage"}
    assert every == {"spec", "storage", "torch", "train"}


@pytest.mark.parametrize("mod", sorted(m for m in LAYERS if m in MODULES))
def test_analysis_half_imports_no_torch_and_only_downwards(mod):
    _, every = GRAPH[mod]
    assert "torch" not in every, f"{mod} imports torch"
    foreign = sorted(t for t in every if t not in LAYERS)
    assert not foreign, f"{mod} (analysis half) imports torch-half modules {foreign}"
    upward = sorted(t for t in every if LAYERS[t] >= LAYERS[mod])
    assert not upward, (f"{mod} (layer {LAYERS[mod]}) imports {upward} of the same or a higher "
                        f"layer")


def test_torch_half_never_imports_plotting():
    torch_half = [m for m in MODULES if m not in LAYERS and m not in FRONT]
    assert {"train", "prune", "metrics.lmc"} <= set(torch_half)
    bad = {m: "plotting" for m in torch_half if "plotting" in GRAPH[m][1]}
    for m in torch_half:
        tree = ast.parse(MODULES[m].read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "matplotlib" for n in names):
                bad[m] = "matplotlib"
    assert not bad, f"torch-half modules import plotting: {bad}"


def _cycle() -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(GRAPH[m][0]):
            if t == "torch":
                continue
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (found := visit(t)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(MODULES):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle():
    assert _cycle() is None, " -> ".join(_cycle())


def test_cycle_finder_finds_one(monkeypatch):
    monkeypatch.setitem(GRAPH, "_errors", ({"spec"}, {"spec"}))   # spec imports _errors
    assert _cycle() is not None


def test_accessor_registered_in_one_place_and_no_class_swap():
    registering, importing = [], []
    for m, path in MODULES.items():
        text = path.read_text()
        if "register_dataset_accessor" in text:
            registering.append(m)
        if "accessor" in GRAPH[m][0] and m != "__init__":
            importing.append(m)
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                assert not any(isinstance(t, ast.Attribute) and t.attr == "__class__"
                               for t in targets), f"{m} assigns a __class__"
    assert registering == ["accessor"]
    assert importing == [], f"modules importing the accessor besides __init__: {importing}"


@pytest.mark.parametrize("mod", sorted(MODULES))
def test_no_module_over_500_lines(mod):
    n = len(MODULES[mod].read_text().splitlines())
    assert n <= MAX_LINES, f"{MODULES[mod].relative_to(PKG.parent)} has {n} lines"


def test_import_threeregime_loads_no_torch_and_advise_is_a_function():
    code = ("import sys, inspect, threeregime, xarray as xr\n"
            "assert 'torch' not in sys.modules, 'import threeregime imported torch'\n"
            "ds = threeregime.open_sweep\n"
            "assert hasattr(xr.Dataset(), 'threeregime')\n"
            "assert 'torch' not in sys.modules, 'the accessor imported torch'\n"
            "import threeregime.advice, threeregime.plotting, threeregime.validation\n"
            "assert 'torch' not in sys.modules, 'the analysis half imported torch'\n"
            "assert inspect.isfunction(threeregime.advise), type(threeregime.advise)\n"
            "import threeregime.casestudies\n"
            "assert inspect.isfunction(threeregime.advise), type(threeregime.advise)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_public_names_resolve_to_their_modules():
    import threeregime

    lazy = threeregime._LAZY
    for name, mod in lazy.items():
        assert mod in MODULES, f"threeregime.{name} maps to a missing module {mod!r}"
    for name in ("Advice", "Selection", "TuneResult", "validate_advice", "classify",
                 "regimes_of", "PhaseDiagram", "open_sweep"):
        obj = getattr(threeregime, name)
        assert inspect.getmodule(obj).__name__ == f"threeregime.{lazy[name]}"
