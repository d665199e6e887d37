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

import json
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from . import storage
from ._errors import ResultsError, SpecError, did_you_mean
from .features import replicate_mean
from .regimes import REASONS, REGIME_I, REGIMES, UNDETERMINED, find_dims, regimes_of
from .spec import AXES, check_choice
from .storage import REPLICATE_DIMS

__all__ = [
    "PANELS",
    "LMCCurvesArtists",
    "PhaseDiagram",
    "PhaseDiagramArtists",
    "plot_lmc_curves",
    "plot_phase_diagrams",
    "save",
]

#: The paper's four panels.
PANELS = ("test_error", "normalized_test_error", "lmc", "cka")
_REGIME_COLORS = {UNDETERMINED: "#bdbdbd", 0: "#d95f02", 1: "#7570b3", 2: "#1b9e77",
                  3: "#a6cee3"}
_DIVERGING = ("lmc", "lmc_mean")
#: a cell's regime in words (code 3 = Regime II, A vs B inside noise)
CELL_NAMES = {0: "I", 1: "II-A", 2: "II-B", 3: "unresolved"}
#: an undetermined cell, in words, by ``undetermined_reason``
REASON_NAMES = {1: "not run", 2: "failed", 3: "too few pairs", 4: "collapsed", 5: "near chance"}
_PERCENT = ("test_error", "normalized_test_error", "lmc", "lmc_mean", "test_error_mean",
            "train_error")
KEY = ("I: barrier between retrained seeds -> train hotter  |  II-A: connected, lower CKA -> "
       "train colder  |  II-B: connected, higher CKA -> keep  |  unresolved: Regime II, A vs B "
       "within noise -> keep  |  solid line: Regime I | II, dashed: inside II  |  hatched "
       "\\\\: uncertain (dense seeds disagree), //: undetermined")


# --------------------------------------------------------------------------- helpers
def _label(ds: xr.Dataset, name: str) -> str:
    """``long_name (units)``, the units left out when dimensionless or already named."""
    attrs = ds[name].attrs if name in ds.variables else {}
    long_name = str(attrs.get("long_name", name))
    units = str(attrs.get("units", "") or "")
    if units in ("", "1") or units.rstrip("s").lower() in long_name.lower():
        return long_name
    return f"{long_name} ({units})"


def _with_note(label: str, note: str) -> str:
    """``label (note)``, merged into a closing parenthesis: ``a (b; note)``."""
    return f"{label[:-1]}; {note})" if label.endswith(")") else f"{label} ({note})"


def value_text(var: str, v: float, fmt: str | None = None) -> str:
    """A cell's value as printed: percent for errors and LMC, 3 decimals for CKA."""
    if fmt is not None:
        return fmt.format(v)
    if var in _PERCENT:
        return f"{100 * v:+.1f}%" if var.startswith("lmc") else f"{100 * v:.1f}%"
    return f"{v:.3f}" if var.startswith("cka") else f"{v:.3g}"


def cell_label(code: int, reason: int = 0, uncertain: bool = False) -> str:
    """A cell's regime in words: ``I``, ``II-A``, ``II-B``, ``unresolved``, the reason it is
    undetermined, and ``uncertain`` on a second line when the label is uncertain."""
    if code == UNDETERMINED:
        return REASON_NAMES.get(int(reason), "undetermined")
    return CELL_NAMES.get(int(code), "undetermined") + ("\nuncertain" if uncertain else "")


def _hotter(ds: xr.Dataset, dim: str) -> str | None:
    h = ds[dim].attrs.get("hotter") if dim in ds.coords else None
    return AXES[dim].hotter if h is None and dim in AXES else h


def _tick(v: Any) -> str:
    return f"{float(v):g}" if isinstance(v, (float, np.floating)) else str(v)


def rule_name(ds: xr.Dataset) -> str:
    """The name in a regimes Dataset's ``regime_rule`` attr (``""`` when unknown)."""
    try:
        return str(json.loads(ds.attrs.get("regime_rule", "{}")).get("name", ""))
    except (TypeError, ValueError, AttributeError):
        return ""


def sweep_name(ds: xr.Dataset) -> str:
    """The sweep's name from attrs ``name`` / ``sweep_name`` / ``spec_json``; else ``""``."""
    for key in (k for k in ("name", "sweep_name") if isinstance(ds.attrs.get(k), str)):
        return ds.attrs[key]
    try:
        spec = json.loads(ds.attrs.get("spec_json", ""))
        return str(spec.get("name", "")) if isinstance(spec, dict) else ""
    except (TypeError, ValueError):
        return ""


