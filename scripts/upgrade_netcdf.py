"""Upgrade shipped results files to the current schema's CF-1.10 attributes, data untouched.

    python scripts/upgrade_netcdf.py                 # every shipped .nc file of the repository
    python scripts/upgrade_netcdf.py a.nc b.nc       # these files
    python scripts/upgrade_netcdf.py --check         # only say which files need it (exit 1)

For each file: the Dataset is read, completed by :func:`threeregime.results.storage.cf_complete`
(Conventions, title, source, references, date_created, long_name/units on every variable, flag
attributes, legal units, the stack's versions where the file had none) and written again through
the package's own atomic writer (strings as fixed-width char arrays).  ``schema_version``
becomes the current one and ``history`` gains, oldest first, one line per later git commit that
changed the file (a relabelling, say) and one line for this upgrade; the training-time
provenance (``git_sha``, ``threeregime_version``, ``torch_version``, ``created``) is kept as it
was.  Before the new file replaces the old one, every variable's values and dtype are compared
with the original bit for bit (NaN equal to NaN; strings by value): a difference stops the
script with the file untouched.  A file already at the current schema is left alone.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from threeregime.results.storage import (
    ENGINE,
    SCHEMA_VERSION,
    cf_complete,
    provenance,
    write_dataset,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("validation/**/*.nc", "tests/data/*.nc", "docs/**/*.nc")


def shipped_files() -> list[Path]:
    return sorted({p for pat in SHIPPED for p in ROOT.glob(pat)})


def _git_changes(path: Path) -> list[str]:
    """History lines for the commits after the first that changed ``path`` (oldest first)."""
    try:
        out = subprocess.run(["git", "log", "--follow", "--format=%aI %h %s", "--", str(path)],
                             cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    commits = [ln for ln in out.stdout.splitlines() if ln.strip()][::-1]
    lines = []
    for ln in commits[1:]:
        date, sha, subject = ln.split(" ", 2)
        subject = subject if len(subject) <= 110 else subject[:107].rstrip() + "..."
        lines.append(f"{date} commit {sha} changed this file: {subject}")
    return lines


def same_values(a: xr.Variable, b: xr.Variable) -> bool:
    """Bit-identical values and dtype (NaN = NaN); strings compare by value."""
    if a.dims != b.dims or a.shape != b.shape:
        return False
    if a.dtype.kind in "USO" or b.dtype.kind in "USO":
        return [str(x) for x in np.ravel(a.values)] == [str(x) for x in np.ravel(b.values)]
    if a.dtype != b.dtype:
        return False
    x, y = np.ascontiguousarray(a.values), np.ascontiguousarray(b.values)
    return x.tobytes() == y.tobytes()


def upgraded(ds: xr.Dataset, path: Path) -> xr.Dataset:
    before = int(np.ravel(ds.attrs.get("schema_version", 1))[0])
    # the versions this file was made with are its own; absent ones are not this process's
    out = cf_complete(ds, stack=False)         # first history line from `created` if none
    lines = out.attrs["history"].splitlines() + _git_changes(path)
    out.attrs["history"] = "\n".join(lines)
    now = provenance()
    tool = (f"threeregime {now['threeregime_version']} (python {now['python_version']}, "
            f"numpy {now['numpy_version']}, xarray {now['xarray_version']})")
    out = cf_complete(out, history=f"{tool} scripts/upgrade_netcdf.py: schema_version "
                                   f"{before} -> {SCHEMA_VERSION}, CF-1.10 attributes added; "
                                   "data variables unchanged (checked bit for bit)")
    out.attrs["schema_version"] = SCHEMA_VERSION
    return out


def needs_upgrade(ds: xr.Dataset) -> bool:
    return (int(np.ravel(ds.attrs.get("schema_version", 1))[0]) < SCHEMA_VERSION
            or "Conventions" not in ds.attrs)


def upgrade(path: Path) -> bool:
    """Upgrade one file in place; False when it was current already."""
    orig = xr.load_dataset(path, engine=ENGINE)
    if not needs_upgrade(orig):
        return False
    back = replace_verified(path, upgraded(orig, path), orig, suffix=".upgrade.nc",
                            check=lambda back: sorted(set(back.variables)
                                                      ^ set(orig.variables)))
    return back is not None


def replace_verified(path: Path, new: xr.Dataset, orig: xr.Dataset, *, suffix: str,
                     skip: frozenset = frozenset(), check=None) -> xr.Dataset:
    """Write ``new`` next to ``path``, read it back, and replace ``path`` only when every
    variable of ``orig`` outside ``skip`` is bit-identical in it (and ``check(back)``, when
    given, names no added or lost variable); otherwise stop with the file untouched.  Returns
    the Dataset as read back."""
    tmp = path.with_name(path.name + suffix)
    try:
        write_dataset(new, tmp)
        back = xr.load_dataset(tmp, engine=ENGINE)
        changed = check(back) if check is not None else []
        if changed:
            raise SystemExit(f"{path}: variables added or lost: {changed}; file left as it was")
        for name, var in orig.variables.items():
            if name in skip:
                continue
            if name not in back.variables or not same_values(var, back.variables[name]):
                raise SystemExit(f"{path}: values of {name!r} changed; file left as it was")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return back


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path, help="default: every shipped .nc file")
    ap.add_argument("--check", action="store_true", help="only list files that need it")
    args = ap.parse_args(argv)
    files = args.files or shipped_files()
    stale = 0
    for path in files:
        if args.check:
            if needs_upgrade(xr.load_dataset(path, engine=ENGINE)):
                print(f"{path}: needs upgrade")
                stale += 1
            continue
        print(f"{path}: {'upgraded' if upgrade(path) else 'current'}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
