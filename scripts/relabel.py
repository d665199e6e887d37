"""Relabel shipped results files with a regime rule (default: the library default), raw data kept.

    python scripts/relabel.py                      # every shipped file labelled by a sweep rule
    python scripts/relabel.py a.nc b.nc            # these files
    python scripts/relabel.py --rule paper_step    # another shipped rule
    python scripts/relabel.py --check              # only say which files a relabelling changes

For each file: the regime variables and the features of the rule that labelled it are replaced
by :meth:`xarray.Dataset.threeregime.classify`'s (``regime_rule`` names the new rule), a
``history`` line names the rule, the commit of the working tree and the cells whose label
changed, and the file is written through the package's atomic writer.  Before the new file
replaces the old one, every variable that the labelling does not write is compared
with the original bit for bit (NaN equal to NaN; strings by value): a difference stops the script
with the file untouched.  Files without a ``regime_rule`` attr (the test references, labelled
before rules were objects) are skipped unless named.  Run ``scripts/upgrade_netcdf.py``
afterwards when the schema changed too.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import xarray as xr

import threeregime  # noqa: F401  (registers the .threeregime accessor)
from threeregime.analysis.regimes import FEATURE_VARS, REGIME_VARS, classify
from threeregime.analysis.rules import DEFAULT_RULE, get_rule, label_names
from threeregime.results.storage import ENGINE, cf_complete, provenance

sys.path.insert(0, str(Path(__file__).resolve().parent))
from upgrade_netcdf import ROOT, replace_verified, shipped_files  # noqa: E402


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=30, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def relabelled(ds: xr.Dataset, rule: str) -> tuple[xr.Dataset, int, int]:
    """``ds`` labelled by ``rule``; with the number of cells whose label changed, of all cells."""
    out = ds.threeregime.classify(rule=rule)
    old = label_names(ds["regime"].values) if "regime" in ds else None
    new = label_names(out["regime"].values)
    changed = int(np.sum(old != new)) if old is not None and old.shape == new.shape else new.size
    return out, changed, int(new.size)


def relabel(path: Path, rule: str, *, check: bool = False) -> str:
    """Relabel one file in place (``check``: only report); the line printed for it."""
    orig = xr.load_dataset(path, engine=ENGINE)
    old_rule = (json.loads(orig.attrs["regime_rule"])["name"] if "regime_rule" in orig.attrs
                else None)
    new, changed, total = relabelled(orig, rule)
    same_rule = old_rule == rule
    msg = f"{path}: {old_rule} -> {rule}, {changed}/{total} labels changed"
    if check or (same_rule and changed == 0):
        return msg + ("" if not same_rule or changed else " (current)")
    now = provenance()
    new = cf_complete(new, history=(
        f"threeregime {now['threeregime_version']} scripts/relabel.py at commit {_commit()}: "
        f"relabelled with rule {rule} (was {old_rule}); {changed} of {total} cells changed "
        "label; raw variables unchanged (checked bit for bit)"))
    derived = {*REGIME_VARS, *FEATURE_VARS, *classify(orig, rule=rule).data_vars}
    back = replace_verified(path, new, orig, suffix=".relabel.nc", skip=frozenset(derived))
    lost = sorted(set(orig.data_vars) - set(back.data_vars))
    if lost:
        msg += f"; features of the old rule dropped: {', '.join(lost)}"
    return msg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path,
                    help="default: every shipped .nc file that a sweep rule labelled")
    ap.add_argument("--rule", default=DEFAULT_RULE, help=f"shipped rule (default {DEFAULT_RULE})")
    ap.add_argument("--check", action="store_true", help="only report, write nothing")
    args = ap.parse_args(argv)
    get_rule(args.rule)                       # one-line error for an unknown name, before work
    files = args.files or [p for p in shipped_files()
                           if "regime_rule" in xr.open_dataset(p, engine=ENGINE).attrs]
    for path in files:
        print(relabel(path, args.rule, check=args.check))
    return 0


if __name__ == "__main__":
    sys.exit(main())
