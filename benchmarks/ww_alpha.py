"""Weightwatcher's mean layer alpha of every dense model of a sweep (protocol v2's data-free baseline).

Protocol v2 (``docs/validation_protocol_v2.md``, section 3) names a data-free rule a practitioner
might use instead of the three-regime advice: the dense model's mean layer alpha from
``weightwatcher`` (the optional ``compare`` extra), above 6 -> train colder, below 2 -> hotter,
else keep. This script reads the dense checkpoints of a sweep directory (``<sweep>/dense/*/``:
one folder per dense run, ``epoch_NNNN.pt`` snapshots for an epochs axis, ``final.pt`` otherwise)
and writes one row per (temperature value, dense seed)::

    python benchmarks/ww_alpha.py RUNS/v2_epochs --out validation/corpus_v2/v2_epochs_ww_alpha.csv

``benchmarks/regret.py`` reads ``<setting>_ww_alpha.csv`` next to a results file to score the
baseline. Needs ``pip install -c constraints.txt weightwatcher==0.7.7``; CPU, seconds per model.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path


def alpha_of(model) -> tuple[float, int]:
    """Mean weightwatcher alpha over the layers it analyses, and how many it analysed."""
    import weightwatcher as ww

    df = ww.WeightWatcher(model=model).analyze()
    a = df["alpha"].dropna() if len(df) else []
    return (float(a.mean()), int(len(a))) if len(a) else (float("nan"), 0)


def rows(sweep_dir: Path) -> list[dict]:
    import torch

    from threeregime.data.sources import load_data
    from threeregime.models.zoo import build_model
    from threeregime.spec.specs import PointSpec, from_dict

    sweep = json.loads((sweep_dir / "sweep.json").read_text())
    axes = sweep["spec"]["axes"]
    temp = [a for a in axes if a in ("epochs", "batch_size", "lr", "sam_rho")]
    if len(temp) != 1:
        sys.exit(f"{sweep_dir}: expected one temperature axis among epochs, batch_size, lr, "
                 f"sam_rho; got {temp}")
    temp = temp[0]
    out, shape = [], None
    for d in sorted(p for p in (sweep_dir / "dense").iterdir() if (p / "run.json").is_file()):
        run = json.loads((d / "run.json").read_text())
        spec = from_dict(PointSpec, run["spec"])
        if shape is None:
            data = load_data(spec.data)
            shape, classes = data.input_shape, data.num_classes
        if temp == "epochs":
            files = {int(f.stem.split("_")[1]): f for f in d.glob("epoch_*.pt")}
        else:
            files = {getattr(spec.dense, temp): d / "final.pt"}
        for value, f in sorted(files.items()):
            if value not in axes[temp] or not f.is_file():
                continue
            state = torch.load(f, map_location="cpu", weights_only=False)["state"]
            model = build_model(spec.model, shape, classes, seed=0)
            model.load_state_dict(state)
            alpha, n = alpha_of(model.eval())
            out.append({"setting": sweep["name"], "temperature": temp, "value": value,
                        "dense_seed": spec.dense_seed, "alpha": alpha, "n_layers": n})
            print(f"{sweep['name']} {temp}={value} seed {spec.dense_seed}: alpha {alpha:.3f} "
                  f"({n} layer(s))", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir", type=Path, help="a sweep directory (with sweep.json, dense/)")
    ap.add_argument("--out", type=Path, required=True, help="CSV file to write")
    a = ap.parse_args(argv)
    logging.disable(logging.WARNING)          # weightwatcher logs every layer it skips
    r = rows(a.sweep_dir)
    with a.out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(r[0]))
        w.writeheader()
        w.writerows(r)
    print(f"{len(r)} rows -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
