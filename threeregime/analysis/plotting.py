"""Phase diagrams and LMC curves of a results Dataset (STYLE rule 12: compute once, draw many).

:meth:`PhaseDiagram.from_dataset` reduces a variable to a (temperature x load) table with the
regime labels beside it; :meth:`PhaseDiagram.plot` draws it and returns a
:class:`PhaseDiagramArtists` holding every artist, so tests (and users) can check labels,
boundaries and orientation without looking at pixels.

Orientation: load increases to the right, and the HOTTER end of the temperature axis is at the
top, read from the coordinate's ``hotter`` attr (``decreasing`` for epochs and batch size: the
smallest value on top); axis labels from ``long_name`` and ``units`` (units once).  Every cell
carries its regime in words above its value (:func:`cell_label`).  matplotlib is imported
inside the drawing functions only; nothing here imports torch.
"""
from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import ResultsError, SpecError, did_you_mean
from ..results import storage
from ..results.storage import REPLICATE_DIMS
from ..spec.specs import AXES, check_choice
from .features import find_dims, replicate_mean
from .plot_text import (
    CELL_NAMES,
    PERCENT,
    REASON_NAMES,
    axis_label,
    boundary_segments,
    cell_label,
    colorbar_label,
    key_text,
    nice_ticks,
    no_data_text,
    rule_name,
    sweep_name,
    tick,
    value_text,
    with_note,
)
from .regimes import REASONS, UNDETERMINED, regimes_of
from .rules import NAMES

__all__ = [
    "CELL_NAMES",
    "PANELS",
    "REASON_NAMES",
    "LMCCurvesArtists",
    "PhaseDiagram",
    "PhaseDiagramArtists",
    "plot_lmc_curves",
    "plot_phase_diagrams",
    "cell_label",
    "save",
    "value_text",
]

#: The paper's four panels.
PANELS = ("test_error", "normalized_test_error", "lmc", "cka")
_REGIME_COLORS = {UNDETERMINED: "#bdbdbd", 0: "#d95f02", 1: "#7570b3", 2: "#1b9e77",
                  3: "#a6cee3"}
_DIVERGING = ("lmc", "lmc_mean")
#: boundary line (style, width) by kind: between Regime I and II, inside Regime II
_LINES = {"I": ("solid", 2.8), "II": ((0, (4, 2)), 1.6), "IIu": ((0, (1, 1.5)), 1.6)}
#: hatch -> what it marks, in legend order
_HATCHES = {"\\\\": "uncertain (dense seeds disagree)", "//": "undetermined",
            "xx": "diverged or failed", "..": "not run"}


# --------------------------------------------------------------------------- helpers
def _label(ds: xr.Dataset, name: str) -> str:
    """``long_name (units)``, the units left out when dimensionless or already named."""
    return axis_label(ds[name].attrs if name in ds.variables else {}, name)


def _hotter(ds: xr.Dataset, dim: str) -> str | None:
    h = ds[dim].attrs.get("hotter") if dim in ds.coords else None
    return AXES[dim].hotter if h is None and dim in AXES else h


# --------------------------------------------------------------------------- phase diagram
@dataclass
class PhaseDiagramArtists:
    """What :meth:`PhaseDiagram.plot` drew."""

    figure: Any
    ax: Any
    image: Any
    colorbar: Any
    annotations: list = field(default_factory=list)     # value text per cell
    boundaries: Any = None                              # LineCollection or None
    region_labels: list = field(default_factory=list)   # regime text of every labelled cell
    hatches: list = field(default_factory=list)         # Rectangles over undetermined cells
    diagram: Any = None
    uncertain: list = field(default_factory=list)       # Rectangles over uncertain cells
    key: Any = None                                     # the regime key (Text) or None
    legend: Any = None                                  # lines and hatches (Legend) or None
    no_data: Any = None                                 # "no data: ..." (Text) when all NaN
    excluded: list = field(default_factory=list)        # "n=k" (Text) where replicates at
                                                        # chance were left out (k dense seeds)


