"""Statistics at the level of the independent replicate (torch-free: numpy / scipy).

The unit of every statistic a rule, the advice or a validation decides on is the **dense seed**
(STYLE rule 14): the retraining seeds and the seed pairs of one dense model share its weights,
data order and pruning mask, and on the validation corpus the dense seed carries 61-88 % of the
variance of the retrained test error (issue 18).  So replicates nested inside a dense seed are
averaged first (:func:`unit_means`), and means, standard errors, t statistics and intervals are
taken over the dense-seed means (:func:`mean_sem`, :func:`one_sample_t`, :func:`t_interval`),
with ``n - 1`` degrees of freedom for ``n`` dense seeds.  Pooled quantities over (dense seed x
pair) are kept only as diagnostics (``*_pooled`` variables, see :mod:`threeregime.storage`).

:func:`mean_sem` is the one mean / standard error helper of the package.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

__all__ = ["mean_sem", "one_sample_t", "pooled_sem", "t_interval", "t_quantile", "unit_means"]


def mean_sem(a: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, standard error of the mean and count along ``axis``, ignoring NaN.

    The standard error is ``sd / sqrt(n)`` with the sample standard deviation (``ddof=1``); NaN
    where fewer than two values are finite.  The mean is NaN where none is.

    Returns
    -------
    mean, sem : float arrays (``a``'s shape without ``axis``)
    n : int array, the finite values counted
    """
    a = np.moveaxis(np.asarray(a, dtype=np.float64), axis, -1)
    ok = np.isfinite(a)
    n = ok.sum(-1)
    with np.errstate(all="ignore"):
        mean = np.where(n > 0, np.where(ok, a, 0.0).sum(-1) / np.maximum(n, 1), np.nan)
        dev = np.where(ok, a - mean[..., None], 0.0)
        sd = np.sqrt((dev ** 2).sum(-1) / np.maximum(n - 1, 1))
        sem = np.where(n >= 2, sd / np.sqrt(np.maximum(n, 1)), np.nan)
    return mean, sem, n


def unit_means(a: np.ndarray, nested: Sequence[int]) -> np.ndarray:
    """Average the axes ``nested`` (replicates inside one unit), ignoring NaN.

    A unit whose nested values are all NaN gives NaN (no warning).
    """
    a = np.asarray(a, dtype=np.float64)
    if not len(nested):
        return a
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN units: NaN
        return np.nanmean(a, axis=tuple(nested))


def pooled_sem(a: np.ndarray, within: int) -> np.ndarray:
    """Standard error of each cell's mean from the unit spread pooled over axis ``within``.

    ``a`` holds unit values with the units on the last axis (e.g. ``(n_col, n_temp,
    n_dense)``); ``within`` is an axis of the cell shape ``a.shape[:-1]`` (e.g. 1: the cells of
    a column).  The unit variance is pooled over ``within`` (summed squared deviations over the
    summed degrees of freedom) and divided by each cell's own count of finite units.  This is a
    noise floor measured in the sweep itself: a cell whose few seeds happen to agree cannot
    claim less noise than its column shows.  NaN where a cell has no unit or nothing pools.
    """
    a = np.asarray(a, dtype=np.float64)
    ok = np.isfinite(a)
    n = ok.sum(-1)
    with np.errstate(all="ignore"):
        mean = np.where(n > 0, np.where(ok, a, 0.0).sum(-1) / np.maximum(n, 1), np.nan)
        ss = np.where(ok, (a - mean[..., None]) ** 2, 0.0).sum(-1)  # per cell
        dof = np.maximum(n - 1, 0)
        var = ss.sum(within, keepdims=True) / dof.sum(within, keepdims=True)
        return np.where(n > 0, np.sqrt(var / np.maximum(n, 1)), np.nan)


def one_sample_t(mean: np.ndarray, sem: np.ndarray) -> np.ndarray:
    """The one-sample t statistic ``mean / sem`` (NaN where sem is 0 or NaN)."""
    with np.errstate(all="ignore"):
        sem = np.asarray(sem, dtype=np.float64)
        return np.where(sem > 0, np.asarray(mean, dtype=np.float64) / sem, np.nan)


def t_quantile(level: float, dof: np.ndarray) -> np.ndarray:
    """Two-sided ``level`` quantile of Student's t with ``dof`` degrees of freedom (NaN for
    dof < 1)."""
    from scipy.stats import t

    dof = np.asarray(dof, dtype=np.float64)
    with np.errstate(all="ignore"):
        return np.where(dof >= 1, t.ppf(0.5 + level / 2, np.maximum(dof, 1)), np.nan)


def t_interval(mean: np.ndarray, sem: np.ndarray, n: np.ndarray,
               level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided t interval ``mean -/+ t_{n-1} sem`` over ``n`` units."""
    q = t_quantile(level, np.asarray(n) - 1)
    return mean - q * sem, mean + q * sem
