"""An on-disk cache of generated data sets, so each process does not generate them again.

Generating MNIST-1D (4,000 + 1,000 examples and a 1,000-example validation set) costs about
6 CPU-s, once per process: every worker of a sweep, and every ``threeregime tune`` call, paid
it (18 % of a tune cell in a profile, docs/tuning.md).  :func:`threeregime.data.sources.load_data`
stores the :class:`~threeregime.data.sources.Splits` of a source registered with
``disk_cache=True`` (procedurally generated, no augmentation) in one file per data spec, and
later processes read it (a few milliseconds).  The file holds the very tensors the generation
gave, so a cached load equals a fresh one bit for bit (``tests/test_data_cache.py``).

Where: ``$THREEREGIME_DATA_CACHE`` when set (``off`` or ``0``: no disk cache), else
``data/`` under ``$THREEREGIME_CACHE``, else under the platform's user cache folder
(``~/.cache/threeregime/data`` on Linux).  File name: ``<source>-<key>.pt``, ``key`` the
:func:`~threeregime.spec.specs.spec_hash` of the data spec, the format version and the versions
of the packages that generate the data (``mnist1d``, ``numpy``), so an upgrade that could change
the data regenerates it.  Files are written to a temporary name and renamed (several processes
may write the same file; the last rename wins, all with equal content).  A file that cannot be
read or does not match the spec's shapes is ignored and rewritten; a cache folder that cannot be
written is skipped silently (the data is then generated in every process, as before).
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..spec.specs import DataSpec, spec_hash

__all__ = ["FORMAT", "cache_dir", "cache_path", "read", "write"]

#: bump when the stored layout (or what a source generates for a spec) changes
FORMAT = 1
_OFF = ("off", "0", "false", "no")
_PACKAGES = ("mnist1d", "numpy")


def cache_dir() -> Path | None:
    """The data cache folder, or None when switched off (``THREEREGIME_DATA_CACHE=off``)."""
    env = os.environ.get("THREEREGIME_DATA_CACHE")
    if env is not None:
        return None if env.strip().lower() in _OFF or not env.strip() else Path(env).expanduser()
    root = os.environ.get("THREEREGIME_CACHE")
    if not root:
        from platformdirs import user_cache_dir

        root = user_cache_dir("threeregime")
    return Path(root).expanduser() / "data"


def _version(pkg: str) -> str:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def cache_path(spec: DataSpec) -> Path | None:
    """The cache file of ``spec`` (None when the cache is off)."""
    root = cache_dir()
    if root is None:
        return None
    key = spec_hash({"data": spec, "format": FORMAT,
                     "versions": {p: _version(p) for p in _PACKAGES}})
    return root / f"{spec.name}-{key}.pt"


def _checked(t: Any, dtype: torch.dtype, n: int | None) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or t.dtype != dtype or (n is not None and len(t) != n):
        raise ValueError("cached tensor does not match its spec")
    return t.contiguous()


def read(spec: DataSpec) -> dict[str, Any] | None:
    """The cached splits of ``spec`` as a dict (``train``, ``test``, ``val``: ``(x, y)`` or
    None; ``num_classes``, ``input_shape``), or None when absent, off or unreadable."""
    path = cache_path(spec)
    if path is None or not path.is_file():
        return None
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        sizes = {"train": spec.train_size, "test": spec.test_size, "val": spec.val_size}
        out: dict[str, Any] = {"num_classes": int(raw["num_classes"]),
                               "input_shape": tuple(int(v) for v in raw["input_shape"])}
        for split, n in sizes.items():
            if raw[split] is None:
                if split == "val" and spec.val_size is not None:
                    raise ValueError("validation split missing")
                out[split] = None
                continue
            x, y = raw[split]
            x, y = _checked(x, torch.float32, n), _checked(y, torch.int64, n)
            if len(x) != len(y) or tuple(x.shape[1:]) != out["input_shape"]:
                raise ValueError("cached split has inconsistent shapes")
            out[split] = (x, y)
        return out
    except Exception:  # noqa: BLE001 - any unreadable or stale file is regenerated
        return None


def write(spec: DataSpec, splits: Any) -> Path | None:
    """Store ``splits`` (a :class:`~threeregime.data.sources.Splits`) for ``spec``; returns the
    file, or None when the cache is off or its folder cannot be written."""
    path = cache_path(spec)
    if path is None:
        return None

    def pair(td: Any) -> tuple | None:
        return None if td is None else (td.x.contiguous(), td.y.contiguous())

    payload = {"train": pair(splits.train), "test": pair(splits.test), "val": pair(splits.val),
               "num_classes": int(splits.num_classes),
               "input_shape": [int(v) for v in splits.input_shape]}
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)
        return path
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return None
