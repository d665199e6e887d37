"""Set-up shared by the notebooks in this folder (imported as ``from _nbsetup import ...``).

Every notebook finds the repository (for ``sweeps/*.yaml``), picks where its runs go (a
temporary folder in the tiny setting, else ``THREEREGIME_NOTEBOOK_RUNS`` or ``<repo>/runs``),
and runs sweeps with local worker processes of one torch thread each, showing progress bars
(widgets in JupyterLab: the ``lab`` extra installs ipywidgets).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import threeregime as tr
from threeregime.spec.specs import SweepSpec, from_dict, to_dict

__all__ = ["setup", "find_root", "smoke_sweep", "run_sweep", "SMOKE_NOTE"]

SMOKE_NOTE = ("SMOKE RUN (THREEREGIME_NOTEBOOK_TINY=1): a few hundred examples and a few epochs, "
              "so the models stay near chance\nand most cells come out 'undetermined'. This run "
              "checks that the notebook works; unset\nTHREEREGIME_NOTEBOOK_TINY and rerun for "
              "the real pictures.")

_TEMP_DIRS: list[tempfile.TemporaryDirectory] = []   # removed when the kernel exits


def find_root(start: Path | None = None) -> Path:
    """The first folder upwards from ``start`` (default: cwd) holding ``sweeps/quick.yaml``."""
    start = Path.cwd() if start is None else Path(start)
    for p in (start, *start.parents):
        if (p / "sweeps" / "quick.yaml").is_file():
            return p
    raise FileNotFoundError(f"no sweeps/quick.yaml in {start} or above it: run the notebook from "
                            f"a threeregime checkout (its notebooks/ folder)")


def setup(name: str, tiny: bool, runs_dir: str | None = None) -> tuple[Path, Path]:
    """``(ROOT, RUNS)``: the repository and the folder the notebook's sweeps write to.

    ``tiny``: a temporary folder (``threeregime-<name>-*``) kept until the kernel exits; else
    ``runs_dir`` or ``<repo>/runs``.  In the tiny setting it prints :data:`SMOKE_NOTE`.
    """
    root = find_root()
    if tiny:
        print(SMOKE_NOTE)
        tmp = tempfile.TemporaryDirectory(prefix=f"threeregime-{name}-")
        _TEMP_DIRS.append(tmp)
        return root, Path(tmp.name)
    return root, Path(runs_dir) if runs_dir else root / "runs"


def smoke_sweep(root: Path, name: str, axes: dict, *, prune: dict | None = None,
                **dense: Any) -> SweepSpec:
    """``sweeps/smoke.yaml`` (a few hundred examples, a quarter-width CNN) with other axes.

    ``prune`` replaces the base pruning section; ``dense`` updates the base dense recipe.
    """
    d = to_dict(tr.load_yaml(root / "sweeps" / "smoke.yaml"))
    d["name"], d["axes"] = name, axes
    d["base"]["dense"].update(dense)
    if prune is not None:
        d["base"]["prune"] = prune
    return from_dict(SweepSpec, d)


def _widgets_missing() -> bool:
    """True in a Jupyter kernel without ipywidgets (tqdm.auto would print its IProgress warning
    and text bars on stderr, shown as red boxes)."""
    import importlib.util
    import sys

    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return (shell is not None and hasattr(shell, "kernel")
            and importlib.util.find_spec("ipywidgets") is None)


def run_sweep(spec: SweepSpec, runs: Path, *, workers: int, **kwargs: Any):
    """:func:`threeregime.run_sweep` into ``runs / spec.name`` with ``workers`` local processes
    of one torch thread each, with progress bars; returns the results Dataset.

    The bars are the stage bars of this process (widgets in JupyterLab); worker processes
    print none.  In a kernel without ipywidgets it prints a one-line hint instead of bars.
    """
    from threeregime.sweep.executors import make_executor

    if "progress" not in kwargs and _widgets_missing():
        print("(no progress bars: this kernel lacks ipywidgets; pip install 'threeregime[lab]')")
        kwargs["progress"] = False
    executor = make_executor(workers=workers, threads=1)
    kwargs.setdefault("progress", True)
    try:
        return tr.run_sweep(spec, runs / spec.name, executor=executor, threads=1, **kwargs)
    finally:
        executor.close()
