"""The bad-input catalogue (GitHub issue #7): every case gets ONE line naming the file or field,
the value, and what to do; the command line exits with status 2 without a traceback; nothing
already saved is touched (file hashes before == after).
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from threeregime import SpecError
from threeregime.cli import main
from threeregime.errors import DataError, ResultsError, ThreeRegimeWarning
from threeregime.spec.specs import SweepSpec, from_dict, load_yaml
from threeregime.sweep.plan import Store

BASE = """\
name: bad
base:
  data: {name: mnist1d, train_size: 64, test_size: 32}
  model: {name: cnn1d, width: 0.25}
  dense: {epochs: 2, batch_size: 32}
  retrain: {epochs: 1, batch_size: 32}
  retrain_seeds: [0, 1]
  measure: {lmc_points: 3, eval_batch_size: 64}
axes:
  epochs: [1, 2]
  density: [0.2, 0.5]
"""


def _edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


# (id, YAML text, regex the one-line message must match after "<file>: ")
SPEC_CASES = [
    ("malformed-yaml", "name: t\nbase: {data: [\n", r"malformed YAML at line 3, column 1"),
    ("tab-indent", "name: t\n\tbase: 1\n", r"malformed YAML at line 2.*'\\t'"),
    ("not-a-mapping", "- 1\n- 2\n", r"must contain a mapping of spec fields; got list"),
    ("empty-file", "", r"the file is empty; write a sweep"),
    ("duplicate-key", BASE + "name: again\n",
     r"duplicate key 'name' at line 12 \(first at line 1\)"),
    ("unhashable-key", "name: t\n? [1, 2]\n: 3\n", r"malformed YAML at line 2, column 3: found unhashable key"),
    ("point-spec-to-run", "data: {name: mnist1d}\nretrain_seeds: [0, 1]\n",
     r"is a point spec \(no axes\); run it with `threeregime point"),
    ("unknown-top-key", _edit("name: bad", "nmae: bad"),
     r"nmae: unknown key \(did you mean 'name'\?\); allowed: axes, base"),
    ("unknown-nested-key", _edit("retrain_seeds:", "retrain_seed:"),
     r"base.retrain_seed: unknown key \(did you mean 'retrain_seeds'\?\)"),
    ("unknown-train-key", _edit("{epochs: 2, batch", "{epoch: 2, batch"),
     r"base.dense.epoch: unknown key \(did you mean 'epochs'\?\)"),
    ("unknown-axis", _edit("density: [", "densty: ["),
     r"axes.densty is not a sweepable axis \(did you mean 'density'\?\); allowed: epochs"),
    ("axis-model-cannot-vary", _edit("density: [", "width: ["),
     r"axes.width is not a sweepable axis; allowed: epochs, batch_size, lr"),
    ("batch-axis-without-iterations", _edit("epochs: [1, 2]", "batch_size: [16, 32]"),
     (r"axes.batch_size\[0\]: the batch_size axis keeps the iteration budget fixed: set "
     r"base.dense.iterations")),
    ("epochs-axis-beyond-run", _edit("epochs: [1, 2]", "epochs: [1, 5]"),
     r"axes.epochs\[1\]: epochs value 5 exceeds base.dense.epochs \(2\)"),
    ("wrong-type-int", _edit("{epochs: 2, batch", "{epochs: two, batch"),
     r"base.dense.epochs must be an integer; got 'two'"),
    ("wrong-type-bool", _edit("width: 0.25", "width: 0.25, batchnorm: maybe"),
     r"base.model.batchnorm must be true or false; got 'maybe'"),
    ("wrong-type-float", _edit("{epochs: 2, batch", "{lr: fast, epochs: 2, batch"),
     r"base.dense.lr must be a number; got 'fast'"),
    ("base-not-mapping", "name: t\nbase: 3\naxes: {density: [0.5]}\n",
     r"base must be a mapping of PointSpec fields; got 3"),
    ("axes-not-mapping", BASE.split("axes:")[0] + "axes: [density]\n",
     r"axes must be a mapping; got \['density'\]"),
    ("density-above-1", _edit("[0.2, 0.5]", "[0.2, 1.5]"),
     r"axes.density\[1\]: density must be a number in \(0, 1\]; got 1.5"),
    ("density-zero", _edit("[0.2, 0.5]", "[0.0, 0.5]"),
     r"axes.density\[0\]: density must be a number in \(0, 1\]; got 0.0"),
    ("negative-lr", _edit("{epochs: 2, batch", "{lr: -0.1, epochs: 2, batch"),
     r"base.dense.lr must be a number in \(0, inf\]; got -0.1"),
    ("nan-lr", _edit("{epochs: 2, batch", "{lr: .nan, epochs: 2, batch"),
     r"base.dense.lr must be a number in \(0, inf\]; got nan"),
    ("momentum-1", _edit("{epochs: 2, batch", "{momentum: 1.0, epochs: 2, batch"),
     r"base.dense.momentum must be a number in \[0, 1\); got 1.0"),
    ("zero-width", _edit("width: 0.25", "width: 0"),
     r"base.model.width must be a number in \(0, inf\]; got 0.0"),
    ("zero-train-size", _edit("train_size: 64", "train_size: 0"),
     r"base.data.train_size must be an integer >= 1 or null; got 0"),
    ("milestone-out-of-range", _edit("{epochs: 2, batch", "{milestones: [0.5, 1.5], epochs: 2, batch"),
     r"base.dense.milestones\[1\] must be a number in \(0, 1\); got 1.5"),
    ("lmc-points-1", _edit("lmc_points: 3", "lmc_points: 1"),
     r"base.measure.lmc_points must be an integer >= 2; got 1"),
    ("empty-axis", _edit("[0.2, 0.5]", "[]"), r"axes.density must list at least one value; got \[\]"),
    ("duplicate-axis-values", _edit("[0.2, 0.5]", "[0.2, 0.2]"),
     r"axes.density has duplicate values \[0.2\]; each value must appear once"),
    ("scalar-axis", _edit("[0.2, 0.5]", "0.2"),
     r"axes.density must be a non-empty list of values; got 0.2"),
    ("string-axis-value", _edit("[0.2, 0.5]", "[0.2, high]"),
     r"axes.density\[1\] must be a number; got 'high'"),
    ("float-in-int-axis", _edit("epochs: [1, 2]", "epochs: [1, 1.5]"),
     r"axes.epochs\[1\] must be an integer; got 1.5"),
    ("no-axes", BASE.split("axes:")[0] + "axes: {}\n",
     r"axes must name at least one axis; got \{\}; allowed: epochs"),
    ("unknown-prune-method", _edit("retrain_seeds", "prune: {method: magnitud}\n  retrain_seeds"),
     (r"base.prune.method must be one of magnitude, global, lamp, random, nm, channel, nm_N_M; "
      r"got 'magnitud' \(did you mean 'magnitude'\?\)")),
    ("bad-nm", _edit("retrain_seeds", "prune: {method: nm, nm: '4:2', density: 0.5}\n  retrain_seeds"),
     r"base.prune.nm must be 'N:M' with 0 < N <= M \(e.g. '2:4'\); got '4:2'"),
    ("duplicate-retrain-seeds", _edit("retrain_seeds: [0, 1]", "retrain_seeds: [0, 0]"),
     r"base.retrain_seeds must be distinct; got \[0, 0\]"),
    ("negative-seed", _edit("retrain_seeds: [0, 1]", "retrain_seeds: [0, -1]"),
     r"base.retrain_seeds\[1\] must be an integer >= 0; got -1"),
    ("duplicate-dense-seeds", BASE + "dense_seeds: [1, 1]\n",
     r"dense_seeds must be a non-empty list of distinct seeds; got \[1, 1\]"),
    ("bad-sweep-name", _edit("name: bad", "name: 'a b/c'"),
     r"name must be a non-empty name of letters, digits, '_' or '-'; got 'a b/c'"),
    ("unknown-schedule", _edit("{epochs: 2, batch", "{schedule: cosin, epochs: 2, batch"),
     (r"base.dense.schedule must be one of step, cosine, constant; got 'cosin' \(did you mean "
     r"'cosine'\?\)")),
    ("unknown-retrain-mode", _edit("retrain_seeds", "retrain_mode: rewnd\n  retrain_seeds"),
     (r"base.retrain_mode must be one of finetune, rewind, reinit, scratch; got 'rewnd' \(did you mean "
     r"'rewind'\?\)")),
    ("unknown-cka-inputs", _edit("lmc_points: 3", "lmc_points: 3, cka_inputs: valid"),
     r"base.measure.cka_inputs must be one of test, train; got 'valid'"),
]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run_inline(*args: str) -> int:
    """``threeregime run ARGS --workers 1``: stages run in this process, so a monkeypatch
    (``os.replace``, ``os.access``, ...) reaches them; the default is a process pool."""
    return main(["run", *args, "--workers", "1"])


def _one_line(text: str) -> str:
    assert "Traceback" not in text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line, got {text!r}"
    return lines[0]


# --------------------------------------------------------------------------- spec files
@pytest.mark.parametrize(("text", "pattern"), [c[1:] for c in SPEC_CASES],
                         ids=[c[0] for c in SPEC_CASES])
def test_spec_file_errors_api(tmp_path, text, pattern):
    f = tmp_path / "sweep.yaml"
    f.write_text(text)
    with pytest.raises(SpecError) as info:
        load_yaml(f, kind="sweep")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{f}: "), msg           # names the file ...
    assert re.search(pattern, msg), msg            # ... the field, the value, what is allowed


@pytest.mark.parametrize(("text", "pattern"), [c[1:] for c in SPEC_CASES],
                         ids=[c[0] for c in SPEC_CASES])
def test_spec_file_errors_cli(tmp_path, capsys, text, pattern):
    f = tmp_path / "sweep.yaml"
    f.write_text(text)
    out = tmp_path / "out"
    assert run_inline(str(f), "--out", str(out), "--quiet") == 2
    err = _one_line(capsys.readouterr().err)
    import re
    assert err.startswith(f"error: {f}: ") and re.search(pattern, err), err
    assert not out.exists()                        # nothing created for a bad spec


def test_cli_subprocess_exit_2_without_traceback(tmp_path):
    f = tmp_path / "sweep.yaml"
    f.write_text(_edit("density: [", "densty: ["))
    r = subprocess.run([sys.executable, "-m", "threeregime", "run", str(f), "--quiet"],
                       capture_output=True, text=True, check=False, cwd=tmp_path)
    assert r.returncode == 2
    assert _one_line(r.stderr) == (
        f"error: {f}: axes.densty is not a sweepable axis (did you mean 'density'?); allowed: "
        "epochs, batch_size, lr, sam_rho, density, train_size, prune_method, retrain_mode")
    r = subprocess.run([sys.executable, "-m", "threeregime", "run", str(tmp_path / "nope.yaml")],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 2
    assert _one_line(r.stderr) == f"error: {tmp_path / 'nope.yaml'}: spec file not found"


# --------------------------------------------------------------------------- specs that only the
# data/model registries can judge: caught before any work or any file
def _spec(**base_edits) -> SweepSpec:
    import yaml

    raw = yaml.safe_load(BASE)
    for path, value in base_edits.items():
        node = raw["base"]
        *head, last = path.split("__")
        for h in head:
            node = node.setdefault(h, {})
        node[last] = value
    return from_dict(SweepSpec, raw)


RUNTIME_CASES = [
    ("unknown-data", {"data__name": "mnist2d"}, SpecError,
     r"^base.data.name: unknown data source 'mnist2d' \(did you mean 'mnist1d'\?\); known: "),
    ("unknown-model", {"model__name": "cnn2d"}, SpecError,
     r"^base.model.name: unknown model 'cnn2d' \(did you mean 'cnn1d'\?\); known: cnn1d"),
    ("unknown-model-option", {"model__options": {"hiden": [3]}}, SpecError,
     r"^base.model.options.hiden: unknown option for model 'cnn1d'; allowed: "),
    ("no-prunable-layers", {"model__name": "mlp", "model__options": {"hidden": []},
                            "model__width": 1.0}, SpecError,
     r"^base.model: model has no prunable layers .* besides the classifier.*prune_classifier"),
    ("data-smaller-than-batch", {"data__train_size": 16}, DataError,
     r"^base.dense.batch_size must be <= the 16 training examples of mnist1d; got 32 "),
]


@pytest.mark.parametrize(("edits", "exc", "pattern"), [c[1:] for c in RUNTIME_CASES],
                         ids=[c[0] for c in RUNTIME_CASES])
def test_runtime_spec_errors_before_any_work(tmp_path, edits, exc, pattern):
    from threeregime.sweep.driver import run_sweep

    out = tmp_path / "out"
    with pytest.raises(exc, match=pattern) as info:
        run_sweep(_spec(**edits), out, device="cpu", progress=False)
    assert "\n" not in str(info.value)
    assert not out.exists()


def test_run_options_errors(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(BASE)
    assert run_inline(str(f), "--out", str(tmp_path / "o"), "--max-members", "0") == 2
    assert _one_line(capsys.readouterr().err) == (
        f"error: {f}: max_members must be an integer >= 1; got 0")
    assert run_inline(str(f), "--out", str(tmp_path / "o"), "--device", "gpu") == 2
    assert _one_line(capsys.readouterr().err) == (
        f"error: {f}: device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got 'gpu'")


# --------------------------------------------------------------------------- results on disk
@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A finished tiny sweep (computed once); tests work on copies."""
    pytest.importorskip("torch")
    from threeregime.sweep.driver import run_sweep

    d = tmp_path_factory.mktemp("done")
    spec = d / "bad.yaml"
    spec.write_text(BASE)
    run_sweep(spec, d / "out", device="cpu", progress=False, threads=1)
    return spec, d / "out"


