"""Command line: a thin front end over the library.

    threeregime run SWEEP.yaml [--out DIR] [--workers auto|N | --dask ADDRESS | --slurm ...]
    threeregime status DIR_OR_SWEEP.yaml
    threeregime plot RESULTS.nc|DIR [-o FILE.png] [--var lmc]
    threeregime export DIR OUT.nc
    threeregime point POINT.yaml [-o OUT.nc]
    threeregime advise CHECKPOINT.pt --density 0.05 [--data mnist1d --model cnn1d ...]
    threeregime advise RESULTS.nc --point epochs=40 --point density=0.05
    threeregime tune SWEEP.yaml --density 0.1 --budget 3 [--start 16] [--out DIR]

    threeregime table RESULTS.nc|DIR [--rule NAME]
    threeregime plan SWEEP.yaml [--out DIR] [--workers auto|N]

Each command parses its options and calls the library with plain arguments; nothing here
computes. User errors print one line (``error: ...``) and exit with status 2; Ctrl-C prints
what was saved and exits with 130 (:data:`_EXIT_CODES`, shown by ``--help``).  When stderr is
not a terminal (a Slurm log), ``run`` and ``point`` report progress as ``logging`` lines
(INFO, from the package's module loggers) instead of progress bars.
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import warnings
from pathlib import Path

from .errors import SpecError, ThreeRegimeError, ThreeRegimeWarning

_EXIT_CODES = """exit status:
  0    success
  1    run: the sweep finished, but some stage tasks failed (recorded under DIR/failed;
       rerun to retry them)
  2    a user error, reported in one line "error: ..." before any work (bad spec, option,
       file or folder)
  130  interrupted (Ctrl-C); what was saved is kept, the same command continues"""

_RUN_EPILOG = """By default one worker process runs per CPU core, one torch thread each
(on a CPU, small models train 10-20x faster per thread that way than with several threads
in one process); results do not depend on the executor. --workers 1 runs inline.
A sweep directory is content-addressed: rerunning the same command resumes an interrupted
sweep, and an edited spec recomputes only what changed."""

_ADVISE_EPILOG = """A checkpoint is a saved state_dict (torch.save(model.state_dict(), PATH))
of a zoo model (--model, --width, --batchnorm) trained on a data source (--data, its default
sizes). It is pruned to --density, retrained with --seeds seeds, and LMC and CKA are
measured on the seed pairs. The retrained models are stored in --cache-dir, a sweep
directory (default $THREEREGIME_CACHE or ~/.cache/threeregime), so a second call with the
same inputs trains nothing.
A results file (.nc, or a sweep directory) is read instead: --point selects its cell, one
AXIS=VALUE per cell axis, e.g. --point epochs=40 --point density=0.05."""

_TUNE_EPILOG = """Each evaluated cell is the sweep's grid cell at that temperature and --density,
with all its dense seeds, computed by the sweep's stages in its directory (runs/<name>):
models of an earlier 'threeregime run' are reused, and rerunning an interrupted tune resumes
it. The walk stops on keep, a reversal, the grid's edge, a validation error worse than the
previous cell's, or the budget; the chosen point has the lowest validation error (the spec
gets data.val_size when it has none; training and test data are unchanged)."""


def _command(sub, name: str, text: str, *arguments: tuple[str, ...]) -> argparse.ArgumentParser:
    """A sub-command whose arguments are ``(flag, ..., help)`` tuples."""
    cmd = sub.add_parser(name, help=text)
    for *flags, help_text in arguments:
        cmd.add_argument(*flags, help=help_text)
    return cmd


def _device(cmd: argparse.ArgumentParser, default: str | None = "auto") -> None:
    cmd.add_argument("--device", default=default, help="auto (default), cpu, cuda, cuda:N")


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    fmt = argparse.RawDescriptionHelpFormatter
    ap = argparse.ArgumentParser(prog="threeregime", description="Three-regime model of "
                                 "network pruning: sweeps, regimes, phase diagrams, advice.",
                                 epilog="'threeregime COMMAND --help' shows a command's "
                                 f"options.\n\n{_EXIT_CODES}", formatter_class=fmt)
    ap.add_argument("--version", action="version", version=f"threeregime {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run or resume a sweep", epilog=_RUN_EPILOG,
                       formatter_class=fmt, description="Run or resume a sweep; print its "
                       "status and the regime of every cell.")
    r.add_argument("sweep", help="sweep YAML file (see sweeps/)")
    r.add_argument("--out", help="sweep directory (default runs/<name>)")
    ex = r.add_mutually_exclusive_group()
    ex.add_argument("--workers", default="auto", metavar="auto|N",
                    help="local worker processes: auto (default) = one per CPU core, "
                    "1 = inline in this process")
    ex.add_argument("--dask", metavar="ADDRESS",
                    help="dask.distributed scheduler address, or 'local' for a LocalCluster")
    ex.add_argument("--slurm", metavar="PARTITION", help="submit tasks to Slurm via submitit")
    r.add_argument("--slurm-timeout", type=int, default=60, metavar="MIN",
                   help="minutes per Slurm task (default 60)")
    r.add_argument("--threads", type=int, default=None,
                   help="torch threads per process (default 1 on CPU)")
    _device(r)
    r.add_argument("--engine", default="vmap", choices=["vmap", "loop"],
                   help="vmap (default): ensembles as one vectorized model; loop: one model "
                   "at a time, for models vmap cannot run")
    r.add_argument("--max-members", type=int, default=None, metavar="N",
                   help="largest ensemble trained at once (default 12 on CPU, 256 on CUDA)")
    r.add_argument("--memory-budget", type=float, default=None, metavar="GIB",
                   help="memory one ensemble may use, in GiB (default 2 on CPU, 40%% of a GPU)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")

    _command(sub, "status", "done/pending/failed/diverged counts of a sweep",
             ("sweep", "sweep directory or YAML file"),
             ("--out", "sweep directory when a YAML file is given"))
    _command(sub, "plot", "phase diagrams of a results file",
             ("results", "results .nc file or sweep directory"),
             ("-o", "--output", "PNG/PDF path (default: next to the results)"),
             ("--var", "one variable (e.g. lmc) instead of the four panels"))
    _command(sub, "export", "write a sweep's Dataset as netCDF",
             ("sweep", "sweep directory"), ("output", "output .nc path"))
    _device(_command(sub, "point", "run one point end to end", ("point", "point YAML file"),
                     ("-o", "--output", "write the point Dataset to this .nc file")))

    t = _command(sub, "table", "the phase diagram cell by cell as a Markdown table",
                 ("results", "results .nc file or sweep directory"))
    t.add_argument("--rule", default=None, metavar="NAME", help="classify with this rule "
                   "(threeregime.rules.RULES; default: the file's own regimes)")
    pl = sub.add_parser("plan", help="what a sweep would train, and roughly how long",
                        description="Count the dense models, retrainings and measured points "
                        "of a sweep (and how many --out holds already) and estimate the time "
                        "from a short calibration run on this machine. Trains nothing, "
                        "writes nothing.")
    pl.add_argument("sweep", help="sweep YAML file")
    pl.add_argument("--out", help="sweep directory whose finished stages count as cached")
    pl.add_argument("--workers", default="auto", metavar="auto|N",
                    help="worker processes of the run (default auto: one per CPU core)")
    pl.add_argument("--threads", type=int, default=None,
                    help="torch threads per process (default 1 on CPU)")
    pl.add_argument("--engine", default="vmap", choices=["vmap", "loop"],
                    help="training engine of the run (default vmap)")
    pl.add_argument("--no-calibrate", action="store_true",
                    help="counts only: build no model, time nothing")
    _device(pl)

    a = sub.add_parser("advise", help="which way to move a temperature-like hyperparameter",
                       epilog=_ADVISE_EPILOG, formatter_class=fmt,
                       description="Advise which way to move a temperature-like "
                       "hyperparameter before pruning to a density: hotter (Regime I), "
                       "colder (II-A) or keep (II-B).")
    a.add_argument("checkpoint", help="a saved state_dict (.pt) of a zoo model, or a sweep "
                   "results file (.nc) / sweep directory with --point")
    a.add_argument("--data", default=None, help="data source the model was trained on "
                   "(default mnist1d)")
    a.add_argument("--model", default=None, help="zoo architecture (default cnn1d)")
    a.add_argument("--batchnorm", action="store_true", help="the model has BatchNorm")
    a.add_argument("--width", type=float, default=None, help="width multiplier (default 1)")
    a.add_argument("--density", type=float,
                   help="target density in (0, 1]: fraction of prunable weights kept "
                   "(required for a checkpoint)")
    a.add_argument("--hyperparameter", default=None,
                   choices=["epochs", "batch_size", "lr", "sam_rho"],
                   help="default: epochs for a checkpoint, the temperature axis for a .nc")
    a.add_argument("--value", type=float, help="the value the model was trained with "
                   "(reported only)")
    a.add_argument("--seeds", type=int, default=None, help="retraining seeds (>= 2; default 3)")
    a.add_argument("--epochs", type=int, default=None,
                   help="retraining epochs (default 40; fewer: a quicker, noisier answer)")
    a.add_argument("--point", action="append", default=[], metavar="AXIS=VALUE",
                   help="a cell coordinate of a results file (repeat for every cell axis)")
    a.add_argument("--prune", default=None, metavar="METHOD",
                   help="pruning method: magnitude (default), global, lamp, random, nm_N_M "
                   "(e.g. nm_2_4: N:M sparse retraining), channel (structured)")
    a.add_argument("--cka-inputs", default=None, choices=["train", "test"],
                   help="inputs of CKA: train (default, as the paper: the first 6400 "
                   "training inputs) or test")
    a.add_argument("--rule", default=None, metavar="NAME",
                   help="regime rule (threeregime.analysis.rules.RULES); default: the library's "
                   "default rule, for a checkpoint as for a results file")
    a.add_argument("--cache-dir", metavar="DIR", default=None,
                   help="store of the retrained models, a sweep directory (default "
                   "$THREEREGIME_CACHE or ~/.cache/threeregime)")
    _device(a, default=None)     # (None: "auto"; only a checkpoint uses it)

    t = sub.add_parser("tune", help="tune the temperature of a sweep's base point for pruning",
                       formatter_class=fmt, epilog=_TUNE_EPILOG,
                       description="Walk the sweep's temperature axis by the advice at each "
                       "evaluated cell; print the walk and the point chosen by validation "
                       "error.")
    t.add_argument("sweep", help="sweep YAML file: its base point and temperature grid")
    t.add_argument("--density", type=float, required=True, help="density to prune to, (0, 1]")
    t.add_argument("--budget", type=int, required=True, help="most cells evaluated (>= 1)")
    t.add_argument("--start", type=float, default=None,
                   help="start value on the axis grid (default: the base point's)")
    t.add_argument("--axis", default=None, help="temperature axis (when the spec has several)")
    t.add_argument("--out", help="store, a sweep directory (default runs/<name>)")
    t.add_argument("--rule", default=None, metavar="NAME", help="regime rule (default: the "
                   "library's default rule)")
    t.add_argument("--val-size", type=int, default=None, metavar="N",
                   help="validation examples when the spec sets no data.val_size (1000)")
    t.add_argument("--workers", default="1", metavar="auto|N",
                   help="local worker processes (default 1: inline)")
    t.add_argument("--ensembles", default="cell", choices=("cell", "dense"),
                   help="retrain all of a cell's models as one ensemble (cell, the default) "
                   "or one ensemble per dense run (dense: the grouping of releases before "
                   "it; numbers agree to float rounding amplified by training)")
    t.add_argument("--plot", metavar="FILE.png", default=None,
                   help="draw the walk on the visited column's phase diagram")
    _device(t)
    return ap


def _run(args) -> int:
    from .spec.specs import load_yaml
    from .sweep.driver import default_out, run_sweep, sweep_status
    from .sweep.executors import make_executor

    for flag, v, ok, allowed in (
            ("--threads", args.threads, args.threads is None or args.threads >= 1,
             "an integer >= 1"),
            ("--memory-budget", args.memory_budget,
             args.memory_budget is None or args.memory_budget > 0, "a number of GiB > 0"),
            ("--slurm-timeout", args.slurm_timeout, args.slurm_timeout >= 1,
             "an integer >= 1 (minutes)")):
        if not ok:
            raise SpecError(f"{flag} must be {allowed}; got {v:g}")
    spec = load_yaml(args.sweep, kind="sweep")
    out = Path(args.out) if args.out else default_out(spec)
    slurm = None
    if args.slurm:
        slurm = {"folder": str(out / "_submitit"), "slurm_partition": args.slurm,
                 "timeout_min": args.slurm_timeout}
    executor = make_executor(workers=args.workers, dask=args.dask, slurm=slurm,
                             threads=args.threads or 1)
    memory_budget = args.memory_budget * 2**30 if args.memory_budget else None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ThreeRegimeWarning)
            ds = run_sweep(spec, out, executor=executor, device=args.device, engine=args.engine,
                           max_members=args.max_members,
                           progress=False if args.quiet else None, threads=args.threads,
                           memory_budget=memory_budget)
    except KeyboardInterrupt:
        st = sweep_status(spec, out)
        # one line (after a newline that ends a progress bar, when bars are shown)
        print(f"{'' if args.quiet else chr(10)}interrupted: {st.done}/{st.total} points saved "
              f"in {out}; rerun the same command to continue", file=sys.stderr)
        return 130
    except ThreeRegimeError as e:
        msg = str(e)
        prefixed = msg if msg.startswith(str(args.sweep)) else f"{args.sweep}: {msg}"
        raise type(e)(prefixed) from None
    finally:
        executor.close()
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    st = sweep_status(spec, out, results=ds)
    print(f"{spec.name}: {st}")
    print(f"results: {out / 'results.nc'}")
    if "regime" in ds:
        print(regime_table(ds))
    return 0 if st.failed == 0 else 1


def regime_table(ds) -> str:
    """The regime of every cell as a text grid: hottest row first, load increasing right; one
    grid per value of any further axis (e.g. each pruning method)."""
    import itertools

    from .analysis.features import find_dims
    from .analysis.regimes import decode

    _, temps, loads = find_dims(ds, "regime")
    t_dim, l_dim = temps[0], loads[0]
    names = decode(ds["regime"])
    extra = [d for d in names.dims if d not in (t_dim, l_dim)]
    tv = list(ds[t_dim].values)
    if ds[t_dim].attrs.get("hotter") == "increasing":
        tv = tv[::-1]
    lv = list(ds[l_dim].values)
    w = max(11, *(len(f"{v:g}") + 2 for v in lv))
    lines = [f"regimes (rows: {t_dim}, hottest first; columns: {l_dim}; undet. = "
             "undetermined)"]
    for combo in itertools.product(*(list(names[d].values) for d in extra)):
        sub = names.sel(dict(zip(extra, combo)))
        if extra:
            lines.append(", ".join(f"{d} = {v}" for d, v in zip(extra, combo)))
        lines.append(f"{'':>10s}" + "".join(f"{v:>{w}g}" for v in lv))
        for t in tv:
            row = sub.sel({t_dim: t})
            cells = [str(row.sel({l_dim: v}).values).replace("undetermined", "undet.")
                     .replace("II-unresolved", "II-unres.") for v in lv]
            lines.append(f"{t:>10g}" + "".join(f"{c:>{w}s}" for c in cells))
    return "\n".join(lines)


def _status(args) -> int:
    from .sweep.driver import sweep_status

    print(sweep_status(args.sweep, args.out))
    return 0


def _open(path: str):
    from .results.storage import open_sweep

    return open_sweep(path)


def _plot(args) -> int:
    from .analysis.plotting import PhaseDiagram, plot_phase_diagrams, save
    from .results.paths import check_output_path

    res = Path(args.results)
    default = (res / "results.png") if res.is_dir() else res.with_suffix(".png")
    out = check_output_path(args.output or default, (".png", ".pdf", ".svg"), "--output")
    ds = _open(args.results)
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
    from .results.paths import check_output_path
    from .results.storage import export

    check_output_path(args.output)
    ds = _open(args.sweep)
    path = export(ds, args.output)
    print(f"wrote {path}")
    return 0


def _point(args) -> int:
    from .results.paths import check_output_path
    from .results.storage import write_dataset
    from .sweep.driver import run_point

    if args.output:
        check_output_path(args.output, name="--output")
    ds = run_point(args.point, device=args.device)
    cols = ["test_error", "lmc", "cka"]
    for c in cols:
        if c in ds:
            print(f"{c:12s} {float(ds[c].mean()):.4f}")
    if args.output:
        write_dataset(ds, args.output)
        print(f"wrote {args.output}")
    return 0


#: advise options that only a checkpoint uses, and their defaults (None in the parser, so that
#: one given with a results file is told apart from its default)
_CHECKPOINT_ONLY = {"data": "mnist1d", "model": "cnn1d", "width": 1.0, "density": None,
                    "value": None, "seeds": 3, "epochs": None, "prune": "magnitude",
                    "cka_inputs": "train", "cache_dir": None, "device": "auto"}


@contextlib.contextmanager
def _warnings_as_lines():
    """The library's warnings printed at once as ``warning: ...`` lines on stderr (not turned
    into errors, not with a source line)."""
    def show(message, category, *rest, **kw):
        print(f"warning: {message}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.simplefilter("always", ThreeRegimeWarning)
        warnings.showwarning = show
        yield


def _advise(args) -> int:
    from .analysis.advice import check_density, parse_point
    from .analysis.rules import get_rule

    path = Path(args.checkpoint)
    if args.rule is not None:
        get_rule(args.rule)                      # an unknown rule: before any work
    point = parse_point(args.point)
    if path.suffix == ".nc" or path.is_dir():
        from .analysis.advice import advise_dataset

        given = [k for k in _CHECKPOINT_ONLY if getattr(args, k) is not None]
        given += ["batchnorm"] if args.batchnorm else []
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise SpecError(f"{flag} is only used with a checkpoint; a results file's cell is "
                            "chosen with --point AXIS=VALUE (e.g. --point density=0.05)")
        adv = advise_dataset(_open(args.checkpoint), point,
                             hyperparameter=args.hyperparameter, rule=args.rule)
    else:
        from .advisor import advise, load_checkpoint
        from .spec.specs import TrainSpec

        if args.point:
            raise SpecError(f"--point is only used with a results .nc file; got a checkpoint "
                            f"{path.name}")
        for k, default in _CHECKPOINT_ONLY.items():
            if getattr(args, k) is None:
                setattr(args, k, default)
        if args.density is None:
            raise SpecError("--density must be given for a checkpoint (a number in (0, 1]); "
                            "got none")
        check_density(args.density)
        retrain = TrainSpec(epochs=args.epochs) if args.epochs is not None else None
        model, data = load_checkpoint(path, data=args.data, model=args.model,
                                      width=args.width, batchnorm=args.batchnorm)
        with _warnings_as_lines():
            adv = advise(model, data, target_density=args.density,
                         hyperparameter=args.hyperparameter or "epochs", value=args.value,
                         seeds=args.seeds, retrain=retrain, cache_dir=args.cache_dir,
                         prune=args.prune, rule=args.rule, cka_inputs=args.cka_inputs,
                         device=args.device)
    print(adv)
    return 0


def _tune(args) -> int:
    from .sweep.executors import make_executor
    from .tuning_run import tune

    executor = make_executor(workers=args.workers)
    start = args.start
    if start is not None and float(start).is_integer():
        start = int(start)
    try:
        res = tune(args.sweep, density=args.density, budget=args.budget, start=start,
                   axis=args.axis, out=args.out, rule=args.rule, val_size=args.val_size,
                   executor=executor, device=args.device, ensembles=args.ensembles)
    except KeyboardInterrupt:
        print("\ninterrupted: finished cells are saved; rerun the same command to continue",
              file=sys.stderr)
        return 130
    finally:
        executor.close()
    print(res)
    print(res.advise())
    if args.plot:
        from .analysis.plotting import save

        art, _ = res.plot()
        save(art.figure, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _table(args) -> int:
    from .analysis.rules import get_rule
    from .analysis.tables import results_table

    if args.rule is not None:
        get_rule(args.rule)
    print(results_table(_open(args.results), rule=args.rule))
    return 0


def _plan(args) -> int:
    from .spec.specs import load_yaml
    from .sweep.estimate import plan_report
    from .sweep.executors import resolve_workers

    workers = resolve_workers(args.workers)
    if args.threads is not None and args.threads < 1:
        raise SpecError(f"--threads must be an integer >= 1; got {args.threads}")
    if args.out is not None and not Path(args.out).is_dir():
        raise SpecError(f"--out {args.out}: no such sweep directory (nothing is cached)")
    spec = load_yaml(args.sweep, kind="sweep")
    print(plan_report(spec, args.out, workers=workers, device=args.device,
                      threads=args.threads, engine=args.engine,
                      calibrate=not args.no_calibrate))
    return 0


_COMMANDS = {"run": _run, "status": _status, "plot": _plot, "export": _export,
             "point": _point, "advise": _advise, "tune": _tune, "table": _table, "plan": _plan}


@contextlib.contextmanager
def _progress_log(args):
    """INFO lines of the package's loggers on stderr while a ``run`` or ``point`` works, when
    stderr is not a terminal (a Slurm log has no progress bars) and ``--quiet`` is not given;
    nothing is configured otherwise."""
    import logging

    on = (args.cmd in ("run", "point") and not getattr(args, "quiet", False)
          and not sys.stderr.isatty())
    if not on:
        yield
        return
    log = logging.getLogger("threeregime")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s",
                                           "%Y-%m-%d %H:%M:%S"))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``threeregime`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    # a second Ctrl-C while cleaning up still stops promptly
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with _progress_log(args):
            return _COMMANDS[args.cmd](args)
    except ThreeRegimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
