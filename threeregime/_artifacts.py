"""Atomic files and claims: the durability layer of the sweep driver.

Every artifact is written to a unique temporary name in its final directory, flushed and
fsynced, then renamed over the final name (``os.replace`` is atomic on POSIX), so a reader sees
either nothing or a complete file, and a crash at any moment leaves at most an orphaned
``.tmp`` file, which is never read as a result and is removed by :func:`clean_temp`.

Claims (``claim``/``release``) let several processes share one sweep directory: a claim is a
file created with ``O_CREAT | O_EXCL`` holding the owner's host, pid and time. A claim whose
process is gone (same host) or older than ``stale_after`` seconds is taken over.  A claim is
created complete (written to a temporary file, then hard-linked to its name), so a crash never
leaves an empty claim that would block a stage until it goes stale.

Fault injection (a named test hook, :func:`fault`): the durability layer is tested by crashing
a sweep at each point of :data:`FAULT_POINTS`.  With ``THREEREGIME_FAULT=point:n`` in the
environment when this module is imported, the process SIGKILLs itself (``point:n:INT``: sends
itself SIGINT, a Ctrl-C) at its n-th call of ``fault(point)``.  Unset (the normal case),
``fault`` is a function that does nothing, bound once at import: no parsing, no lookup.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._errors import ResultsError

TMP_SUFFIX = ".tmp"
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
# ".<name>.<host hash>_<pid>.<random>.tmp": clean_temp knows whose temporary file it is
_TMP_OWNER = re.compile(r"\.([0-9a-f]{8})_(\d+)\.[0-9a-f]{8}\.tmp")

#: The named fault points of the package (see the module docstring):
#: dense / prune / retrain / measure: inside the stage, before its work is committed;
#: claim: before a claim file is created; write: a complete temporary file not yet renamed.
FAULT_POINTS = ("dense", "prune", "retrain", "measure", "claim", "write")


def _no_fault(point: str) -> None:
    """Fault hook when ``THREEREGIME_FAULT`` is unset: free."""


def _fault_injector(setting: str) -> Callable[[str], None]:
    """The armed hook for ``THREEREGIME_FAULT=point:n[:SIGNAL]``."""
    parts = setting.split(":")
    want = parts[0]
    n = int(parts[1]) if len(parts) > 1 else 1
    sig = getattr(signal, f"SIG{parts[2] if len(parts) > 2 else 'KILL'}")
    if want not in FAULT_POINTS:
        raise ValueError(f"THREEREGIME_FAULT point must be one of {', '.join(FAULT_POINTS)}; "
                         f"got {want!r}")
    calls = [0]

    def fault(point: str) -> None:
        if point != want:
            return
        calls[0] += 1
        if calls[0] == n:
            os.kill(os.getpid(), sig)
    return fault


#: ``fault(point)``: the test hook called at each of :data:`FAULT_POINTS`.
fault: Callable[[str], None] = (_fault_injector(os.environ["THREEREGIME_FAULT"])
                                if os.environ.get("THREEREGIME_FAULT") else _no_fault)


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{_HOST}_{os.getpid()}.{uuid.uuid4().hex[:8]}"
                          f"{TMP_SUFFIX}")


def _fsync_dir(folder: Path) -> None:
    """Flush a directory entry (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` then atomically move the result to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        writer(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        fault("write")
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ResultsError(f"cannot write {path}: {e.strerror or e} (check free disk space "
                           "and write permission of the output directory)") from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)  # make the rename itself durable
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    text = json.dumps(obj, indent=1, sort_keys=True, default=str)
    return atomic_write(path, lambda p: p.write_text(text))


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        msg = f"{path} is unreadable or corrupt ({e}); delete it to recompute"
        raise ResultsError(msg) from None


def clean_temp(root: str | Path, *, max_age: float = 3600.0) -> int:
    """Remove orphaned temporary files under ``root``; return the count.

    A temporary file written on this host is orphaned when the process named in it is gone
    (a crash); one from another host, or without an owner in its name, when it is older than
    ``max_age`` seconds.  Files of live writers are left alone.
    """
    n = 0
    now = time.time()
    for p in Path(root).rglob(f".*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            m = _TMP_OWNER.search(p.name)
            if m and m.group(1) == _HOST:
                orphan = int(m.group(2)) != os.getpid() and not _pid_alive(int(m.group(2)))
            else:
                orphan = now - p.stat().st_mtime > max_age
            if orphan:
                p.unlink()
                n += 1
    return n


# --------------------------------------------------------------------------- claims
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (dead, not yet reaped by its parent) is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def claim(path: str | Path, *, stale_after: float = 6 * 3600) -> bool:
    """Try to take the claim file ``path``; True if this process now holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
    for _ in range(2):
        fault("claim")
        tmp = _tmp_name(path)
        tmp.write_text(json.dumps(me))
        try:
            os.link(tmp, path)   # atomic, fails if the claim exists: never an empty claim
        except FileExistsError:
            try:
                owner = json.loads(path.read_text() or "{}")
            except (OSError, ValueError):
                owner = {}
            if owner.get("pid") == me["pid"] and owner.get("host") == me["host"]:
                return True
            try:
                since = float(owner.get("time", path.stat().st_mtime))
            except (OSError, TypeError, ValueError):
                continue  # released meanwhile (or unreadable time): try again
            stale = ((owner.get("host") == me["host"] and owner.get("pid")
                      and not _pid_alive(int(owner["pid"])))
                     or time.time() - since > stale_after)
            if not stale:
                return False
            with contextlib.suppress(OSError):
                path.unlink()  # take over a stale claim, then retry once
            continue
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return True
    return False


def clean_claims(folder: str | Path) -> int:
    """Remove the claims in ``folder`` left by dead processes of this host; return the count."""
    n = 0
    host = socket.gethostname()
    for p in Path(folder).glob("*.claim"):
        try:
            owner = json.loads(p.read_text() or "{}")
            dead = owner.get("host") == host and not _pid_alive(int(owner["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if dead:
            with contextlib.suppress(OSError):
                p.unlink()
                n += 1
    return n


def release(path: str | Path) -> None:
    with contextlib.suppress(OSError):
        Path(path).unlink()


@contextlib.contextmanager
def claimed(path: str | Path, **kw) -> Iterator[bool]:
    got = claim(path, **kw)
    try:
        yield got
    finally:
        if got:
            release(path)
