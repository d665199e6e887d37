"""The package's shape, read from its source with ``ast`` (nothing here imports the modules).

The package is a short ordered table of parts (:data:`ORDER`): a module may import only modules
of its own part or of an earlier one, even inside a function.  The torch-free half comes first
(errors -> registry -> spec -> results -> analysis), then the torch half (data -> models ->
pruning -> training -> metrics -> sweep), then the front ends (advisor, cli).  Besides:

* the torch-free half never imports torch, and the torch half never imports plotting (nor
  matplotlib);
* a metric never imports training: of :mod:`threeregime.training`, the metrics use only the
  stateless ``functional`` and ``device`` modules, never the training loop or its engines;
* module-level imports form no cycle;
* the accessor is registered in one place and no module swaps its class;
* ``import threeregime`` imports no torch, ``threeregime.advise`` is a function, and reading,
  classifying, plotting and advising on a results file never imports torch (subprocesses).
"""
from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "threeregime"
ROOT = PKG.parent
TORCH = {"torch", "torchvision", "functorch"}
#: the parts of the package in import order: a module imports only its own part or earlier ones
ORDER = ["errors", "registry", "stats", "spec", "results", "analysis",            # torch-free
         "data", "models", "pruning", "training", "metrics", "sweep",             # torch
         "advisor", "tuning_run", "cli", "__main__"]                           # front ends
TORCH_FREE = ORDER[:ORDER.index("analysis") + 1]
TORCH_HALF = ORDER[ORDER.index("data"):ORDER.index("sweep") + 1]
#: the modules of training a metric may use (stateless helpers, not the training loop)
METRIC_MAY_USE = {"training.functional", "training.device"}


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




def _part(mod: str) -> str:
    """The part of :data:`ORDER` a module belongs to (``__init__``: the package itself)."""
    return mod.split(".")[0]


def test_the_walker_sees_the_package():
    assert {"spec.specs", "results.storage", "analysis.regimes", "analysis.plotting",
            "analysis.accessor", "__init__"} <= set(MODULES)
    assert "analysis.accessor" in GRAPH["__init__"][0]
    assert "torch" in GRAPH["training.train"][1] and "spec.specs" in GRAPH["training.train"][1]
    # a relative import two levels up resolves to the sibling package's module
    assert {"training.functional", "training.device", "errors"} <= GRAPH["metrics.cka"][1]


def test_the_walker_sees_function_local_and_skips_type_checking(tmp_path, monkeypatch):
    src = tmp_path / "planted.py"
    src.write_text("from typing import TYPE_CHECKING\n"
                   "from .spec import specs\n"
                   "if TYPE_CHECKING:\n    from .analysis.plotting import PhaseDiagram\n"
                   "def f():\n    import torch.nn\n    from .training.train import fit\n"
                   "class C:\n    from .results.storage import STATUS\n")
    monkeypatch.setitem(MODULES, "planted", src)
    top, every = _imports("planted")
    assert top == {"spec.specs", "results.storage"}
    assert every == {"spec.specs", "results.storage", "torch", "training.train"}


def test_every_module_is_in_a_part_of_the_table_and_every_part_exists():
    parts = {_part(m) for m in MODULES if m != "__init__"}
    assert parts == set(ORDER), (f"parts not in ORDER: {sorted(parts - set(ORDER))}; "
                                 f"in ORDER but missing: {sorted(set(ORDER) - parts)}")


@pytest.mark.parametrize("mod", sorted(m for m in MODULES if m != "__init__"))
def test_imports_go_to_the_same_or_an_earlier_part(mod):
    here = ORDER.index(_part(mod))
    later = sorted(t for t in GRAPH[mod][1] if t not in ("torch", "__init__")
                   and ORDER.index(_part(t)) > here)
    assert not later, f"{mod} ({_part(mod)}) imports later parts: {later}"


def test_the_order_check_catches_an_upward_import(monkeypatch):
    monkeypatch.setitem(GRAPH, "spec.specs", (set(), {"analysis.regimes"}))
    with pytest.raises(AssertionError, match="imports later parts"):
        test_imports_go_to_the_same_or_an_earlier_part("spec.specs")


@pytest.mark.parametrize("mod", sorted(m for m in MODULES if _part(m) in TORCH_FREE))
def test_torch_free_half_never_imports_torch(mod):
    assert "torch" not in GRAPH[mod][1], f"{mod} imports torch"


