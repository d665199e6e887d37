"""environment.yml (conda-forge) lists the same packages as pyproject.toml, with the same bounds.

conda itself is not run here (no conda on the CI machine); this checks what can be checked
without it: the file parses, uses conda-forge only, every dependency and extra of pyproject.toml
is in it once (conda names mapped to their PyPI names) and nothing else, version bounds agree,
and torch is the version that constraints.txt pins.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:   # Python 3.10
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml on Python 3.10")

ROOT = Path(__file__).resolve().parents[1]

# conda-forge package name -> PyPI distribution name, where they differ
CONDA_TO_PYPI = {"pytorch": "torch", "matplotlib-base": "matplotlib"}
# conda packages that are tools of the environment, not dependencies of the package
CONDA_TOOLS = {"python", "pip"}


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pyproject_requirements() -> dict[str, str]:
    """PyPI name -> specifier of every runtime dependency and every extra's (a requirement's
    own extras, h5netcdf[h5py] or dask[distributed], count as the packages they add)."""
    proj = _pyproject()["project"]
    reqs = list(proj["dependencies"])
    for extra in proj["optional-dependencies"].values():
        reqs += extra
    out: dict[str, str] = {}
    for line in reqs:
        r = Requirement(line)
        name = canonicalize_name(r.name)
        assert name not in out, f"pyproject.toml lists {name} twice"
        out[name] = str(r.specifier)
        for e in r.extras:          # h5netcdf[h5py] -> h5py, dask[distributed] -> distributed
            out.setdefault(canonicalize_name(e), "")
    return out


def _environment():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _conda_spec(entry: str) -> tuple[str, str, str]:
    """'numpy>=1.24' -> ('numpy', '>=1.24', ''); 'pytorch=2.13.0=cpu_*' -> ('pytorch',
    '==2.13.0', 'cpu_*')."""
    m = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", entry.strip())
    assert m, f"environment.yml: cannot read conda spec {entry!r}"
    name, rest = m.group(1), m.group(2)
    build = ""
    if rest.startswith("=") and not rest.startswith("=="):
        parts = rest[1:].split("=")
        rest = "==" + parts[0]
        build = parts[1] if len(parts) > 1 else ""
    return name, rest, build


def _environment_requirements() -> tuple[dict[str, str], list[str], dict[str, str]]:
    """(PyPI name -> specifier, pip option lines, conda name -> build string)."""
    out: dict[str, str] = {}
    options: list[str] = []
    builds: dict[str, str] = {}
    for dep in _environment()["dependencies"]:
        if isinstance(dep, dict):
            for line in dep["pip"]:
                if line.startswith("-"):
                    options.append(line)
                    continue
                r = Requirement(line)
                name = canonicalize_name(r.name)
                assert name not in out, f"environment.yml lists {name} twice"
                out[name] = str(r.specifier)
            continue
        conda_name, spec, build = _conda_spec(dep)
        if conda_name in CONDA_TOOLS:
            continue
        name = canonicalize_name(CONDA_TO_PYPI.get(conda_name, conda_name))
        assert name not in out, f"environment.yml lists {name} twice"
        out[name] = spec
        builds[conda_name] = build
    return out, options, builds


def test_environment_uses_conda_forge_only():
    env = _environment()
    assert env["name"] == "threeregime"
    assert env["channels"] == ["conda-forge", "nodefaults"]
    text = (ROOT / "environment.yml").read_text()
    assert "cpuonly" not in text and "pytorch-cuda" not in text   # pytorch-channel packages


def test_environment_has_every_pyproject_package_and_no_other():
    want = _pyproject_requirements()
    have, _, _ = _environment_requirements()
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    assert not missing, f"in pyproject.toml, missing from environment.yml: {missing}"
    assert not extra, f"in environment.yml, not in pyproject.toml: {extra}"


def test_environment_bounds_match_pyproject():
    want = _pyproject_requirements()
    have, _, _ = _environment_requirements()
    for name, spec in want.items():
        if name == "torch":
            continue   # pinned, checked against constraints.txt below
        assert have[name] == spec, (f"{name}: environment.yml says {have[name]!r}, "
                                    f"pyproject.toml says {spec!r}")


def test_environment_torch_is_the_constrained_cpu_build():
    have, options, builds = _environment_requirements()
    pins = [ln.split("#")[0].strip() for ln in (ROOT / "constraints.txt").read_text().splitlines()]
    torch_pin = next(p for p in pins if p.startswith("torch=="))
    assert have["torch"] == torch_pin.removeprefix("torch"), (have["torch"], torch_pin)
    assert builds["pytorch"] == "cpu_*"
    # the pyproject range admits the pinned version
    from packaging.specifiers import SpecifierSet
    assert torch_pin.split("==")[1] in SpecifierSet(_pyproject_requirements()["torch"])
    assert "-c constraints.txt" in options


def test_environment_installs_the_package_with_every_extra():
    _, options, _ = _environment_requirements()
    editable = [o for o in options if o.startswith("-e ")]
    assert len(editable) == 1, options
    m = re.fullmatch(r"-e \.\[(.*)\]", editable[0])
    assert m, editable[0]
    extras = set(m.group(1).split(","))
    assert extras == set(_pyproject()["project"]["optional-dependencies"])