@pytest.fixture
def copy(done, tmp_path):
    spec, out = done
    work = tmp_path / "work"
    shutil.copytree(out, work)
    return spec, work


def _dense_path(root, key, epoch):
    return Store(root).dense(key, epoch)


def _retrain_path(root, key):
    return Store(root).retrain(key)


def _point_path(root, key):
    return Store(root).point(key)


def _plan(spec):
    from threeregime.sweep.plan import plan_sweep

    return plan_sweep(load_yaml(spec))


def test_truncated_checkpoint(copy):
    from threeregime.sweep.driver import run_sweep

    spec, work = copy
    pj = _plan(spec).points[0]
    ck = _retrain_path(work, pj.retrain_keys[0])
    ck.write_bytes(ck.read_bytes()[:100])            # truncated
    _point_path(work, pj.key).unlink()               # so the point needs that checkpoint
    before = _hashes(work)
    before.pop("results.nc")
    with pytest.warns(ThreeRegimeWarning, match=(
            rf"measure: ResultsError: checkpoint {ck} is corrupt or truncated \(\w+\); delete "
            "it to recompute that stage")):
        ds = run_sweep(spec, work, device="cpu", progress=False, threads=1)
    assert int((ds["status"] == 3).sum()) == 1       # that point marked missing, others kept
    after = _hashes(work)
    assert all(after[k] == v for k, v in before.items())
    # the advised fix works: delete it, rerun
    ck.unlink()
    ds = run_sweep(spec, work, device="cpu", progress=False, threads=1)
    assert int((ds["status"] == 0).sum()) == 4


