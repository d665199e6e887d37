"""The walk of a density value from ``threeregime run`` to the pruning mask and into the Dataset.

Runs ``threeregime run SWEEP --workers 1`` in this process under :func:`sys.settrace` and
records, for every call of a *landmark* below, the stack of package functions that led to it.
The walk is the union of those stacks: every package function a density value passes through
on its way from the command line to

* its check when the YAML is read (``check_float`` of a ``...density`` field under
  ``load_yaml``; the re-checks when a spec is hashed are left out),
* the point spec (``apply_axis(point, "density", value)``),
* the mask (``compute_masks``) and its realised density (``density_report``),
* the point Dataset (``make_point_dataset``), the sweep Dataset's ``density`` coordinate
  (``axis_meta_of``, ``combine_points``) and the file (``write_dataset``).

A *step* is one package function on the walk (counted once however often it is called); the
report gives the steps, the files they are in, and the walk as an indented tree.  Usage::

    python scripts/density_walk.py [sweeps/smoke.yaml]

The sweep runs for real (seconds for ``sweeps/smoke.yaml``), in a temporary directory.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import threeregime

PKG = Path(threeregime.__file__).resolve().parent
#: landmark function name -> which calls count (a test on the frame's arguments)
LANDMARKS = {
    "check_float": lambda f: str(f.f_locals.get("name", "")).endswith("density"),
    "apply_axis": lambda f: f.f_locals.get("axis") == "density",
    "compute_masks": lambda f: True,
    "density_report": lambda f: True,
    "make_point_dataset": lambda f: True,
    "axis_meta_of": lambda f: True,
    "combine_points": lambda f: True,
    "write_dataset": lambda f: True,
}


def _key(code) -> tuple[str, str] | None:
    try:
        rel = Path(code.co_filename).resolve().relative_to(PKG)
    except ValueError:
        return None
    if code.co_name.startswith("<"):          # comprehensions, lambdas, genexprs
        return None
    return str(rel), code.co_qualname


def walk(sweep: str) -> list[tuple[tuple[str, str], ...]]:
    """The distinct stacks (outermost first) that reached a landmark."""
    from threeregime import cli

    paths: set[tuple[tuple[str, str], ...]] = set()

    def trace(frame, event, arg):
        test = LANDMARKS.get(frame.f_code.co_name)
        if test is not None and _key(frame.f_code) is not None and test(frame):
            stack, f = [], frame
            while f is not None:
                if (k := _key(f.f_code)) is not None:
                    stack.append(k)
                f = f.f_back
            path = tuple(reversed(stack))
            if frame.f_code.co_name != "check_float" or any(n == "load_yaml" for _, n in path):
                paths.add(path)
        return None                              # no line events

    with tempfile.TemporaryDirectory() as tmp:
        sys.settrace(trace)
        try:
            cli.main(["run", sweep, "--out", str(Path(tmp) / "out"), "--workers", "1",
                      "--device", "cpu"])
        finally:
            sys.settrace(None)
    return sorted(paths)


def report(paths: list[tuple[tuple[str, str], ...]]) -> str:
    steps = {k for p in paths for k in p}
    files = {f for f, _ in steps}
    lines = [f"{len(steps)} steps (package functions) in {len(files)} files", ""]
    seen: set[tuple[tuple[str, str], ...]] = set()
    for p in paths:
        for depth in range(len(p)):
            prefix = p[:depth + 1]
            if prefix in seen:
                continue
            seen.add(prefix)
            f, name = p[depth]
            lines.append(f"{'  ' * depth}{name}  ({f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", nargs="?", default="sweeps/smoke.yaml")
    args = ap.parse_args(argv)
    paths = walk(args.sweep)
    print(report(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