def test_a_metric_never_imports_training():
    bad = {m: sorted(t for t in GRAPH[m][1] if _part(t) == "training" and t not in METRIC_MAY_USE)
           for m in MODULES if _part(m) == "metrics"}
    bad = {m: v for m, v in bad.items() if v}
    assert not bad, f"metrics import the training loop or engines: {bad}"


def test_torch_half_never_imports_plotting():
    torch_half = [m for m in MODULES if _part(m) in TORCH_HALF]
    assert {"training.train", "pruning.masks", "metrics.lmc"} <= set(torch_half)
    bad = {m: "plotting" for m in torch_half
           if any(t.startswith("analysis.plot") for t in GRAPH[m][1])}
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
    monkeypatch.setitem(GRAPH, "errors", ({"spec.specs"}, {"spec.specs"}))
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
    assert registering == ["analysis.accessor"]
    assert importing == [], f"modules importing the accessor besides __init__: {importing}"


def _run(code: str) -> None:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]


def test_import_threeregime_loads_no_torch_and_advise_is_a_function():
    _run("import sys, inspect, threeregime, xarray as xr\n"
         "assert 'torch' not in sys.modules, 'import threeregime imported torch'\n"
         "ds = threeregime.open_sweep\n"
         "assert hasattr(xr.Dataset(), 'threeregime')\n"
         "assert 'torch' not in sys.modules, 'the accessor imported torch'\n"
         "import threeregime.analysis.advice, threeregime.analysis.plotting\n"
         "import threeregime.analysis.validation, threeregime.advisor\n"
         "assert 'torch' not in sys.modules, 'the analysis half or the advisor imported torch'\n"
         "assert inspect.isfunction(threeregime.advise), type(threeregime.advise)\n")


def test_reading_classifying_plotting_and_advising_on_a_results_file_imports_no_torch():
    _run("import sys, matplotlib\n"
         "matplotlib.use('Agg')\n"
         "import threeregime as tr\n"
         "ds = tr.open_sweep('tests/data/quick_dense_seed0.nc')\n"
         "reg = tr.classify(ds)\n"
         "assert reg['regime'].shape == (5, 4), reg['regime'].shape\n"
         "art = tr.PhaseDiagram.from_dataset(ds, var='lmc').plot()\n"
         "assert art.region_labels\n"
         "tr.plot_phase_diagrams(ds)\n"
         "adv = tr.advise(ds, point={'epochs': 20, 'density': 0.05})\n"
         "assert adv.direction in ('hotter', 'colder', 'keep', 'unknown'), adv.direction\n"
         "ds.threeregime.classify()\n"
         "assert 'torch' not in sys.modules, 'the results path imported torch'\n"
         "import threeregime.advisor\n"
         "tr.advise(ds, point={'epochs': 20, 'density': 0.05})\n"
         "assert 'torch' not in sys.modules, 'advise(ds) imported torch'\n")


def test_the_model_path_of_advise_does_import_torch():
    # the check above can fail: the same advisor imports torch when it is given a model
    _run("import sys, threeregime as tr\n"
         "try:\n    tr.advise(object(), None, target_density=0.5)\n"
         "except tr.SpecError:\n    pass\n"
         "assert 'torch' in sys.modules\n")


def test_public_names_resolve_to_their_modules():
    import threeregime

    lazy = threeregime._LAZY
    for name, mod in lazy.items():
        assert mod in MODULES, f"threeregime.{name} maps to a missing module {mod!r}"
    for name in ("Advice", "Selection", "TuneResult", "validate_advice", "classify",
                 "regimes_of", "PhaseDiagram", "open_sweep"):
        obj = getattr(threeregime, name)
        assert inspect.getmodule(obj).__name__ == f"threeregime.{lazy[name]}"


def test_tests_notebooks_and_benchmarks_import_only_public_modules():
    """They import what users import: no ``threeregime._x`` module (private names inside a
    public module are the tests' business)."""
    bad = []
    for path in [*ROOT.glob("tests/*.py"), *ROOT.glob("notebooks/*.py"),
                 *ROOT.glob("benchmarks/*.py"), *ROOT.glob("scripts/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                    [".".join(filter(None, [node.module, a.name])) for a in node.names]
                    if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for m in mods:
                parts = m.split(".")
                # a module part starting with "_" (a private name inside a module is allowed)
                if parts[0] == "threeregime" and any(
                        x.startswith("_") and ".".join(parts[1:i + 2]) in MODULES
                        for i, x in enumerate(parts[1:])):
                    bad.append(f"{path.relative_to(ROOT)}: {m}")
    assert not bad, bad