def test_garbage_checkpoint_cli(copy, capsys):
    spec, work = copy
    pj = _plan(spec).points[0]
    dense = _dense_path(work, pj.dense_key, pj.source)
    dense.write_bytes(b"not a checkpoint at all")
    _point_path(work, pj.key).unlink()
    before = _hashes(work)
    before.pop("results.nc")
    assert _retrain_path(work, pj.retrain_keys[0]).exists()
    assert run_inline(str(spec), "--out", str(work), "--quiet") == 1   # a stage failed
    captured = capsys.readouterr()
    err = _one_line(captured.err)
    assert err.startswith("warning: 1 stage task(s) failed")
    assert f"checkpoint {dense} is corrupt or truncated" in err and "delete it to recompute" in err
    assert "3/4 points done" in captured.out and "1 failed" in captured.out
    assert all(_hashes(work)[k] == v for k, v in before.items())


def test_truncated_point_file(copy, capsys):
    from threeregime.sweep.driver import assemble

    spec, work = copy
    pj = _plan(spec).points[1]
    pt = _point_path(work, pj.key)
    pt.write_bytes(pt.read_bytes()[:200])
    before = _hashes(work)
    with pytest.raises(ResultsError, match=rf"^{pt}: corrupt or unreadable results file "
                       r"\(\w+\); delete it to recompute$"):
        assemble(load_yaml(spec), work)
    assert run_inline(str(spec), "--out", str(work), "--quiet") == 2
    err = _one_line(capsys.readouterr().err)
    assert re.fullmatch(rf"error: {spec}: {pt}: corrupt or unreadable results file \(\w+\); "
                        "delete it to recompute", err), err
    assert _hashes(work) == before


