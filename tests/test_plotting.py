"""Phase diagrams (threeregime.plotting): assert on artists and labels, not pixels."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from _results_synth import DENSITY, EPOCHS, TRUTH, synthetic_sweep

from threeregime import PhaseDiagram, ResultsError, SpecError
from threeregime.plotting import (
    PhaseDiagramArtists,
    boundary_segments,
    plot_lmc_curves,
    plot_phase_diagrams,
    save,
)
from threeregime.regimes import classify


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _ytick_at(ax, pos):
    return {t.get_position()[1]: t.get_text() for t in ax.get_yticklabels()}[pos]


def test_from_dataset_computes_table_in_display_order():
    ds = synthetic_sweep(0)
    pd = PhaseDiagram.from_dataset(ds, var="test_error")
    assert (pd.x, pd.y) == ("density", "epochs")
    assert pd.x_values.tolist() == DENSITY
    assert pd.y_values.tolist() == EPOCHS          # epochs: hotter = fewer -> 5 on top
    np.testing.assert_allclose(pd.values, ds["test_error_mean"].values)
    np.testing.assert_array_equal(pd.regime, TRUTH)
    assert pd.x_label == "fraction of prunable weights kept"
    assert pd.y_label == "dense training epochs (snapshot)"      # units "epoch" not repeated
    assert pd.title == "synthetic"


def test_hotter_up_for_both_directions_and_unsorted_coords():
    ds = synthetic_sweep(0).isel(epochs=[2, 0, 3, 1], density=[3, 0, 2, 1])
    pd = PhaseDiagram.from_dataset(ds, var="lmc")
    assert pd.y_values.tolist() == [5, 10, 20, 40] and pd.x_values.tolist() == DENSITY
    np.testing.assert_array_equal(pd.regime, TRUTH)
    art = pd.plot()
    assert _ytick_at(art.ax, 0) == "5"             # the top row is the hottest
    assert art.ax.get_ylim()[0] > art.ax.get_ylim()[1]   # row 0 drawn at the top
    # a temperature that is hotter when larger: largest on top
    hot = ds.rename(epochs="lr").assign_coords(lr=("lr", [0.3, 0.01, 0.1, 0.03]))
    hot["lr"].attrs = {"role": "temperature", "hotter": "increasing",
                       "long_name": "dense learning rate", "units": "1"}
    pd2 = PhaseDiagram.from_dataset(hot, var="cka")
    assert pd2.y_values.tolist() == [0.3, 0.1, 0.03, 0.01]
    art2 = pd2.plot()
    assert _ytick_at(art2.ax, 0) == "0.3"
    assert art2.ax.get_ylabel().startswith("dense learning rate")


def test_plot_artists_boundaries_regions_labels():
    ds = synthetic_sweep(0)
    art = ds.threeregime.plot("test_error")
    assert isinstance(art, PhaseDiagramArtists)
    segs = art.boundaries.get_segments()
    assert len(segs) == 10 == len(boundary_segments(TRUTH))
    # every cell carries its regime in words, in display order (row-major)
    names = {0: "I", 1: "II-A", 2: "II-B"}
    assert [t.get_text().split("\n")[0] for t in art.region_labels] == [
        names[c] for c in TRUTH.ravel()]
    assert len(art.annotations) == 16
    assert art.annotations[0].get_text() == f"{100 * ds['test_error_mean'].values[0, 0]:.1f}%"
    assert art.ax.get_xlabel().startswith("fraction of prunable weights kept")
    assert art.ax.get_ylabel() == "dense training epochs (snapshot; hotter \u2191)"
    assert [t.get_text() for t in art.ax.get_xticklabels()] == ["0.05", "0.1", "0.2", "0.5"]
    assert art.hatches == [] and art.uncertain == []
    assert art.colorbar is not None
    assert art.key is not None and "Regimes by rule paper_step" in art.key.get_text()
    # solid between Regime I and II, dashed inside Regime II
    kinds = [k for _, k in boundary_segments(TRUTH, kinds=True)]
    styles = art.boundaries.get_linestyles()
    assert kinds.count("I") > 0 and kinds.count("II") > 0
    assert [ls[1] is None for ls in styles] == [k == "I" for k in kinds]


def test_cells_read_at_a_glance():
    """Issue 12: unresolved, uncertain, collapsed and not-run cells say so in words; numbers
    are short; fonts readable; the y label names its unit once."""
    ds = synthetic_sweep(3, skip={(40, 0.5, s) for s in (0, 1, 2)})
    ds["cka"].loc[{"density": 0.2}] = 0.95 + 0.0 * ds["cka"].loc[{"density": 0.2}]
    ds["test_error"].loc[{"epochs": 40, "density": 0.05}] = 0.88
    ds["train_error"].loc[{"epochs": 40, "density": 0.05}] = 0.86
    reg = classify(ds)
    reg["regime_uncertain"].loc[{"epochs": 10, "density": 0.1}] = 1
    art = PhaseDiagram.from_dataset(ds, var="lmc", regimes=reg).plot()
    d = art.diagram
    text = {(round(t.get_position()[1] + 0.12), round(t.get_position()[0])): t.get_text()
            for t in art.region_labels}
    row = {e: i for i, e in enumerate(d.y_values)}
    col = {x: j for j, x in enumerate(d.x_values)}
    assert text[row[5], col[0.2]] == "unresolved"
    assert text[row[10], col[0.1]].endswith("\nuncertain")
    assert text[row[40], col[0.05]] == "near chance"
    assert text[row[40], col[0.5]] == "not run"
    assert len(art.uncertain) == int(reg["regime_uncertain"].sum())
    assert all(p.get_hatch() == "\\\\" for p in art.uncertain)
    assert sorted(p.get_hatch() for p in art.hatches) == ["..", "//"]
    for t in art.annotations:
        assert len(t.get_text()) <= 7 and t.get_fontsize() >= 8, t.get_text()
    assert all(t.get_fontsize() >= 8 for t in art.region_labels)
    assert art.ax.get_ylabel().count("(") == 1 and "(epoch)" not in art.ax.get_ylabel()
    assert art.ax.yaxis.label.get_fontsize() >= 10
    # the CKA panel: 3 decimals, never 16 digits
    cka = PhaseDiagram.from_dataset(ds, var="cka", regimes=reg).plot(key=False)
    assert all(len(t.get_text()) == 5 for t in cka.annotations) and cka.key is None


def test_boundary_segments_geometry():
    labels = np.array([[0, 1], [0, 1]], dtype=np.int8)
    segs = boundary_segments(labels)
    assert sorted(segs) == [((0.5, -0.5), (0.5, 0.5)), ((0.5, 0.5), (0.5, 1.5))]
    assert boundary_segments(np.array([[0, -1, 0]])) == []      # undetermined: no line


def test_undetermined_and_diverged_cells_are_hatched():
    status = {(5, 0.1, s): "diverged" for s in (0, 1, 2)}
    ds = synthetic_sweep(1, status=status, skip={(40, 0.5, s) for s in (0, 1, 2)})
    art = PhaseDiagram.from_dataset(ds, var="cka").plot()
    hatches = sorted(p.get_hatch() for p in art.hatches)
    assert hatches == ["..", "xx"]
    # no annotation for the cell that has no data at all
    assert len(art.annotations) == 15


def test_regime_panel_and_explicit_regimes():
    ds = synthetic_sweep(0)
    reg = classify(ds, min_cka_spread=0.5)
    art = PhaseDiagram.from_dataset(ds, var="lmc", regimes=reg).plot(annotate=False)
    assert sorted({t.get_text() for t in art.region_labels}) == ["I", "II-B"]
    assert len(art.region_labels) == 16 and art.annotations == []
    art = PhaseDiagram.from_dataset(ds, var="test_error", regimes=False).plot()
    assert art.boundaries is None and art.region_labels == []
    art = PhaseDiagram.from_dataset(ds.threeregime.classify(), var="regime").plot()
    texts = [t.get_text().split("\n")[0] for t in art.annotations]
    assert texts.count("I") == 4 and texts.count("II-A") == 5
    assert [t.get_text() for t in art.colorbar.ax.get_yticklabels()] == [
        "undetermined", "I", "II-A", "II-B", "unresolved"]


def test_four_panels_and_save(tmp_path):
    ds = synthetic_sweep(0, classify=True)
    fig, arts = plot_phase_diagrams(ds)
    assert [a.diagram.var for a in arts] == ["test_error", "normalized_test_error", "lmc", "cka"]
    assert fig._suptitle.get_text() == "synthetic"
    assert arts[0].key is arts[3].key and "unresolved" in arts[0].key.get_text()
    assert all(len(a.boundaries.get_segments()) == 10 for a in arts)
    for suffix in (".png", ".pdf"):
        p = save(fig, tmp_path / "out" / f"pd{suffix}")
        assert p.is_file() and p.stat().st_size > 0
    with pytest.raises(SpecError, match=r"path suffix must be one of \.png, \.pdf, \.svg; "
                                        r"got '\.jpeg'"):
        save(fig, tmp_path / "pd.jpeg")


def test_normalized_test_error_computed_when_absent():
    ds = synthetic_sweep(0).drop_vars("normalized_test_error")
    pd = PhaseDiagram.from_dataset(ds, var="normalized_test_error")
    np.testing.assert_allclose(pd.values.min(0), 0.0)


def test_errors():
    ds = synthetic_sweep(0)
    with pytest.raises(ResultsError, match="var 'nope' is not in the dataset"):
        PhaseDiagram.from_dataset(ds, var="nope")
    with pytest.raises(ResultsError, match=r"lmc_curve has dims \['t', 'split', 'quantity'\]"):
        PhaseDiagram.from_dataset(ds, var="lmc_curve")
    with pytest.raises(ResultsError, match="none of the variables"):
        plot_phase_diagrams(ds, variables=("hessian",))
    with pytest.raises(SpecError, match="by must be one of regime, cell; got 'x'"):
        plot_lmc_curves(ds, by="x")


def test_lmc_curves():
    ds = synthetic_sweep(0, classify=True)
    art = plot_lmc_curves(ds)
    assert [lab.split(" ")[0] for lab in art.labels] == ["I", "II-A", "II-B"]
    assert art.labels[0] == "I (4 cells)"
    art = plot_lmc_curves(ds, by="cell", split="test", quantity="loss")
    assert len(art.lines) == 16 and art.ax.get_ylabel() == "test loss"


def test_phase_diagram_from_plain_arrays():
    lmc = xr.DataArray([[-0.2, 0.0], [0.0, 0.0]], dims=("T", "L"),
                       coords={"T": [1, 2], "L": [0.1, 0.5]})
    ds = xr.Dataset({"lmc": lmc, "cka": lmc * 0 + 0.9})
    pd = PhaseDiagram.from_dataset(ds, x="L", y="T", var="lmc")
    # unknown direction: larger on top; flat CKA: Regime II unresolved (3)
    assert pd.regime.tolist() == [[3, 3], [0, 3]]
