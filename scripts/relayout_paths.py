"""Rewrite the flat module paths of threeregime (before issue 17) to the subpackage ones.

For merging work written against the flat layout: every ``threeregime.<old>`` dotted name,
``threeregime/<old>.py`` path and ``from threeregime import <old module>`` in the files given
becomes its new location (:data:`MOVES`); relative imports inside the package are not
rewritten (fix those by hand: ``from .spec import X`` in ``analysis/`` is
``from ..spec.specs import X``).  Prints the files it changed.  Usage::

    python scripts/relayout_paths.py tests/test_new.py notebooks/08_x.py ...

Idempotent: a path already moved is left alone.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

#: old module (below threeregime) -> new module
MOVES = {
    "_errors": "errors", "_registry": "registry", "casestudies": "advisor",
    "spec": "spec.specs", "spec_io": "spec.codec",
    "_schema": "results.schema", "storage": "results.storage", "_artifacts": "results.artifacts",
    "features": "analysis.features", "rules": "analysis.rules", "regimes": "analysis.regimes",
    "calibrate": "analysis.calibrate", "advice": "analysis.advice",
    "validation": "analysis.validation", "plotting": "analysis.plotting",
    "_plot_text": "analysis.plot_text", "accessor": "analysis.accessor",
    "data": "data.sources", "corruptions": "data.corruptions", "models": "models.zoo",
    "prune": "pruning.masks", "nm_training": "pruning.nm_training",
    "channel": "pruning.channel", "families": "pruning.families",
    "train": "training.train", "_engines": "training.engines",
    "_functional": "training.functional", "_device": "training.device",
    "measures": "metrics.measures", "metrics._taylor": "metrics.hessian.taylor",
    "metrics._taylor_fx": "metrics.hessian.taylor_fx", "metrics._trace": "metrics.hessian.trace",
    "plan": "sweep.plan", "stages": "sweep.stages", "driver": "sweep.driver",
    "executors": "sweep.executors", "_torchio": "sweep.torchio",
}
_ALT = "|".join(re.escape(k) for k in sorted(MOVES, key=len, reverse=True))
_DOTTED = re.compile(r"(?<![\w.])threeregime\.(" + _ALT + r")(?![\w])")
_SLASHED = re.compile(r"threeregime/(" + _ALT.replace(r"\.", "/") + r")\.py\b")
_FROM = re.compile(r"from threeregime import ([\w ,]+?)(?=\s*(?:#|\\n|\n|\"|;|$))", re.M)


def _dotted(text: str, m: re.Match) -> str:
    old, new = m.group(1), MOVES[m.group(1)]
    rest = new[len(old):] if new.startswith(old + ".") else ""
    after = text[m.end():]
    if rest and after.startswith(rest) and not after[len(rest):len(rest) + 1].isidentifier():
        return m.group(0)                       # already moved (threeregime.data.sources)
    if rest and any(after.startswith("." + v.split(".")[-1]) for k, v in MOVES.items()
                    if v.startswith(old + ".") and v != new):
        return m.group(0)                       # threeregime.data.corruptions
    return "threeregime." + new


def _from(m: re.Match) -> str:
    """One ``from`` import per new parent module: on lines of their own in source, joined by
    ``; `` inside a notebook's JSON string (where a newline cannot go)."""
    items = [n.strip().split(" as ") for n in m.group(1).split(",") if n.strip()]
    if not any(i[0].strip() in MOVES for i in items):
        return m.group(0)
    out = []
    for i in items:
        name, alias = i[0].strip(), (i[1].strip() if len(i) > 1 else None)
        parent, _, leaf = MOVES.get(name, name).rpartition(".")
        alias = alias or (name if leaf != name else None)
        out.append((parent, leaf + (f" as {alias}" if alias and alias != leaf else "")))
    parents = {p for p, _ in out}
    line_start = m.string.rfind("\n", 0, m.start()) + 1
    indent = m.string[line_start:m.start()]
    sep = "; " if m.string[m.end():m.end() + 2] == "\\n" or indent.strip() else "\n" + indent
    return sep.join(f"from threeregime{'.' + p if p else ''} import "
                     f"{', '.join(x for q, x in out if q == p)}" for p in sorted(parents))


def rewrite(text: str) -> str:
    text = _DOTTED.sub(lambda m: _dotted(text, m), text)
    text = _SLASHED.sub(lambda m: "threeregime/" + MOVES[m.group(1).replace("/", ".")]
                        .replace(".", "/") + ".py", text)
    return _FROM.sub(_from, text)


def main(argv: list[str]) -> int:
    for name in argv:
        p = Path(name)
        s = p.read_text()
        t = rewrite(s)
        if t != s:
            p.write_text(t)
            print("changed", name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
