"""The API reference builds from the docstrings with warnings as errors (what ``make docs``
runs), and its pages carry the numpydoc sections.

Built in a temporary copy of ``docs/api`` (autosummary writes its stub pages into the source
folder).  19 CPU-seconds, 40 s wall at load average 10 on the 2-core development machine
(it imports the torch side for the torch-side pages): not a slow test.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("sphinx", reason="Sphinx is in the docs extra (make install has it)")
pytest.importorskip("numpydoc", reason="numpydoc is in the docs extra (make install has it)")


def test_api_reference_builds_without_warnings(tmp_path):
    src = tmp_path / "api"
    shutil.copytree(ROOT / "docs" / "api", src,
                    ignore=shutil.ignore_patterns("_build", "generated"))
    out = tmp_path / "html"
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b",
                           "html", str(src), str(out)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "MPLBACKEND": "Agg",
                                            "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    pages = {p.name for p in (out / "generated").glob("*.html")}
    # every public name of the package has a page
    import threeregime
    names = {n for n in threeregime.__all__ if n != "__version__"}
    assert {f"threeregime.{n}.html" for n in names} <= pages, sorted(
        names - {p[len("threeregime."):-len(".html")] for p in pages})
    page = (out / "generated" / "threeregime.open_sweep.html").read_text()
    text = re.sub(r"<[^>]+>", "", page)
    assert "Raises" in text and "ResultsError" in text          # numpydoc sections rendered