@dataclass
class PhaseDiagram:
    """A variable over (temperature x load), in display order, with its regime labels.

    Row 0 is the top row (hottest), column 0 the left column (lowest load).  ``values`` and the
    regime tables (``regime`` int8, ``reason`` = ``undetermined_reason``, ``confidence``,
    ``uncertain`` = ``regime_uncertain``; None when absent) are (ny, nx); ``x``/``y`` are dim
    names, ``x_values``/``y_values`` their values in display order, the labels come from
    attrs (long_name, units once), ``rule`` names the rule that labelled the cells.
    """

    var: str
    values: np.ndarray
    x: str
    y: str
    x_values: np.ndarray
    y_values: np.ndarray
    x_label: str
    y_label: str
    value_label: str
    regime: np.ndarray | None = None
    reason: np.ndarray | None = None
    confidence: np.ndarray | None = None
    title: str = ""
    uncertain: np.ndarray | None = None
    rule: str = ""
    colorbar_label: str = ""
    n_used: np.ndarray | None = None        # dense seeds each cell's statistics rest on
    n_collapsed: np.ndarray | None = None   # replicates at chance left out of each cell

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, x: str | None = None, y: str | None = None,
                     var: str = "test_error", *, regimes: bool | xr.Dataset | xr.DataArray = True,
                     classify_kw: Mapping[str, Any] | None = None) -> PhaseDiagram:
        """Reduce ``ds[var]`` to a phase-diagram table (mean over dense/retrain seeds, pairs).

        Parameters
        ----------
        ds : xarray.Dataset
        x, y : str, optional
            Dims for the horizontal (default: the load dim) and vertical (default: the
            temperature dim) axes, found from the coordinates' ``role`` attrs.
        var : str
            Any variable over (x, y[, replicate dims]); ``"regime"`` draws the labels;
            ``"normalized_test_error"`` is computed from ``test_error`` when absent.
        regimes : bool or Dataset or DataArray
            True: :func:`threeregime.analysis.regimes.regimes_of` (``ds``'s own regimes, else
            classified
            with ``classify_kw``; none when ``ds`` lacks LMC/CKA); False: no boundaries; a
            classify result (or its ``regime`` DataArray) to use as is.
        classify_kw : mapping, optional
            Rule arguments of :func:`threeregime.analysis.regimes.classify` (a non-empty one
            reclassifies).
        """
        if var not in ds and not (var == "normalized_test_error" and "test_error" in ds):
            raise ResultsError(f"var {var!r} is not in the dataset"
                               f"{did_you_mean(var, map(str, ds.data_vars))}; variables: "
                               f"{', '.join(map(str, ds.data_vars))}")
        probe = var if var in ds else "test_error"
        cell, temps, loads = find_dims(ds, probe, temperature=y, load=x)
        y = y or temps[0]
        if x is None:
            others = [d for d in loads if d != y] or [d for d in cell if d != y]
            if not others:
                raise ResultsError(f"{var} has no load dim to put on x (dims: {cell}); "
                                   f"pass x=<dim name>")
            x = others[0]
        keep = [y, x]
        # normalized test error of data that lacks it: storage computes it (the one place)
        da = replicate_mean(ds[var] if var in ds else storage.normalized_test_error(ds), ds, keep)

        xv, yv = ds[x].values, ds[y].values
        xo = np.argsort(xv, kind="stable")
        yo = np.argsort(yv, kind="stable")
        if _hotter(ds, y) != "decreasing":   # larger = hotter -> largest on top
            yo = yo[::-1]
        values = np.asarray(da.values, dtype=np.float64)[np.ix_(yo, xo)]

        if regimes is True:
            regimes = _regimes(ds, classify_kw, temps)
        if isinstance(regimes, xr.DataArray):
            regimes = regimes.to_dataset(name="regime")
        reg = regimes if isinstance(regimes, xr.Dataset) else xr.Dataset()

        def table(name: str, dtype: Any) -> np.ndarray | None:
            if name not in reg:
                return None
            extra = [d for d in reg[name].dims if d not in keep]
            if extra:
                raise ResultsError(f"{name} has dims {extra} besides {keep}; select them first")
            return np.asarray(reg[name].transpose(*keep).values, dtype=dtype)[np.ix_(yo, xo)]

        return cls(var=var, values=values, x=x, y=y, x_values=xv[xo], y_values=yv[yo],
                   x_label=_label(ds, x), y_label=_label(ds, y),
                   value_label=(_label(ds, var) if var in ds
                                else da.attrs.get("long_name", var)),
                   regime=table("regime", np.int8), reason=table("undetermined_reason", np.int8),
                   confidence=table("regime_confidence", np.float64), title=sweep_name(ds),
                   uncertain=table("regime_uncertain", bool), rule=rule_name(reg),
                   n_used=table("n_used", np.float64),
                   n_collapsed=table("n_collapsed", np.float64),
                   colorbar_label=colorbar_label(var, ds[var].attrs if var in ds else da.attrs))

    # ------------------------------------------------------------------ drawing
    def plot(self, ax: Any = None, *, cmap: Any = None, vmin: float | None = None,
             vmax: float | None = None, annotate: bool = True, fmt: str | None = None,
             boundaries: bool = True, region_labels: bool = True, colorbar: bool = True,
             title: str | None = None, boundary_kw: Mapping[str, Any] | None = None,
             key: bool | None = None) -> PhaseDiagramArtists:
        """Draw the heatmap with every cell's regime and value, and the regime boundaries.

        Cells are categorical: cell (i, j) is centred at x = j, y = i with ticks labelled by
        the coordinate values.  Values print as percent (errors, LMC) or 3 decimals (CKA)
        unless ``fmt`` (e.g. ``"{:.3g}"``) is given.  Undetermined cells are hatched (``//``;
        ``xx`` when the runs diverged or failed; ``..`` when not computed yet), uncertain
        ones ``\\\\``.  ``key`` (default: when this call makes the figure) writes what the
        labels, lines and hatches mean under the axes.

        Returns
        -------
        PhaseDiagramArtists
        """
        import matplotlib.pyplot as plt
        from matplotlib.collections import LineCollection
        from matplotlib.colors import ListedColormap
        from matplotlib.patches import Rectangle

        ny, nx = self.values.shape
        if key is None:
            key = ax is None and self.regime is not None
        if ax is None:
            _, ax = plt.subplots(figsize=(1.3 * nx + 3.0, 0.85 * ny + 1.8 + 0.5 * key),
                                 layout="constrained")
        fig = ax.figure
        vals = np.ma.masked_invalid(self.values)
        is_regime = self.var == "regime"
        if is_regime:   # the colour bar lists the categories the diagram shows, no others
            codes = [c for c in (-1, 0, 1, 2, 3) if (self.values == c).any()] or [-1]
            cmap = ListedColormap([_REGIME_COLORS[c] for c in codes])
            vals = np.ma.masked_invalid(np.vectorize(
                lambda v: codes.index(int(v)) if np.isfinite(v) and int(v) in codes
                else np.nan, otypes=[float])(self.values))
            vmin, vmax = -0.5, len(codes) - 0.5
        elif cmap is None:
            cmap = "RdBu" if self.var in _DIVERGING else "viridis"
            if self.var in _DIVERGING and vmin is None and vmax is None and vals.count():
                m = max(float(np.abs(vals).max()), 0.01)   # all ~0: +-1 % point, not +-100
                vmin, vmax = -m, m
        image = ax.imshow(vals, origin="upper", extent=(-0.5, nx - 0.5, ny - 0.5, -0.5),
                          aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
                          interpolation="nearest")
        ax.set_xticks(range(nx), [tick(v) for v in self.x_values], fontsize=10)
        ax.set_yticks(range(ny), [tick(v) for v in self.y_values], fontsize=10)
        ax.set_xlabel(f"{self.x_label} \u2192", fontsize=10.5)
        ax.set_ylabel(with_note(self.y_label, "hotter \u2191"), fontsize=10.5)
        ax.set_title(textwrap.fill(self.value_label, 44) if title is None else title,
                     fontsize=11)
        has_reg = self.regime is not None
        empty = not is_regime and vals.count() == 0
        cbar = fig.colorbar(image, ax=ax) if colorbar and not empty else None
        if cbar is not None and is_regime:
            cbar.set_ticks(range(len(codes)), labels=[
                "undetermined" if c == -1 else CELL_NAMES[c] for c in codes])
        elif cbar is not None:
            lo, hi = image.norm.vmin, image.norm.vmax
            ticks, labels = nice_ticks(lo, hi, 100.0 if self.var in PERCENT else 1.0)
            cbar.set_ticks(ticks, labels=labels)
            cbar.ax.tick_params(labelsize=9)
            # wrapped to the axes' height before layout (9 characters an inch at 9.5 pt), in
            # lines of even length
            label = self.colorbar_label or colorbar_label(self.var, {})
            n_lines = -(-len(label) // max(24, int(9 * ax.get_position().height
                                                 * fig.get_figheight())))
            cbar.set_label(textwrap.fill(label, -(-len(label) // n_lines) + 4), fontsize=9.5)
        no_data = None
        if empty:
            no_data = ax.text(0.5, 0.03, no_data_text(self.var, self.regime, self.reason),
                              transform=ax.transAxes, ha="center", va="bottom", fontsize=9.5,
                              zorder=5, wrap=True, bbox={"boxstyle": "round,pad=0.3",
                                                         "fc": "white", "ec": "0.5"})
        reason = self.reason if self.reason is not None else np.zeros((ny, nx), np.int8)
        unc = self.uncertain if self.uncertain is not None else np.zeros((ny, nx), bool)
        hatched = (self.regime == UNDETERMINED) | unc if has_reg else unc
        annotations, region_texts, hatches, unc_patches, lines = [], [], [], [], None
        label_cells = has_reg and (region_labels or is_regime)
        for i in range(ny):
            for j in range(nx):
                v = self.values[i, j]
                if annotate and np.isfinite(v) and not is_regime:
                    r, g, b, _ = image.cmap(image.norm(v))
                    color = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                    # a hatched cell: the number on a patch of its own colour, not the hatch
                    box = ({"boxstyle": "square,pad=0.15", "fc": (r, g, b), "ec": "none"}
                           if hatched[i, j] else None)
                    annotations.append(ax.text(j, i + (0.22 if label_cells else 0.0),
                                               value_text(self.var, v, fmt), ha="center",
                                               va="center", fontsize=9, color=color,
                                               bbox=box, zorder=4))
                if not label_cells:
                    continue
                text = cell_label(self.regime[i, j], reason[i, j], bool(unc[i, j]))
                t = ax.text(j, i - (0.12 if annotate and not is_regime else 0.0), text,
                            ha="center", va="center", fontsize=9, fontweight="bold",
                            linespacing=0.95, zorder=4, bbox={"boxstyle": "round,pad=0.18",
                                                              "fc": "white", "ec": "none",
                                                              "alpha": 0.8})
                (annotations if is_regime else region_texts).append(t)
        if has_reg:
            if boundaries:
                segs = boundary_segments(self.regime, kinds=True)
                kw = {"colors": "black", "zorder": 3,
                      "linewidths": [_LINES[k][1] for _, k in segs],
                      "linestyles": [_LINES[k][0] for _, k in segs]}
                kw.update(dict(boundary_kw or {}))
                lines = ax.add_collection(LineCollection([sg for sg, _ in segs], **kw))
            for i, j in zip(*np.nonzero(self.regime == UNDETERMINED)):
                hatch = {REASONS["diverged_or_failed"]: "xx",
                         REASONS["not_computed"]: ".."}.get(int(reason[i, j]), "//")
                hatches.append(ax.add_patch(Rectangle(
                    (j - 0.5, i - 0.5), 1, 1, fill=False, hatch=hatch, edgecolor="0.35",
                    linewidth=0, zorder=2)))
            for i, j in zip(*np.nonzero(unc & (self.regime != UNDETERMINED))):
                unc_patches.append(ax.add_patch(Rectangle(
                    (j - 0.5, i - 0.5), 1, 1, fill=False, hatch="\\\\",
                    edgecolor=(0.3, 0.3, 0.3, 0.35), linewidth=0, zorder=2)))
        excluded = []
        if self.n_collapsed is not None and self.n_used is not None:
            # replicates at chance were left out: how many dense seeds the cell rests on
            for i, j in zip(*np.nonzero(np.nan_to_num(self.n_collapsed) > 0)):
                excluded.append(ax.text(j + 0.46, i - 0.44, f"n={int(self.n_used[i, j])}",
                                        ha="right", va="top", fontsize=8, style="italic",
                                        zorder=5, color="0.15"))
        key_art = legend = None
        if key and has_reg:
            key_art, legend = _key(fig, self, lines is not None, 1.3 * nx + 3.0, 8.5)
        ax.set_xlim(-0.5, nx - 0.5)
        ax.set_ylim(ny - 0.5, -0.5)
        return PhaseDiagramArtists(figure=fig, ax=ax, image=image, colorbar=cbar,
                                   annotations=annotations, boundaries=lines,
                                   region_labels=region_texts, hatches=hatches, diagram=self,
                                   uncertain=unc_patches, key=key_art, legend=legend,
                                   no_data=no_data, excluded=excluded)


def _key(fig: Any, diagram: PhaseDiagram, lines: bool, width_in: float, size: float
         ) -> tuple[Any, Any]:
    """Under the axes: what the regime labels mean (the returned Text) above a legend of the
    boundary lines and hatches ``diagram`` shows (the Legend, None when it shows none)."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    text = key_text(diagram.rule, width_in)
    kinds = {k for _, k in boundary_segments(diagram.regime, kinds=True)} if lines else set()
    handles = [Line2D([], [], color="black", linestyle=_LINES[k][0], linewidth=_LINES[k][1],
                      label=lab) for k, lab in (("I", "boundary Regime I | II"),
                                                ("II", "boundary II-A | II-B"),
                                                ("IIu", "boundary of unresolved (II-A or II-B "
                                                        "undecided)")) if k in kinds]
    undet = diagram.regime == UNDETERMINED
    unc = diagram.uncertain if diagram.uncertain is not None else np.zeros(undet.shape, bool)
    reason = (diagram.reason if diagram.reason is not None
              else np.zeros(undet.shape, np.int8))[undet]
    present = {"\\\\": bool((unc & ~undet).any()),
               "xx": bool((reason == REASONS["diverged_or_failed"]).any()),
               "..": bool((reason == REASONS["not_computed"]).any())}
    present["//"] = bool(np.isin(reason, [REASONS["diverged_or_failed"],
                                          REASONS["not_computed"]], invert=True).any())
    handles += [Patch(facecolor="white", edgecolor="0.35", hatch=h, label=label)
                for h, label in _HATCHES.items() if present[h]]
    if not handles:
        return fig.supxlabel(text, fontsize=size), None
    legend = fig.legend(handles=handles, loc="outside lower center", fontsize=size,
                        ncols=min(len(handles), 3 if width_in < 9 else 6), frameon=False,
                        handlelength=2.4, handleheight=1.3, title=text,
                        title_fontproperties={"size": size})
    return legend.get_title(), legend


# --------------------------------------------------------------------------- figures
def _regimes(ds: xr.Dataset, classify_kw: Mapping[str, Any] | None,
             temperature: str | Sequence[str] | None) -> xr.Dataset | None:
    """:func:`threeregime.analysis.regimes.regimes_of`, or None when ``ds`` cannot be classified (no
    LMC / CKA) and no rule argument asked for it."""
    try:
        return regimes_of(ds, temperature=temperature, **dict(classify_kw or {}))
    except ResultsError:
        if classify_kw:
            raise
        return None


def plot_phase_diagrams(ds: xr.Dataset, *, x: str | None = None, y: str | None = None,
                        variables: Sequence[str] = PANELS,
                        classify_kw: Mapping[str, Any] | None = None,
                        figsize: tuple[float, float] | None = None, title: str | None = None,
                        **plot_kw: Any) -> tuple[Any, list[PhaseDiagramArtists]]:
    """The paper's phase-diagram figure: one panel per variable, shared regime boundaries.

    Regimes are classified once (or taken from ``ds["regime"]``) and drawn on every panel.
    Variables the Dataset lacks are skipped (``normalized_test_error`` is computed from
    ``test_error`` when absent).  The suptitle is the sweep name.

    Returns
    -------
    (matplotlib.figure.Figure, list of PhaseDiagramArtists)
    """
    import matplotlib.pyplot as plt

    present = [v for v in variables
               if v in ds or (v == "normalized_test_error" and "test_error" in ds)]
    if not present:
        raise ResultsError(f"none of the variables {list(variables)} is in the dataset; "
                           f"variables: {', '.join(map(str, ds.data_vars))}")
    reg = _regimes(ds, classify_kw, y)
    diagrams = [PhaseDiagram.from_dataset(ds, x=x, y=y, var=v, regimes=False if reg is None
                                          else reg) for v in present]
    ny, nx = diagrams[0].values.shape
    n = len(diagrams)
    ncols = 2 if n == 4 else min(n, 3)
    nrows = -(-n // ncols)
    if figsize is None:
        figsize = (ncols * (1.3 * nx + 3.0), nrows * (0.85 * ny + 1.9) + 0.9)
    fig, axs = plt.subplots(nrows, ncols, figsize=figsize, layout="constrained", squeeze=False)
    arts = [d.plot(ax=a, key=False, **plot_kw) for d, a in zip(diagrams, axs.flat)]
    for a in list(axs.flat)[n:]:
        a.set_visible(False)
    fig.suptitle(sweep_name(ds) if title is None else title, fontsize=13)
    if reg is not None:
        key, legend = _key(fig, diagrams[0], plot_kw.get("boundaries", True), figsize[0], 9.5)
        for a in arts:
            a.key, a.legend = key, legend
    return fig, arts


@dataclass
class LMCCurvesArtists:
    """What :func:`plot_lmc_curves` drew."""

    figure: Any
    ax: Any
    lines: list
    labels: list


def plot_lmc_curves(ds: xr.Dataset, *, split: str = "train", quantity: str = "error",
                    by: str = "regime", ax: Any = None,
                    classify_kw: Mapping[str, Any] | None = None) -> LMCCurvesArtists:
    """Error (or loss) along the linear path between retrained pairs.

    Parameters
    ----------
    by : {"regime", "cell"}
        ``regime``: the mean curve over the cells of each regime; ``cell``: one curve per cell
        (mean over pairs and dense seeds), coloured by its regime.
    """
    import matplotlib.pyplot as plt

    check_choice("by", by, ("regime", "cell"))
    if "lmc_curve" not in ds:
        raise ResultsError("dataset has no variable 'lmc_curve'")
    for name, val in (("split", split), ("quantity", quantity)):
        check_choice(name, val, tuple(str(v) for v in ds[name].values))
    curve = ds["lmc_curve"].sel(split=split, quantity=quantity, drop=True)
    cell = [d for d in curve.dims if d not in REPLICATE_DIMS and d != "t"]
    mean = replicate_mean(curve, ds, cell + ["t"])
    reg = _regimes(ds, classify_kw, None)
    codes = (np.asarray(reg["regime"].transpose(*cell).values)
             if isinstance(reg, xr.Dataset) else np.full(mean.shape[:-1], UNDETERMINED))
    t = ds["t"].values
    flat = mean.values.reshape(-1, t.size)
    codes = codes.reshape(-1)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
    lines, labels = [], []
    if by == "regime":
        for code in (0, 1, 2, 3, UNDETERMINED):
            sel = flat[codes == code]
            sel = sel[np.isfinite(sel).any(1)] if sel.size else sel
            if not len(sel):
                continue
            lab = f"{NAMES[code]} ({len(sel)} cells)"
            with np.errstate(all="ignore"):
                lines += ax.plot(t, np.nanmean(sel, 0), color=_REGIME_COLORS[code], lw=2)
            labels.append(lab)
    else:
        idx = list(np.ndindex(*mean.shape[:-1]))
        for k, (row, code) in enumerate(zip(flat, codes)):
            if not np.isfinite(row).any():
                continue
            lab = ", ".join(f"{d}={tick(ds[d].values[i])}" for d, i in zip(cell, idx[k]))
            lines += ax.plot(t, row, color=_REGIME_COLORS[int(code)], lw=1, alpha=0.8)
            labels.append(lab)
    ax.set_xlabel(_label(ds, "t"))
    ax.set_ylabel(f"{split} {quantity}")
    ax.set_title(sweep_name(ds) or "linear path between retrained pairs")
    for line, lab in zip(lines, labels):
        line.set_label(lab)
    if by == "regime" and lines:
        ax.legend(fontsize=8)
    return LMCCurvesArtists(figure=ax.figure, ax=ax, lines=lines, labels=labels)


def save(fig: Any, path: str | Path, *, dpi: int = 150) -> Path:
    """Save a figure; the format follows the suffix (``.png``, ``.pdf`` or ``.svg``)."""
    if (path := Path(path)).suffix.lower() not in (_SAVE_SUFFIXES := (".png", ".pdf", ".svg")):
        raise SpecError(f"path suffix must be one of {', '.join(_SAVE_SUFFIXES)}; got "
                        f"{path.suffix or '(none)'!r} in {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
