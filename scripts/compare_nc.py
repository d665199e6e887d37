"""Compare two netCDF results files variable by variable, bit for bit.

Usage::

    python scripts/compare_nc.py BEFORE.nc AFTER.nc [--ignore-attrs created,git_sha]

Every data variable and coordinate of either file must be in both with the same dims, shape,
dtype and bytes (NaN payloads included: the raw bytes are compared, so NaN == NaN and -0.0 !=
0.0); the global attributes must be equal except those ignored (default: ``created``,
``git_sha``, which change from run to run).  Prints one line per variable and exits 1 at the
first difference found in any of them (all are reported).  Needs xarray only (no torch).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import xarray as xr


def _bytes(a: np.ndarray) -> bytes:
    a = np.ascontiguousarray(a)
    return a.tobytes() if a.dtype != object else repr(a.tolist()).encode()


def _attrs(attrs: dict) -> dict:
    """Attributes comparable with ``==``: arrays and numbers as their dtype and bytes (so a NaN
    ``_FillValue`` equals itself)."""
    return {k: (np.asarray(v).dtype.str, _bytes(np.asarray(v)))
            if isinstance(v, (np.ndarray, np.generic, float)) else v for k, v in attrs.items()}


def compare(a: xr.Dataset, b: xr.Dataset, ignore: set[str]) -> list[str]:
    """Differences between ``a`` and ``b`` as lines (empty: bit-identical)."""
    diffs = []
    names = sorted(set(a.variables) | set(b.variables))
    for n in names:
        if n not in a.variables or n not in b.variables:
            diffs.append(f"{n}: only in {'first' if n in a.variables else 'second'}")
            continue
        va, vb = a[n].variable, b[n].variable
        if va.dims != vb.dims or va.shape != vb.shape or va.dtype != vb.dtype:
            diffs.append(f"{n}: dims/shape/dtype {va.dims} {va.shape} {va.dtype} != "
                         f"{vb.dims} {vb.shape} {vb.dtype}")
        elif _bytes(va.values) != _bytes(vb.values):
            x, y = np.asarray(va.values), np.asarray(vb.values)
            n_diff = int(np.sum(x != y)) if x.dtype != object else -1
            diffs.append(f"{n}: values differ ({n_diff} elements)")
        elif _attrs(va.attrs) != _attrs(vb.attrs):
            diffs.append(f"{n}: attrs differ")
    ga = {k: v for k, v in a.attrs.items() if k not in ignore}
    gb = {k: v for k, v in b.attrs.items() if k not in ignore}
    for k in sorted(set(ga) | set(gb)):
        if str(ga.get(k)) != str(gb.get(k)):
            diffs.append(f"global attr {k}: {str(ga.get(k))[:60]!r} != {str(gb.get(k))[:60]!r}")
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("first")
    ap.add_argument("second")
    ap.add_argument("--ignore-attrs", default="created,git_sha",
                    help="comma-separated global attributes left out (default created,git_sha)")
    args = ap.parse_args(argv)
    ignore = {s for s in args.ignore_attrs.split(",") if s}
    with xr.open_dataset(args.first, decode_cf=False) as a, \
            xr.open_dataset(args.second, decode_cf=False) as b:
        diffs = compare(a.load(), b.load(), ignore)
        n = len(set(a.variables) | set(b.variables))
    for d in diffs:
        print(d)
    print(f"{n} variables compared: {'bit-identical' if not diffs else f'{len(diffs)} differ'}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
