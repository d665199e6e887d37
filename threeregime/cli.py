"""Command line: a thin front end over the library.

    threeregime run SWEEP.yaml [--out DIR] [--workers N | --dask ADDRESS | --slurm ...]
    threeregime status DIR_OR_SWEEP.yaml
    threeregime plot RESULTS.nc|DIR [-o FILE.png] [--var lmc]
    threeregime export DIR OUT.nc
    threeregime point POINT.yaml [-o OUT.nc]
    threeregime advise CHECKPOINT.pt --data mnist1d --model cnn1d --density 0.05 \
        --hyperparameter epochs --value 40

User errors print one line (``error: ...``) and exit with status 2; Ctrl-C prints what was
saved and exits with 130.
"""
from __future__ import annotations

import argparse
import signal
import sys
import warnings
from pathlib import Path

from ._errors import ThreeRegimeError, ThreeRegimeWarning


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="threeregime", description="Three-regime model of "
                                 "network pruning: sweeps, regimes, phase diagrams, advice.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run or resume a sweep")
    r.add_argument("sweep", help="sweep YAML file (see sweeps/)")
    r.add_argument("--out", help="sweep directory (default runs/<name>)")
    ex = r.add_mutually_exclusive_group()
    ex.add_argument("--workers", type=int, help="local process pool of N workers")
    ex.add_argument("--dask", metavar="ADDRESS",
                    help="dask.distributed scheduler address, or 'local' for a LocalCluster")
    ex.add_argument("--slurm", metavar="PARTITION", help="submit tasks to Slurm via submitit")
    r.add_argument("--slurm-timeout", type=int, default=60, help="minutes per Slurm task")
    r.add_argument("--threads", type=int, default=None, help="torch threads per process")
    r.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    r.add_argument("--engine", default="vmap", choices=["vmap", "loop"])
    r.add_argument("--max-members", type=int, default=None,
                   help="largest ensemble trained at once (default 12 on CPU, 256 on CUDA)")
    r.add_argument("--memory-budget", type=float, default=None, metavar="GIB",
                   help="memory one ensemble may use, in GiB (default 2 on CPU, 40%% of a GPU)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")

    s = sub.add_parser("status", help="done/pending/failed/diverged counts of a sweep")
    s.add_argument("sweep", help="sweep directory or YAML file")
    s.add_argument("--out", help="sweep directory when a YAML file is given")

    p = sub.add_parser("plot", help="phase diagrams of a results file")
    p.add_argument("results", help="results .nc file or sweep directory")
    p.add_argument("-o", "--output", help="PNG/PDF path (default: next to the results)")
    p.add_argument("--var", help="one variable instead of the four panels")

    e = sub.add_parser("export", help="write a sweep's Dataset as netCDF")
    e.add_argument("sweep", help="sweep directory")
    e.add_argument("output", help="output .nc path")

    pt = sub.add_parser("point", help="run one point end to end")
    pt.add_argument("point", help="point YAML file")
    pt.add_argument("-o", "--output", help="write the point Dataset to this .nc file")
    pt.add_argument("--device", default="auto")

    a = sub.add_parser("advise", help="which way to move a temperature-like hyperparameter")
    a.add_argument("checkpoint", help="a saved state_dict (.pt) of a zoo model, or a sweep "
                   "results file (.nc) with --point")
    a.add_argument("--data", default="mnist1d")
    a.add_argument("--model", default="cnn1d")
    a.add_argument("--batchnorm", action="store_true")
    a.add_argument("--width", type=float, default=1.0)
    a.add_argument("--density", type=float)
    a.add_argument("--hyperparameter", default=None,
                   choices=["epochs", "batch_size", "lr", "sam_rho"],
                   help="default: epochs for a checkpoint, the temperature axis for a .nc")
    a.add_argument("--value", type=float, help="the value the model was trained with")
    a.add_argument("--seeds", type=int, default=3, help="retraining seeds (>= 2)")
    a.add_argument("--epochs", type=int, default=None, help="retraining epochs")
    a.add_argument("--point", action="append", default=[],
                   help="AXIS=VALUE selecting a cell of a results file (repeatable)")
    a.add_argument("--device", default="auto")
    return ap