def test_truncated_results_file(copy, capsys):
    spec, work = copy
    res = work / "results.nc"
    res.write_bytes(res.read_bytes()[:300])
    with pytest.raises(ResultsError, match=r"results.nc: corrupt or unreadable results file"):
        import threeregime

        threeregime.open_sweep(work)
    assert main(["plot", str(work)]) == 2
    assert "corrupt or unreadable results file" in _one_line(capsys.readouterr().err)
    # a rerun rebuilds it from the point files (they are the truth)
    from threeregime.sweep.driver import run_sweep

    ds = run_sweep(spec, work, device="cpu", progress=False, threads=1)
    assert int((ds["status"] == 0).sum()) == 4


def test_corrupt_sweep_json(copy, capsys):
    _, work = copy
    (work / "sweep.json").write_text('{"name": "bad", "spec": {')
    before = _hashes(work)
    assert main(["status", str(work)]) == 2
    err = _one_line(capsys.readouterr().err)
    assert err.startswith(f"error: {work / 'sweep.json'} is unreadable or corrupt (")
    assert _hashes(work) == before


def test_directory_of_a_different_sweep(copy, tmp_path, capsys):
    _, work = copy
    other = tmp_path / "other.yaml"
    other.write_text(_edit("name: bad", "name: other"))
    before = _hashes(work)
    assert run_inline(str(other), "--out", str(work), "--quiet") == 2
    assert _one_line(capsys.readouterr().err) == (
        f"error: {other}: {work} holds sweep 'bad', not 'other'; choose another --out "
        "directory (or rename the sweep)")
    assert _hashes(work) == before


