"""The built-in names of the torch-side measure registry are known torch-free
(``threeregime.registry.BUILTIN``): a spec naming ``measure: {extra: [robustness]}`` loads in
a fresh process that never imports torch, and the name table agrees with the registry."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from threeregime.registry import BUILTIN

ROOT = Path(__file__).resolve().parents[1]


def test_builtin_measure_names_agree_with_the_registry():
    from threeregime.metrics import measures

    # the measures defined in threeregime/metrics/measures.py (tests may register temporary others)
    own = {name for name in measures.MEASURES.names()
           if measures.MEASURES.get(name).fn.__module__ == measures.__name__}
    assert own == set(BUILTIN["measure"])


def test_spec_with_an_extra_measure_loads_without_torch(tmp_path):
    spec = tmp_path / "robust.yaml"
    spec.write_text(textwrap.dedent("""\
        name: robust
        base:
          measure: {extra: [robustness], severities: [0, 2]}
        axes:
          epochs: [2, 4]
          density: [0.1, 0.5]
        """))
    code = textwrap.dedent(f"""\
        import sys
        import threeregime as tr
        s = tr.load_yaml({str(spec)!r})
        assert s.base.measure.extra == ("robustness",), s.base.measure.extra
        assert s.base.measure.names()[-1] == "robustness"
        bad = None
        try:
            tr.load_yaml({str(tmp_path / "bad.yaml")!r})
        except tr.SpecError as e:
            bad = str(e)
        assert "robustness" in bad and "robustnes'" in bad, bad
        assert "torch" not in sys.modules, "torch was imported"
        print("ok")
        """)
    (tmp_path / "bad.yaml").write_text(spec.read_text().replace("robustness]", "robustnes]"))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
