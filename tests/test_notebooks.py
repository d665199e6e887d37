"""The notebooks in notebooks/ are paired with their jupytext twins and run (STYLE rule 11).

Every ``notebooks/NN_*.ipynb`` is executed top to bottom with nbclient in a fresh ``python3``
kernel of this environment (ipykernel's own kernelspec; its ``python`` argv resolves to the
interpreter running the tests), with ``THREEREGIME_NOTEBOOK_TINY=1`` so that each notebook runs
its tiny setting in a temporary directory, and cwd = notebooks/.  A second test checks that each
.ipynb and its percent-format .py twin hold the same cells and that the .ipynb is stored
without outputs.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="notebook tests need nbformat (dev extra)")
jupytext = pytest.importorskip("jupytext", reason="notebook tests need jupytext (dev extra)")

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT = 240          # seconds per cell (tiny settings take far less)


def _ids(paths):
    return [p.stem for p in paths]


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {NB_DIR}"
    for nb in NOTEBOOKS:
        assert nb.with_suffix(".py").is_file(), f"{nb.name} has no jupytext twin {nb.stem}.py"


def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_paired_and_stripped(path):
    ipynb = jupytext.read(path)
    py = jupytext.read(path.with_suffix(".py"))
    assert _cells(ipynb) == _cells(py), (
        f"{path.name} and {path.stem}.py differ; run `python -m jupytext --sync "
        f"notebooks/{path.stem}.py`")
    raw = nbformat.read(path, as_version=4)
    for i, cell in enumerate(raw.cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{path.name} cell {i} has stored outputs; strip them"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"
    assert raw.metadata.get("kernelspec", {}).get("name") == "python3"
    first = raw.cells[0]
    assert first.cell_type == "markdown" and "How long" in first.source, (
        f"{path.name}: the first cell must say what the notebook shows and how long it takes")
    assert any("THREEREGIME_NOTEBOOK_TINY" in c.source for c in raw.cells if
               "parameters" in c.metadata.get("tags", [])), (
        f"{path.name}: a cell tagged 'parameters' must read THREEREGIME_NOTEBOOK_TINY")


def _kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.skip("no 'python3' kernelspec; install ipykernel in this environment")
    # ipykernel's native spec starts `python -m ipykernel_launcher`, which jupyter_client maps to
    # sys.executable; any other python3 spec must point at this interpreter.
    exe = spec.argv[0]
    if exe not in ("python", "python3") and Path(exe).resolve() != Path(sys.executable).resolve():
        pytest.skip(f"the 'python3' kernelspec runs {exe}, not this environment's "
                    f"{sys.executable}")
    return "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_tiny(path, monkeypatch):
    nbclient = pytest.importorskip("nbclient", reason="notebook tests need nbclient")
    pytest.importorskip("ipykernel", reason="notebook tests need ipykernel")
    kernel = _kernel_name()
    monkeypatch.setenv("THREEREGIME_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=kernel, timeout=CELL_TIMEOUT,
                                     resources={"metadata": {"path": str(NB_DIR)}})
    client.execute()        # raises CellExecutionError (with the traceback) on any error
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: {errors[0].get('ename')}: {errors[0].get('evalue')}"