def test_not_a_sweep_directory(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"error: {tmp_path} is not a sweep directory (no sweep.json); run `threeregime run "
        "SWEEP.yaml --out DIR` first")
    assert main(["plot", str(tmp_path / "missing.nc")]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"error: {tmp_path / 'missing.nc'}: no such results file or sweep folder")
    assert main(["export", str(tmp_path), str(tmp_path / "x.nc")]) == 2
    assert "no results.nc in this sweep folder" in _one_line(capsys.readouterr().err)


def test_disk_full(copy, monkeypatch, capsys):
    spec, work = copy
    pj = _plan(spec).points[2]
    _point_path(work, pj.key).unlink()
    before = _hashes(work)

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    assert run_inline(str(spec), "--out", str(work), "--quiet") == 2
    err = _one_line(capsys.readouterr().err)
    assert err.startswith(f"error: {spec}: cannot write {work}/")
    assert err.endswith("No space left on device (check free disk space and write permission "
                        "of the output directory)")
    monkeypatch.undo()
    assert _hashes(work) == before                   # nothing harmed, no temp file left
    assert not list(work.rglob("*.tmp"))


def test_read_only_output_directory(copy, tmp_path, monkeypatch, capsys):
    spec, work = copy
    before = _hashes(work)
    if os.geteuid() != 0:
        work.chmod(0o555)
        try:
            assert run_inline(str(spec), "--out", str(work), "--quiet") == 2
        finally:
            work.chmod(0o755)
    else:  # root ignores permissions: simulate what the OS would say
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m, **k: False if Path(p) == work
                            else real(p, m, **k))
        assert run_inline(str(spec), "--out", str(work), "--quiet") == 2
    assert _one_line(capsys.readouterr().err) == (
        f"error: {spec}: output directory {work} is not writable; choose another --out")
    assert _hashes(work) == before


