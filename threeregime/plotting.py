"""Phase diagrams and LMC curves of a results Dataset (STYLE rule 12: compute once, draw many).

:meth:`PhaseDiagram.from_dataset` reduces a variable to a (temperature x load) table with the
regime labels beside it; :meth:`PhaseDiagram.plot` draws it and returns a
:class:`PhaseDiagramArtists` holding every artist, so tests (and users) can check labels,
boundaries and orientation without looking at pixels.

Orientation: load increases to the right, and the HOTTER end of the temperature axis is at the
top, read from the coordinate's ``hotter`` attr (``decreasing`` for epochs and batch size: the
smallest value on top).  Axis labels come from the coordinates' ``long_name`` and ``units``.

matplotlib is imported inside the drawing functions only; nothing here imports torch.
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
from .regimes import REASONS, REGIMES, UNDETERMINED, find_dims, regimes_of
from .spec import AXES, check_choice
from .storage import REPLICATE_DIMS, STATUS

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
_REGIME_COLORS = {UNDETERMINED: "#bdbdbd", 0: "#d95f02", 1: "#7570b3", 2: "#1b9e77"}
_DIVERGING = ("lmc", "lmc_mean")


# --------------------------------------------------------------------------- helpers
def _label(ds: xr.Dataset, name: str) -> str:
    attrs = ds[name].attrs if name in ds.variables else {}
    long_name = attrs.get("long_name", name)
    units = attrs.get("units", "")
    return f"{long_name} ({units})" if units not in ("", "1", None) else str(long_name)


def _hotter(ds: xr.Dataset, dim: str) -> str | None:
    h = ds[dim].attrs.get("hotter") if dim in ds.coords else None
    if h is None and dim in AXES:
        h = AXES[dim].hotter
    return h


def _fmt_tick(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def sweep_name(ds: xr.Dataset) -> str:
    """The sweep's name from attrs ``name`` / ``sweep_name`` / ``spec_json``; else ``""``."""
    for key in ("name", "sweep_name"):
        if isinstance(ds.attrs.get(key), str):
            return ds.attrs[key]
    try:
        spec = json.loads(ds.attrs.get("spec_json", ""))
        return str(spec.get("name", "")) if isinstance(spec, dict) else ""
    except (TypeError, ValueError):
        return ""


def _reduce(da: xr.DataArray, ds: xr.Dataset, keep: Sequence[str]) -> xr.DataArray:
    """Mean over replicate dims, leaving out failed / missing points."""
    if "status" in ds and set(ds["status"].dims) <= set(da.dims):
        da = da.where(ds["status"] <= STATUS["diverged"])
    rep = [d for d in da.dims if d in REPLICATE_DIMS]
    extra = [d for d in da.dims if d not in rep and d not in keep]
    if extra:
        raise ResultsError(f"{da.name} has dims {extra} besides {list(keep)}; select them "
                           f"first, e.g. ds.sel({extra[0]}=...)")
    if rep:
        with np.errstate(all="ignore"):
            vals = da.transpose(*keep, *rep).values.reshape(
                tuple(da.sizes[k] for k in keep) + (-1,)).astype(np.float64)
            n = np.isfinite(vals).sum(-1)
            mean = np.where(n > 0, np.nansum(vals, -1) / np.maximum(n, 1), np.nan)
        return xr.DataArray(mean, dims=tuple(keep),
                            coords={k: da[k] for k in keep if k in da.coords},
                            name=da.name, attrs=da.attrs)
    return da.transpose(*keep)


def _components(labels: np.ndarray) -> list[tuple[int, list[tuple[int, int]]]]:
    """4-connected components of equal determined labels: [(label, [(i, j), ...]), ...]."""
    ny, nx = labels.shape
    seen = np.zeros(labels.shape, dtype=bool)
    out = []
    for i0 in range(ny):
        for j0 in range(nx):
            lab = int(labels[i0, j0])
            if seen[i0, j0] or lab == UNDETERMINED:
                continue
            stack, cells = [(i0, j0)], []
            seen[i0, j0] = True
            while stack:
                i, j = stack.pop()
                cells.append((i, j))
                for a, b in ((i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)):
                    if 0 <= a < ny and 0 <= b < nx and not seen[a, b] and labels[a, b] == lab:
                        seen[a, b] = True
                        stack.append((a, b))
            out.append((lab, cells))
    return out