def _run(args) -> int:
    from .executors import make_executor
    from .spec import load_yaml
    from .sweep import default_out, run_sweep, sweep_status

    spec = load_yaml(args.sweep, kind="sweep")
    out = Path(args.out) if args.out else default_out(spec)
    slurm = None
    if args.slurm:
        slurm = {"folder": str(out / "_submitit"), "slurm_partition": args.slurm,
                 "timeout_min": args.slurm_timeout}
    executor = make_executor(workers=args.workers, dask=args.dask, slurm=slurm,
                             threads=args.threads or 1)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ThreeRegimeWarning)
            ds = run_sweep(spec, out, executor=executor, device=args.device, engine=args.engine,
                           max_members=args.max_members,
                           progress=False if args.quiet else None, threads=args.threads,
                           memory_budget=(args.memory_budget * 2**30 if args.memory_budget
                                          else None))
    except KeyboardInterrupt:
        st = sweep_status(spec, out)
        # one line (after a newline that ends a progress bar, when bars are shown)
        print(f"{'' if args.quiet else chr(10)}interrupted: {st.done}/{st.total} points saved "
              f"in {out}; rerun the same command to continue", file=sys.stderr)
        return 130
    except ThreeRegimeError as e:
        msg = str(e)
        raise type(e)(msg if msg.startswith(str(args.sweep)) else f"{args.sweep}: {msg}") \
            from None
    finally:
        executor.close()
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    st = sweep_status(spec, out)
    print(f"{spec.name}: {st}")
    print(f"results: {out / 'results.nc'}")
    if "regime" in ds:
        print(regime_table(ds))
    return 0 if st.failed == 0 else 1


def regime_table(ds) -> str:
    """The regime of every cell as a text grid: hottest row first, load increasing right."""
    from .regimes import decode, find_dims

    _, temps, loads = find_dims(ds, "regime")
    t_dim, l_dim = temps[0], loads[0]
    names = decode(ds["regime"])
    extra = [d for d in names.dims if d not in (t_dim, l_dim)]
    if extra:  # more than two axes: show the first value of the others
        names = names.isel({d: 0 for d in extra})
    tv = list(ds[t_dim].values)
    if ds[t_dim].attrs.get("hotter") == "increasing":
        tv = tv[::-1]
    lv = list(ds[l_dim].values)
    w = max(8, *(len(f"{v:g}") + 2 for v in lv))
    lines = [f"regimes (rows: {t_dim}, hottest first; columns: {l_dim}; undet. = "
             "undetermined)",
             f"{'':>10s}" + "".join(f"{v:>{w}g}" for v in lv)]
    for t in tv:
        row = names.sel({t_dim: t})
        cells = [str(row.sel({l_dim: v}).values).replace("undetermined", "undet.")
                 for v in lv]
        lines.append(f"{t:>10g}" + "".join(f"{c:>{w}s}" for c in cells))
    return "\n".join(lines)


def _status(args) -> int:
    from .sweep import sweep_status

    print(sweep_status(args.sweep, args.out))
    return 0


def _open(path: str):
    from .storage import open_sweep

    return open_sweep(path)


def _plot(args) -> int:
    from .plotting import PhaseDiagram, plot_phase_diagrams, save

    ds = _open(args.results)
    res = Path(args.results)
    default = (res / "results.png") if res.is_dir() else res.with_suffix(".png")
    out = Path(args.output) if args.output else default
    if args.var:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4.5), constrained_layout=True)
        PhaseDiagram.from_dataset(ds, var=args.var).plot(ax=ax)
    else:
        fig, _ = plot_phase_diagrams(ds)
    save(fig, out)
    print(f"wrote {out}")
    return 0


def _export(args) -> int:
    from .storage import export

    ds = _open(args.sweep)
    path = export(ds, args.output)
    print(f"wrote {path}")
    return 0


def _point(args) -> int:
    from .storage import write_dataset
    from .sweep import run_point

    ds = run_point(args.point, device=args.device)
    cols = ["test_error", "lmc", "cka"]
    for c in cols:
        if c in ds:
            print(f"{c:12s} {float(ds[c].mean()):.4f}")
    if args.output:
        write_dataset(ds, args.output)
        print(f"wrote {args.output}")
    return 0


def _advise(args) -> int:
    from .advise import advise_checkpoint

    adv = advise_checkpoint(args)
    print(adv)
    return 0


_COMMANDS = {"run": _run, "status": _status, "plot": _plot, "export": _export,
             "point": _point, "advise": _advise}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # a second Ctrl-C while cleaning up still stops promptly
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _COMMANDS[args.cmd](args)
    except ThreeRegimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