def boundary_segments(labels: np.ndarray, *, kinds: bool = False) -> list:
    """Line segments (in cell coordinates, cell (i, j) centred at x=j, y=i) between adjacent
    cells whose determined regimes differ; ``kinds=True`` pairs each with ``"I"`` (Regime I on
    one side only) or ``"II"`` (two Regime II labels)."""
    ny, nx = labels.shape
    segs = []
    for i in range(ny):
        for j in range(nx):
            a = labels[i, j]
            if a == UNDETERMINED:
                continue
            for b, seg in (((i, j + 1), ((j + 0.5, i - 0.5), (j + 0.5, i + 0.5))),
                           ((i + 1, j), ((j - 0.5, i + 0.5), (j + 0.5, i + 0.5)))):
                if b[0] < ny and b[1] < nx and labels[b] not in (UNDETERMINED, a):
                    kind = "I" if REGIME_I in (a, labels[b]) else "II"
                    segs.append((seg, kind) if kinds else seg)
    return segs


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
            True: :func:`threeregime.regimes.regimes_of` (``ds``'s own regimes, else classified
            with ``classify_kw``; none when ``ds`` lacks LMC/CKA); False: no boundaries; a
            classify result (or its ``regime`` DataArray) to use as is.
        classify_kw : mapping, optional
            Rule arguments of :func:`threeregime.regimes.classify` (a non-empty one reclassifies).
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
                   uncertain=table("regime_uncertain", bool), rule=rule_name(reg))

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
        if is_regime:
            cmap = ListedColormap([_REGIME_COLORS[c] for c in (-1, 0, 1, 2, 3)])
            vmin, vmax = -1.5, 3.5
        elif cmap is None:
            cmap = "RdBu" if self.var in _DIVERGING else "viridis"
            if self.var in _DIVERGING and vmin is None and vmax is None and vals.count():
                m = float(np.abs(vals).max()) or 1.0
                vmin, vmax = -m, m
        image = ax.imshow(vals, origin="upper", extent=(-0.5, nx - 0.5, ny - 0.5, -0.5),
                          aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
                          interpolation="nearest")
        ax.set_xticks(range(nx), [_tick(v) for v in self.x_values], fontsize=10)
        ax.set_yticks(range(ny), [_tick(v) for v in self.y_values], fontsize=10)
        ax.set_xlabel(f"{self.x_label} \u2192", fontsize=10.5)
        ax.set_ylabel(_with_note(self.y_label, "hotter \u2191"), fontsize=10.5)
        ax.set_title(textwrap.fill(self.value_label, 44) if title is None else title,
                     fontsize=11)
        cbar = fig.colorbar(image, ax=ax) if colorbar else None
        if cbar is not None and is_regime:
            cbar.set_ticks([-1, 0, 1, 2, 3], labels=["undetermined", *CELL_NAMES.values()])
        elif cbar is not None and self.var in _PERCENT:
            cbar.ax.yaxis.set_major_formatter(lambda v, _: f"{100 * v:g}%")

        has_reg = self.regime is not None
        reason = self.reason if self.reason is not None else np.zeros((ny, nx), np.int8)
        unc = self.uncertain if self.uncertain is not None else np.zeros((ny, nx), bool)
        annotations, region_texts, hatches, unc_patches, lines = [], [], [], [], None
        label_cells = has_reg and (region_labels or is_regime)
        for i in range(ny):
            for j in range(nx):
                v = self.values[i, j]
                if annotate and np.isfinite(v) and not is_regime:
                    r, g, b, _ = image.cmap(image.norm(v))
                    color = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                    annotations.append(ax.text(j, i + (0.22 if label_cells else 0.0),
                                               value_text(self.var, v, fmt), ha="center",
                                               va="center", fontsize=9, color=color))
                if not label_cells:
                    continue
                text = cell_label(self.regime[i, j], reason[i, j], bool(unc[i, j]))
                t = ax.text(j, i - (0.12 if annotate and not is_regime else 0.0), text,
                            ha="center", va="center", fontsize=9, fontweight="bold",
                            linespacing=0.95, zorder=4, bbox={"boxstyle": "round,pad=0.12",
                                                              "fc": "white", "ec": "none",
                                                              "alpha": 0.8})
                (annotations if is_regime else region_texts).append(t)
        if has_reg:
            if boundaries:
                segs = boundary_segments(self.regime, kinds=True)
                kw = {"colors": "black", "zorder": 3,
                      "linewidths": [2.8 if k == "I" else 1.6 for _, k in segs],
                      "linestyles": ["solid" if k == "I" else (0, (4, 2)) for _, k in segs]}
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
        key_text = None
        if key and has_reg:
            key_text = fig.supxlabel(_key_text(self.rule, 1.3 * nx + 3.0), fontsize=8.5)
        ax.set_xlim(-0.5, nx - 0.5)
        ax.set_ylim(ny - 0.5, -0.5)
        return PhaseDiagramArtists(figure=fig, ax=ax, image=image, colorbar=cbar,
                                   annotations=annotations, boundaries=lines,
                                   region_labels=region_texts, hatches=hatches, diagram=self,
                                   uncertain=unc_patches, key=key_text)


def _key_text(rule: str, width_in: float) -> str:
    """The regime key, wrapped to a figure ``width_in`` inches wide."""
    return textwrap.fill((f"Regimes by rule {rule}: " if rule else "Regimes: ") + KEY,
                         max(60, int(width_in * 15)))


# --------------------------------------------------------------------------- figures
def _regimes(ds: xr.Dataset, classify_kw: Mapping[str, Any] | None,
             temperature: str | Sequence[str] | None) -> xr.Dataset | None:
    """:func:`threeregime.regimes.regimes_of`, or None when ``ds`` cannot be classified (no
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
        key = fig.supxlabel(_key_text(diagrams[0].rule, figsize[0]), fontsize=9.5)
        for a in arts:
            a.key = key
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
            lab = f"{REGIMES[code]} ({len(sel)} cells)"
            with np.errstate(all="ignore"):
                lines += ax.plot(t, np.nanmean(sel, 0), color=_REGIME_COLORS[code], lw=2)
            labels.append(lab)
    else:
        idx = list(np.ndindex(*mean.shape[:-1]))
        for k, (row, code) in enumerate(zip(flat, codes)):
            if not np.isfinite(row).any():
                continue
            lab = ", ".join(f"{d}={_tick(ds[d].values[i])}" for d, i in zip(cell, idx[k]))
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