def boundary_segments(labels: np.ndarray) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Line segments (in cell coordinates, cell (i, j) centred at x=j, y=i) between adjacent
    cells whose determined regimes differ."""
    ny, nx = labels.shape
    segs = []
    for i in range(ny):
        for j in range(nx):
            a = labels[i, j]
            if a == UNDETERMINED:
                continue
            if j + 1 < nx and labels[i, j + 1] != UNDETERMINED and labels[i, j + 1] != a:
                segs.append(((j + 0.5, i - 0.5), (j + 0.5, i + 0.5)))
            if i + 1 < ny and labels[i + 1, j] != UNDETERMINED and labels[i + 1, j] != a:
                segs.append(((j - 0.5, i + 0.5), (j + 0.5, i + 0.5)))
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
    region_labels: list = field(default_factory=list)   # "I", "II-A", "II-B" texts
    hatches: list = field(default_factory=list)         # Rectangles over undetermined cells
    diagram: Any = None


@dataclass
class PhaseDiagram:
    """A variable over (temperature x load), in display order, with its regime labels.

    Row 0 is the top row (hottest), column 0 the left column (lowest load).

    Attributes
    ----------
    var : str
    values : ndarray (ny, nx)
    x, y : str               dim names (load, temperature by default)
    x_values, y_values : ndarray   coordinate values in display order
    x_label, y_label, value_label : str   from attrs (long_name and units)
    regime : ndarray (ny, nx) of int8 or None
    reason : ndarray (ny, nx) of int8 or None   (``undetermined_reason`` flags)
    confidence : ndarray (ny, nx) or None
    title : str
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
        da = _reduce(ds[var] if var in ds else storage.normalized_test_error(ds), ds, keep)

        xv, yv = ds[x].values, ds[y].values
        xo = np.argsort(xv, kind="stable")
        yo = np.argsort(yv, kind="stable")
        if _hotter(ds, y) != "decreasing":   # larger = hotter -> largest on top
            yo = yo[::-1]
        values = np.asarray(da.values, dtype=np.float64)[np.ix_(yo, xo)]

        if regimes is True:
            regimes = _regimes(ds, classify_kw, temps)
        reg_da = conf_da = reason_da = None
        if isinstance(regimes, xr.Dataset):
            reg_da = regimes["regime"]
            conf_da = regimes.get("regime_confidence")
            reason_da = regimes.get("undetermined_reason")
        elif isinstance(regimes, xr.DataArray):
            reg_da = regimes

        def table(a: xr.DataArray | None, dtype: Any) -> np.ndarray | None:
            if a is None:
                return None
            extra = [d for d in a.dims if d not in keep]
            if extra:
                raise ResultsError(f"{a.name} has dims {extra} besides {keep}; select them "
                                   "first")
            a = a.transpose(*keep)
            return np.asarray(a.values, dtype=dtype)[np.ix_(yo, xo)]

        return cls(var=var, values=values, x=x, y=y, x_values=xv[xo], y_values=yv[yo],
                   x_label=_label(ds, x), y_label=_label(ds, y),
                   value_label=(_label(ds, var) if var in ds
                                else da.attrs.get("long_name", var)),
                   regime=table(reg_da, np.int8), reason=table(reason_da, np.int8),
                   confidence=table(conf_da, np.float64), title=sweep_name(ds))

    # ------------------------------------------------------------------ drawing
    def plot(self, ax: Any = None, *, cmap: Any = None, vmin: float | None = None,
             vmax: float | None = None, annotate: bool = True, fmt: str = "{:.3g}",
             boundaries: bool = True, region_labels: bool = True, colorbar: bool = True,
             title: str | None = None, boundary_kw: Mapping[str, Any] | None = None
             ) -> PhaseDiagramArtists:
        """Draw the heatmap with values, regime boundaries and region names.

        Cells are categorical: cell (i, j) is centred at x = j, y = i with ticks labelled by
        the coordinate values.  Undetermined cells are hatched (``//``; ``xx`` when the runs
        diverged or failed; ``..`` when not computed yet).

        Returns
        -------
        PhaseDiagramArtists
        """
        import matplotlib.pyplot as plt
        from matplotlib.collections import LineCollection
        from matplotlib.colors import ListedColormap
        from matplotlib.patches import Rectangle

        if ax is None:
            ny0, nx0 = self.values.shape
            _, ax = plt.subplots(figsize=(1.2 * nx0 + 2.8, 0.8 * ny0 + 1.6),
                                 layout="constrained")
        fig = ax.figure
        ny, nx = self.values.shape
        vals = np.ma.masked_invalid(self.values)
        is_regime = self.var == "regime"
        if is_regime:
            cmap = ListedColormap([_REGIME_COLORS[c] for c in (-1, 0, 1, 2)])
            vmin, vmax = -1.5, 2.5
        elif cmap is None:
            cmap = "RdBu" if self.var in _DIVERGING else "viridis"
            if self.var in _DIVERGING and vmin is None and vmax is None and vals.count():
                m = float(np.abs(vals).max()) or 1.0
                vmin, vmax = -m, m
        image = ax.imshow(vals, origin="upper", extent=(-0.5, nx - 0.5, ny - 0.5, -0.5),
                          aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax,
                          interpolation="nearest")
        ax.set_xticks(range(nx), [_fmt_tick(v) for v in self.x_values])
        ax.set_yticks(range(ny), [_fmt_tick(v) for v in self.y_values])
        ax.set_xlabel(self.x_label)
        ax.set_ylabel(f"{self.y_label}  (hotter up)")
        ax.set_title(textwrap.fill(self.value_label, 48) if title is None else title,
                     fontsize=10)

        cbar = None
        if colorbar:
            cbar = fig.colorbar(image, ax=ax, label=self.var)
            if is_regime:
                cbar.set_ticks([-1, 0, 1, 2], labels=[REGIMES[c] for c in (-1, 0, 1, 2)])

        annotations = []
        if annotate:
            norm, cm = image.norm, image.cmap
            for i in range(ny):
                for j in range(nx):
                    v = self.values[i, j]
                    if not np.isfinite(v):
                        continue
                    text = REGIMES[int(v)] if is_regime else fmt.format(v)
                    r, g, b, _ = cm(norm(v))
                    color = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                    off = 0.15 if (region_labels and self.regime is not None) else 0.0
                    annotations.append(ax.text(j, i + off, text, ha="center", va="center",
                                               fontsize=8, color=color))

        lines = None
        region_texts = []
        hatches = []
        if self.regime is not None:
            if boundaries:
                segs = boundary_segments(self.regime)
                kw = {"colors": "black", "linewidths": 2.5, "zorder": 3}
                kw.update(dict(boundary_kw or {}))
                lines = ax.add_collection(LineCollection(segs, **kw))
            if region_labels and not is_regime:
                for lab, cells in _components(self.regime):
                    cy = np.mean([c[0] for c in cells])
                    cx = np.mean([c[1] for c in cells])
                    i, j = min(cells, key=lambda c: (c[0] - cy) ** 2 + (c[1] - cx) ** 2)
                    dy = -0.25 if annotate else 0.0
                    region_texts.append(ax.text(
                        j, i + dy, REGIMES[lab], ha="center", va="center", fontsize=9,
                        fontweight="bold", zorder=4,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                              "alpha": 0.75}))
            for i in range(ny):
                for j in range(nx):
                    if self.regime[i, j] != UNDETERMINED:
                        continue
                    reason = int(self.reason[i, j]) if self.reason is not None else -1
                    hatch = {REASONS["diverged_or_failed"]: "xx",
                             REASONS["not_computed"]: ".."}.get(reason, "//")
                    hatches.append(ax.add_patch(Rectangle(
                        (j - 0.5, i - 0.5), 1, 1, fill=False, hatch=hatch, edgecolor="0.35",
                        linewidth=0, zorder=2)))
        ax.set_xlim(-0.5, nx - 0.5)
        ax.set_ylim(ny - 0.5, -0.5)
        return PhaseDiagramArtists(figure=fig, ax=ax, image=image, colorbar=cbar,
                                   annotations=annotations, boundaries=lines,
                                   region_labels=region_texts, hatches=hatches, diagram=self)


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
        figsize = (ncols * (1.2 * nx + 2.8), nrows * (0.8 * ny + 1.8) + 0.4)
    fig, axs = plt.subplots(nrows, ncols, figsize=figsize, layout="constrained", squeeze=False)
    arts = [d.plot(ax=a, **plot_kw) for d, a in zip(diagrams, axs.flat)]
    for a in list(axs.flat)[n:]:
        a.set_visible(False)
    fig.suptitle(sweep_name(ds) if title is None else title)
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
    mean = _reduce(curve, ds, cell + ["t"])
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
        for code in (0, 1, 2, UNDETERMINED):
            sel = flat[codes == code]
            sel = sel[np.isfinite(sel).any(1)] if sel.size else sel
            if not len(sel):
                continue
            with np.errstate(all="ignore"):
                m = np.nanmean(sel, 0)
            lab = f"{REGIMES[code]} ({len(sel)} cells)"
            lines += ax.plot(t, m, color=_REGIME_COLORS[code], lw=2, label=lab)
            labels.append(lab)
    else:
        idx = list(np.ndindex(*mean.shape[:-1]))
        for k, (row, code) in enumerate(zip(flat, codes)):
            if not np.isfinite(row).any():
                continue
            lab = ", ".join(f"{d}={_fmt_tick(ds[d].values[i])}" for d, i in zip(cell, idx[k]))
            lines += ax.plot(t, row, color=_REGIME_COLORS[int(code)], lw=1, alpha=0.8,
                             label=lab)
            labels.append(lab)
    ax.set_xlabel(_label(ds, "t"))
    ax.set_ylabel(f"{split} {quantity}")
    ax.set_title(sweep_name(ds) or "linear path between retrained pairs")
    if by == "regime" and lines:
        ax.legend(fontsize=8)
    return LMCCurvesArtists(figure=ax.figure, ax=ax, lines=lines, labels=labels)


_SAVE_SUFFIXES = (".png", ".pdf", ".svg")


def save(fig: Any, path: str | Path, *, dpi: int = 150) -> Path:
    """Save a figure; the format follows the suffix (``.png``, ``.pdf`` or ``.svg``)."""
    path = Path(path)
    if path.suffix.lower() not in _SAVE_SUFFIXES:
        raise SpecError(f"path suffix must be one of {', '.join(_SAVE_SUFFIXES)}; got "
                        f"{path.suffix or '(none)'!r} in {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path