def test_output_directory_cannot_be_created(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(BASE)
    target = tmp_path / "ro" / "out"

    def denied(self, *a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    monkeypatch.setattr(Path, "mkdir", denied)
    assert run_inline(str(spec), "--out", str(target), "--quiet") == 2
    assert _one_line(capsys.readouterr().err) == (
        f"error: {spec}: cannot create output directory {target}: Permission denied; choose "
        "another --out")


def test_catalogue_size():
    # 43 spec files + 5 registry-level specs + 11 results/disk cases above
    assert len(SPEC_CASES) + len(RUNTIME_CASES) >= 30


# --------------------------------------------------------------------------- every CLI path,
# before any work (issue 20): one line, nothing created
@pytest.fixture
def untrained_checkpoint(tmp_path):
    """A full-width cnn1d, never trained (chance level on MNIST-1D), saved as a state dict."""
    torch = pytest.importorskip("torch")
    from threeregime.data.sources import load_data
    from threeregime.models.zoo import build_model
    from threeregime.spec.specs import DataSpec, ModelSpec

    data = load_data(DataSpec(name="mnist1d"))
    m = build_model(ModelSpec(name="cnn1d"), data.input_shape, data.num_classes, seed=0)
    ck = tmp_path / "model.pt"
    torch.save(m.state_dict(), ck)
    return ck


def _no_stages(monkeypatch):
    """Fail the test if advise gets as far as retraining."""
    from threeregime import advisor as C

    def never(*a, **k):
        raise AssertionError("advise retrained before rejecting its arguments")
    monkeypatch.setattr(C, "_run_stages", never)


def test_advise_unknown_rule_before_any_training(untrained_checkpoint, tmp_path, capsys,
                                                 monkeypatch):
    from threeregime.analysis.rules import RULES

    _no_stages(monkeypatch)
    cache = tmp_path / "cache"
    before = _hashes(tmp_path)
    assert main(["advise", str(untrained_checkpoint), "--density", "0.05", "--rule", "paper",
                 "--cache-dir", str(cache)]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"error: rule must be one of {', '.join(RULES)}; got 'paper' (did you mean "
        "'paper_step'?)")
    assert not cache.exists() and _hashes(tmp_path) == before
    # the library function too, before it evaluates or stores anything
    import threeregime
    from threeregime.advisor import load_checkpoint

    model, data = load_checkpoint(untrained_checkpoint)
    with pytest.raises(SpecError, match=r"^rule must be one of .*; got 'paper' \(did you mean "):
        threeregime.advise(model, data, target_density=0.05, hyperparameter="epochs",
                           rule="paper", cache_dir=cache)
    assert not cache.exists()


def test_plot_a_file_that_is_not_netcdf(tmp_path, capsys):
    notes = tmp_path / "notes.py"
    notes.write_text("print('my own script')\n")
    before = _hashes(tmp_path)
    assert main(["plot", str(notes)]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"error: {notes}: not a netCDF results file (no netCDF or HDF5 signature); give a "
        "results .nc file or a sweep folder")
    assert _hashes(tmp_path) == before                 # no notes.png, the script untouched
    import threeregime

    with pytest.raises(ResultsError, match="not a netCDF results file"):
        threeregime.open_sweep(notes)


def _results(tmp_path) -> Path:
    from _results_synth import synthetic_sweep

    from threeregime.results.storage import write_dataset

    return write_dataset(synthetic_sweep(0), tmp_path / "x.nc")


def test_export_into_a_missing_folder(tmp_path, capsys):
    src = _results(tmp_path)
    target = tmp_path / "no" / "such" / "dir" / "out.nc"
    assert main(["export", str(src), str(target)]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"error: output {target}: directory {target.parent} does not exist; create it first "
        "or choose another path")
    assert not (tmp_path / "no").exists()
    import threeregime

    with pytest.raises(SpecError, match=rf"^path {target}: directory .* does not exist"):
        threeregime.results.storage.export(threeregime.open_sweep(src), target)
    assert not (tmp_path / "no").exists()


def test_plot_and_point_outputs_checked_before_work(tmp_path, capsys):
    src = _results(tmp_path)
    before = _hashes(tmp_path)
    assert main(["plot", str(src), "-o", str(tmp_path / "fig.txt")]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"error: --output {tmp_path / 'fig.txt'} must end in .png or .pdf or .svg; got '.txt'")
    assert main(["plot", str(src), "-o", str(tmp_path / "new" / "fig.png")]) == 2
    assert _one_line(capsys.readouterr().err).startswith(
        f"error: --output {tmp_path / 'new' / 'fig.png'}: directory {tmp_path / 'new'} does "
        "not exist")
    point = tmp_path / "p.yaml"
    point.write_text("data: {name: mnist1d}\nretrain_seeds: [0, 1]\n")
    before = _hashes(tmp_path)
    assert main(["point", str(point), "-o", str(tmp_path / "new" / "p.nc")]) == 2
    assert _one_line(capsys.readouterr().err).startswith(
        f"error: --output {tmp_path / 'new' / 'p.nc'}: directory {tmp_path / 'new'} does not "
        "exist")
    assert _hashes(tmp_path) == before and not (tmp_path / "new").exists()


def test_advise_checkpoint_options_with_a_results_file(tmp_path, capsys):
    src = _results(tmp_path)
    assert main(["advise", str(src), "--point", "epochs=20", "--density", "0.05"]) == 2
    assert _one_line(capsys.readouterr().err) == (
        "error: --density is only used with a checkpoint; a results file's cell is chosen with "
        "--point AXIS=VALUE (e.g. --point density=0.05)")


def test_load_yaml_misspelt_axes_says_did_you_mean_as_the_cli(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(BASE.replace("axes:", "axis:"))
    with pytest.raises(SpecError) as info:
        load_yaml(f)                                    # kind guessed: a sweep
    expected = (f"{f}: axis: unknown key (did you mean 'axes'?); allowed: axes, base, "
                "dense_seeds, description, name")
    assert str(info.value) == expected
    assert run_inline(str(f), "--out", str(tmp_path / "o"), "--quiet") == 2
    assert _one_line(capsys.readouterr().err) == f"error: {expected}"
    assert not (tmp_path / "o").exists()
    # a point spec is still judged a point spec
    p = tmp_path / "p.yaml"
    p.write_text("data: {name: mnist1d}\nretrain_seed: [0, 1]\n")
    with pytest.raises(SpecError, match=r"retrain_seed: unknown key \(did you mean "
                                        r"'retrain_seeds'\?\)"):
        load_yaml(p)
    with pytest.raises(SpecError, match=r"kind must be one of sweep, point; got "
                                        r"'swep' \(did you mean 'sweep'\?\)"):
        load_yaml(f, kind="swep")


def test_status_of_a_missing_directory(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["status", "runs/nothere"]) == 2
    assert _one_line(capsys.readouterr().err) == (
        "error: runs/nothere: no such sweep directory; give a sweep directory or a sweep YAML "
        "file")
    assert not (tmp_path / "runs").exists()


def test_advise_warns_about_a_chance_level_dense_model(untrained_checkpoint, tmp_path, capsys,
                                                       monkeypatch):
    from threeregime import advisor as C

    def fake(root, dkey, spec, problem, opts):        # measurements, without retraining
        k = len(spec.retrain_seeds)
        return ({"lmc": [-0.1] * (k * (k - 1) // 2), "cka": [0.6] * (k * (k - 1) // 2),
                 "test_error": [0.5] * k, "train_error": [0.4] * k}, spec.prune.density, False)
    monkeypatch.setattr(C, "_run_stages", fake)
    assert main(["advise", str(untrained_checkpoint), "--density", "0.05", "--cache-dir",
                 str(tmp_path / "c")]) == 0
    captured = capsys.readouterr()
    warning = _one_line(captured.err)
    m = re.fullmatch(r"warning: the dense model is at chance level: train error (\d+\.\d) %, test "
                     r"error (\d+\.\d) % \(chance 90\.0 % for 10 classes\); its advice describes "
                     r"an untrained model: check that it is trained, and on this data", warning)
    assert m and float(m[1]) >= 81.0, warning             # >= 0.9 x chance
    # ... and the Advice shows the dense model's own error
    assert re.search(r"dense model: test error \d+\.\d\d %, train error \d+\.\d\d %",
                     captured.out), captured.out
    import threeregime
    from threeregime.advisor import load_checkpoint

    model, data = load_checkpoint(untrained_checkpoint)
    with pytest.warns(ThreeRegimeWarning, match="the dense model is at chance level"):
        adv = threeregime.advise(model, data, target_density=0.05, hyperparameter="epochs",
                                 cache_dir=tmp_path / "c")
    assert adv.evidence["dense_train_error"] == pytest.approx(float(m[1]) / 100, abs=1e-3)
    assert adv.evidence["dense_test_error"] == pytest.approx(float(m[2]) / 100, abs=1e-3)


@pytest.mark.parametrize(("option", "message"), [
    (["--threads", "0"], "--threads must be an integer >= 1; got 0"),
    (["--threads", "-2"], "--threads must be an integer >= 1; got -2"),
    (["--memory-budget", "-1"], "--memory-budget must be a number of GiB > 0; got -1"),
    (["--slurm-timeout", "0"], "--slurm-timeout must be an integer >= 1 (minutes); got 0")])
def test_run_numeric_options_before_any_work(tmp_path, capsys, option, message):
    f = tmp_path / "s.yaml"
    f.write_text(BASE)
    assert run_inline(str(f), "--out", str(tmp_path / "o"), *option) == 2
    assert _one_line(capsys.readouterr().err) == f"error: {message}"
    assert not (tmp_path / "o").exists()
    from threeregime.sweep.driver import run_sweep

    with pytest.raises(SpecError, match=r"^threads must be an integer >= 1 or null; got 0$"):
        run_sweep(f, tmp_path / "o", threads=0, progress=False)
    assert not (tmp_path / "o").exists()


def test_choose_one_picks_the_only_choice_and_names_the_choices():
    from threeregime.errors import FieldError
    from threeregime.spec.codec import choose_one

    assert choose_one("axis", None, ["epochs"], "the temperature axes") == "epochs"
    assert choose_one("axis", "lr", ["epochs", "lr"], "the temperature axes") == "lr"
    with pytest.raises(FieldError, match=r"^axis must name one of the temperature axes "
                                         r"\(epochs, lr\); got None$"):
        choose_one("axis", None, ["epochs", "lr"], "the temperature axes")
    with pytest.raises(FieldError, match="did you mean 'epochs'"):
        choose_one("axis", "epoch", ["epochs", "lr"], "the temperature axes")
