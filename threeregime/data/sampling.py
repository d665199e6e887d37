"""Which examples of a data source's pools a :class:`~threeregime.spec.DataSpec` takes.

The training and test sets are seeded subsamples of their pools (``train_size`` /
``test_size``, seed ``spec.seed``): the sorted first ``n`` indices of one seeded permutation,
so for a fixed seed smaller training sets are nested in larger ones.  The validation set
(``val_size``) is the source's own when it generates one; otherwise it is held out of the
training pool: the next ``val_size`` indices of the training permutation, so the training
subsample is the one the spec without ``val_size`` takes.  Used by :func:`threeregime.data.
load_data`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import DataError

__all__ = ["subsample_index", "held_out_index", "take", "pick"]

#: salts of the training and test permutations
_TRAIN, _TEST = 1, 2


def _permutation(n_pool: int, seed: int, salt: int) -> np.ndarray:
    return np.random.default_rng([seed, salt]).permutation(n_pool)


def subsample_index(n_pool: int, size: int | None, seed: int, salt: int, field: str,
                    source: str) -> np.ndarray | None:
    """Sorted indices of a seeded subsample of ``size`` out of ``n_pool`` (None: keep all)."""
    if size is None:
        return None
    if size > n_pool:
        raise DataError(f"{field} must be <= {n_pool} (the examples data source {source!r} "
                        f"has); got {size}")
    return np.sort(_permutation(n_pool, seed, salt)[:size])


def held_out_index(n_pool: int, train_size: int | None, val_size: int, seed: int,
                   source: str) -> np.ndarray:
    """Sorted indices of ``val_size`` training-pool examples outside the training subsample
    (the next ones of its permutation, so the subsample is unchanged)."""
    if train_size is None or train_size + val_size > n_pool:
        raise DataError(f"val_size: data source {source!r} holds validation examples out of its "
                        f"{n_pool}-example training pool, so train_size + val_size must be <= "
                        f"{n_pool}; got train_size {train_size} and val_size {val_size}")
    return np.sort(_permutation(n_pool, seed, _TRAIN)[train_size:train_size + val_size])


def take(x: Any, idx: np.ndarray | None) -> Any:
    """Rows ``idx`` of an array or tensor (None: all of it)."""
    if idx is None:
        return x
    return x[torch.from_numpy(idx)] if isinstance(x, Tensor) else x[idx]


def pick(pools: Any, spec: Any) -> tuple[tuple, tuple, tuple | None]:
    """Raw ``(x, y)`` of the training, test and validation sets (validation None without
    ``spec.val_size``) out of a source's pools (``train_x``, ``train_y``, ``test_x``, ``test_y``,
    and ``val_x``/``val_y`` when the source generated a validation set of its own)."""
    i_tr = subsample_index(len(pools.train_y), spec.train_size, spec.seed, _TRAIN, "train_size",
                           spec.name)
    i_te = subsample_index(len(pools.test_y), spec.test_size, spec.seed, _TEST, "test_size",
                           spec.name)
    train = take(pools.train_x, i_tr), take(pools.train_y, i_tr)
    test = take(pools.test_x, i_te), take(pools.test_y, i_te)
    val = None
    if spec.val_size is not None:
        if pools.val_x is not None:
            val = pools.val_x, pools.val_y
        else:
            i_va = held_out_index(len(pools.train_y), spec.train_size, spec.val_size,
                                  spec.seed, spec.name)
            val = take(pools.train_x, i_va), take(pools.train_y, i_va)
    return train, test, val
