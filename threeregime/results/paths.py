"""Paths a user gives, checked before any work: a file to write, a file to read as netCDF.

A file to write must have an existing folder (nothing is created for it: a mistyped
``/no/such/dir/out.nc`` is an error, not a new folder tree); a file read as results must start
as a netCDF file does, so a user's own script or picture is told apart from a damaged results
file (only the latter is "corrupt ... delete it to recompute").
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import SpecError

__all__ = ["check_output_path", "looks_like_netcdf"]

#: how netCDF files begin: classic (CDF 1, 2, 5) or netCDF-4 / HDF5, whose signature may sit
#: after a user block of 512, 1024, 2048 ... bytes
_CDF_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def looks_like_netcdf(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts as a netCDF file does (a script or a PNG does not; a truncated
    results file does).  An unreadable file counts as one: its reader reports why."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if head[:4] in _CDF_MAGIC or head == _HDF5_MAGIC:
                return True
            offset = 512
            while offset < 1 << 20:
                f.seek(offset)
                if f.read(8) == _HDF5_MAGIC:
                    return True
                offset *= 2
    except OSError:
        return True
    return False


def check_output_path(path: str | os.PathLike, suffixes: tuple[str, ...] | None = None,
                      name: str = "output") -> Path:
    """``path`` as a file to write: its folder existing (nothing is created) and, when
    ``suffixes`` are given, its suffix one of them; else a one-line SpecError naming ``name``.
    """
    p = Path(path)
    if suffixes is not None and p.suffix.lower() not in suffixes:
        raise SpecError(f"{name} {p} must end in {' or '.join(suffixes)}; got "
                        f"{p.suffix or '(no suffix)'!r}")
    if p.is_dir():
        raise SpecError(f"{name} {p} is a directory; give a file path inside it")
    if not p.parent.is_dir():
        raise SpecError(f"{name} {p}: directory {p.parent} does not exist; create it first or "
                        "choose another path")
    return p
