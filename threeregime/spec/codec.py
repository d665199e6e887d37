"""Specs as plain data: dict and YAML in and out, the canonical JSON and its hash.

Generic over any frozen dataclass spec (the specs themselves are in :mod:`threeregime.spec.specs`,
which re-exports every public name here):

* :func:`to_dict` / :func:`from_dict`: plain data and back, with type checks and did-you-mean
  on unknown keys; errors are located by the :class:`~threeregime.errors.FieldError` a spec
  raises (its field path), never by re-parsing message text;
* :func:`canonical_json` / :func:`spec_hash`: sorted keys, *fields equal to their default left
  out*, so adding a field with a default renames nothing already stored;
* :func:`read_yaml` / :func:`dump_yaml`: YAML files (a key given twice is an error);
* the validators :func:`check_pos_int`, :func:`check_float`, :func:`check_choice`: the one set
  of the package (re-exported by :mod:`threeregime.spec.specs`, where callers import them from);
* the table of sweepable axes (:data:`AXES`) and its helpers, and :func:`nm_pattern` (the
  ``nm_N_M`` method names), which :class:`~threeregime.spec.specs.SweepSpec` and
  :class:`~threeregime.spec.specs.PruneSpec` use (also re-exported by
  :mod:`threeregime.spec.specs`).

This module imports no torch (and PyYAML only when a file is read or written).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from ..errors import FieldError, SpecError, did_you_mean

__all__ = ["to_dict", "from_dict", "canonical_json", "spec_hash", "read_yaml", "dump_yaml",
           "check_pos_int", "check_float", "check_choice", "choose_one", "Axis", "AXES",
           "AXIS_ALIASES", "METHOD_OPTIONS", "nm_pattern", "axis_values", "apply_axis",
           "cell_exists", "replace_path", "same_value", "field_error"]


def to_dict(spec: Any, *, drop_defaults: bool = False, extras: bool = True) -> Any:
    """Plain-data form of a spec (tuples become lists).

    A spec class may add keys that are not fields with a ``_plain_extra()`` method, read back
    by its ``_from_plain(data)`` (``SweepSpec``: its ``axis_order``, for sorted-key JSON);
    ``extras=False`` leaves them out (the hashed form, YAML, which keeps key order).
    """
    kw = {"drop_defaults": drop_defaults, "extras": extras}
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        out = {}
        for f in dataclasses.fields(spec):
            v = getattr(spec, f.name)
            if drop_defaults:
                default = f.default if f.default is not dataclasses.MISSING else (
                    f.default_factory() if f.default_factory is not dataclasses.MISSING
                    else dataclasses.MISSING)
                if _normalise(v) == _normalise(default):
                    continue
            out[f.name] = to_dict(v, **kw)
        if extras and hasattr(spec, "_plain_extra"):
            out.update(spec._plain_extra())
        return out
    if isinstance(spec, Mapping):
        return {str(k): to_dict(v, **kw) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return [to_dict(v, **kw) for v in spec]
    return spec


def _normalise(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return json.dumps(to_dict(v, drop_defaults=True), sort_keys=True)
    if isinstance(v, (list, tuple)):
        return [_normalise(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _normalise(x) for k, x in v.items()}
    return v


def canonical_json(spec: Any) -> str:
    """Sorted-key JSON with fields equal to their default left out (the hashed form; no
    :func:`to_dict` extras)."""
    return json.dumps(to_dict(spec, drop_defaults=True, extras=False), sort_keys=True,
                      separators=(",", ":"), allow_nan=False)


def spec_hash(spec: Any, *, length: int = 16) -> str:
    """Content address of a spec (hex digest of :func:`canonical_json`)."""
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:length]


#: field types taken as they are (no conversion), and how an error names them
_EXACT: dict[type, str] = {bool: "true or false", str: "a string"}


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        last: SpecError | None = None
        for a in non_none:
            try:
                return _coerce(a, value, path)
            except SpecError as e:
                last = e
        assert last is not None
        raise last
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise SpecError(f"{path} must be a mapping of {tp.__name__} fields; got {value!r}")
        return from_dict(tp, value, path=path)
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise SpecError(f"{path} must be a list; got {value!r}")
        item_t = args[0] if args else Any
        return tuple(_coerce(item_t, v, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is Any:
        return value
    if tp is dict or origin is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise SpecError(f"{path} must be a mapping; got {value!r}")
        return dict(value)
    if tp in _EXACT:
        if not isinstance(value, tp):
            raise SpecError(f"{path} must be {_EXACT[tp]}; got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise SpecError(f"{path} must be an integer; got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            try:  # YAML 1.1 reads "1e-4" as a string
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{path} must be a number; got {value!r}")
        return float(value)
    return value


def from_dict(cls: type, data: Mapping, *, path: str = "") -> Any:
    """Build spec ``cls`` from plain data, checking keys and types (did-you-mean on typos)."""
    if not isinstance(data, Mapping):
        raise SpecError(f"{path or cls.__name__} must be a mapping; got {data!r}")
    if hasattr(cls, "_from_plain"):
        data = cls._from_plain(data)
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields:
            raise SpecError(f"{where}: unknown key{did_you_mean(str(key), fields)}; allowed: "
                            f"{', '.join(sorted(fields))}")
        kwargs[key] = _coerce(hints[key], value, where)
    try:
        return cls(**kwargs)
    except FieldError as e:
        if not path:
            raise
        if e.field.split("[", 1)[0] in fields:
            raise e.under(path) from None
        raise SpecError(f"{path}: {e}") from None
    except SpecError as e:
        if not path:
            raise
        raise SpecError(f"{path}: {e}") from None


class _DuplicateKey(ValueError):
    pass


def _unique_key_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that rejects a key given twice in one mapping (YAML keeps the last)."""

        def construct_mapping(self, node, deep=False):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:   # unhashable: SafeLoader reports it below
                    continue
                if first is not None:
                    raise _DuplicateKey(
                        f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first at "
                        f"line {first + 1}); each key may appear once in a mapping")
                seen[key] = key_node.start_mark.line
            return super().construct_mapping(node, deep=deep)

    return Loader


def read_yaml(path: str | Path) -> Mapping:
    """Parse a spec file into a mapping; every error is one line naming the file.

    Raises
    ------
    SpecError
        The file is missing, unreadable, not YAML, has a key twice in one mapping, is empty or
        does not hold a mapping.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise SpecError(f"{p}: spec file not found")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        msg = f"{p}: cannot read the spec file ({e}); give a UTF-8 YAML file"
        raise SpecError(msg) from None
    try:
        raw = yaml.load(text, Loader=_unique_key_loader())  # a SafeLoader subclass
    except _DuplicateKey as e:
        raise SpecError(f"{p}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{p}: malformed YAML{where}: {problem}") from None
    if raw is None:
        raise SpecError(f"{p}: the file is empty; write a sweep (name, base, axes) or a point "
                        "spec (see sweeps/)")
    if not isinstance(raw, Mapping):
        raise SpecError(f"{p}: must contain a mapping of spec fields; got {type(raw).__name__}")
    return raw


def dump_yaml(spec: Any, path: str | Path | None = None, *, drop_defaults: bool = True) -> str:
    """Write a spec as YAML (defaults left out unless ``drop_defaults=False``)."""
    import yaml

    text = yaml.safe_dump(to_dict(spec, drop_defaults=drop_defaults, extras=False),
                          sort_keys=False)
    if path is not None:
        Path(path).write_text(text)
    return text


# --------------------------------------------------------------------------- validators
# The one set of validators of the package: every user-facing check (specs, advise, plotting)
# goes through these, so errors read alike: "<field> must be <allowed>; got <value>".
# Each raises a FieldError, which carries the field's path: from_dict and load_yaml prefix the
# location (``base.prune.density``, ``sweeps/x.yaml: ...``) from it, never from the text.
def field_error(field_name: str, value: Any, allowed: str) -> FieldError:
    """``FieldError`` "<field> must be <allowed>; got <value>"."""
    return FieldError(field_name, f"{field_name} must be {allowed}; got {value!r}")


def check_pos_int(name: str, v: Any, *, allow_none: bool = False, minimum: int = 1) -> None:
    """An integer >= ``minimum`` (or None with ``allow_none``), else a FieldError."""
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise field_error(name, v, f"an integer >= {minimum}" + (" or null" if allow_none
                                                                   else ""))


def check_float(name: str, v: Any, lo: float, hi: float, *, lo_open: bool = False,
                hi_open: bool = False) -> None:
    """A finite number in the interval (open or closed ends), else a FieldError."""
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ok:
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        hi_s = "inf" if hi == math.inf else f"{hi:g}"
        raise field_error(name, v, f"a number in {lb}{lo:g}, {hi_s}{rb}")


def spec_kind(raw: dict, kind: str | None, fields: dict[str, list[str]]) -> str:
    """The kind of spec (a key of ``fields``: kind -> its field names) that ``raw`` is read as:
    ``kind`` if given (checked), else the kind with more top-level keys that are, or nearly
    are, its fields (ties: the last kind), so a sweep with ``axis:`` for ``axes:`` is still
    judged a sweep and told "did you mean 'axes'", as the command line tells it."""
    if kind is not None:
        check_choice("kind", kind, tuple(fields))
        return kind
    score = {k: sum(str(key) in names or bool(did_you_mean(str(key), names)) for key in raw)
             for k, names in fields.items()}
    return max(reversed(list(fields)), key=lambda k: score[k])


def check_choice(name: str, v: Any, choices: tuple[str, ...]) -> None:
    """One of ``choices``, else a FieldError with a did-you-mean."""
    if v not in choices:
        raise FieldError(name, f"{name} must be one of {', '.join(choices)}; got {v!r}"
                               f"{did_you_mean(str(v), choices)}")


def choose_one(name: str, v: Any, choices: Sequence[str], what: str) -> str:
    """``v`` if it is one of ``choices``; the only choice when ``v`` is None; else a FieldError
    (``what`` names the choices, e.g. "the temperature dims")."""
    if v is None:
        if len(choices) != 1:
            raise FieldError(name, f"{name} must name one of {what} "
                                   f"({', '.join(choices) or 'none'}); got None")
        return choices[0]
    check_choice(name, v, tuple(choices))
    return v


# --------------------------------------------------------------------------- methods, axes
_NM_METHOD = re.compile(r"^nm_(\d+)_(\d+)$")


def nm_pattern(method: str) -> tuple[int, int] | None:
    """``(N, M)`` of an ``nm_N_M`` method name, None for any other name.

    Raises
    ------
    FieldError
        ``nm_N_M`` with N = 0 or N > M.
    """
    hit = _NM_METHOD.match(str(method))
    if not hit:
        return None
    n, m = int(hit.group(1)), int(hit.group(2))
    if not 0 < n <= m:
        raise FieldError("method", f"method must be nm_N_M with 0 < N <= M (e.g. nm_2_4); "
                                   f"got {method!r}")
    return n, m


@dataclass(frozen=True)
class Axis:
    """What a sweep axis varies, its role and which way is hotter."""

    name: str
    role: str                 # "temperature" | "load" | "category"
    hotter: str | None        # "increasing" | "decreasing" | None for load/category axes
    field: str                # dotted path into PointSpec
    long_name: str
    units: str
    kind: type                # int, float or str (a category: values kept in the given order)


#: The axes a sweep may vary.  Fewer epochs, a smaller batch, a larger lr and a larger SAM rho
#: all mean a hotter dense run (SPEC.md section 1).  ``prune_method`` and ``retrain_mode`` are
#: categories: one phase diagram per value (string coordinates in the Dataset).
AXES: dict[str, Axis] = {
    "epochs": Axis("epochs", "temperature", "decreasing", "snapshot_epoch",
                   "dense training epochs (snapshot)", "1", int),
    "batch_size": Axis("batch_size", "temperature", "decreasing", "dense.batch_size",
                       "dense training batch size", "1", int),
    "lr": Axis("lr", "temperature", "increasing", "dense.lr", "dense training learning rate",
               "1", float),
    "sam_rho": Axis("sam_rho", "temperature", "increasing", "dense.sam_rho",
                    "SAM radius rho of dense training", "1", float),
    "density": Axis("density", "load", None, "prune.density",
                    "fraction of prunable weights kept", "1", float),
    "train_size": Axis("train_size", "load", None, "data.train_size",
                       "number of training examples", "1", int),
    "prune_method": Axis("prune_method", "category", None, "prune.method", "pruning method",
                         "1", str),
    "retrain_mode": Axis("retrain_mode", "category", None, "retrain_mode",
                         "retraining mode (start of retraining)", "1", str),
}
#: axis names also accepted under their field path (``prune.method: [...]``)
#: (not ``method``: ``Dataset.sel(method=...)`` is xarray's own keyword)
AXIS_ALIASES = {"prune.method": "prune_method", "method": "prune_method"}


def replace_path(obj: Any, path: str, value: Any) -> Any:
    head, _, rest = path.partition(".")
    if not rest:
        return dataclasses.replace(obj, **{head: value})
    return dataclasses.replace(obj, **{head: replace_path(getattr(obj, head), rest, value)})


#: options each method takes (PruneSpec.options); the method axis keeps only these
METHOD_OPTIONS = {"channel": ("norm",),
                   "nm_N_M": ("decay", "beta0", "start", "end", "rate", "steps", "every",
                              "flow", "refine")}


def apply_axis(point: Any, axis: str, value: Any) -> Any:
    """The point spec ``point`` with sweep axis ``axis`` set to ``value``.

    ``prune_method`` replaces the method (an ``nm_N_M`` method takes density N/M, options the
    new method does not take are dropped); ``epochs`` selects the dense snapshot.
    """
    if axis == "prune_method":
        pattern = nm_pattern(value)
        keep = METHOD_OPTIONS.get("nm_N_M" if pattern else value, ())
        prune = dataclasses.replace(
            point.prune, method=value, nm=point.prune.nm if value == "nm" else None,
            density=pattern[0] / pattern[1] if pattern else point.prune.density,
            options={k: v for k, v in point.prune.options.items() if k in keep})
        return dataclasses.replace(point, prune=prune)
    if axis == "epochs":
        if value > point.dense.epochs:
            raise SpecError(f"epochs value {value} exceeds base.dense.epochs "
                            f"({point.dense.epochs}): the epochs axis takes snapshots of one run")
        return dataclasses.replace(point, snapshot_epoch=int(value))
    if axis == "batch_size" and point.dense.iterations is None:
        raise SpecError("the batch_size axis keeps the iteration budget fixed: set "
                        "base.dense.iterations (e.g. epochs x steps per epoch at the base "
                        "batch size)")
    return replace_path(point, AXES[axis].field, value)


def same_value(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9


def cell_exists(coords: dict) -> bool:
    """False for a grid cell that does not exist: an ``nm_N_M`` method at a density != N/M."""
    pattern = nm_pattern(coords.get("prune_method", ""))
    return not (pattern and "density" in coords
                and not same_value(coords["density"], pattern[0] / pattern[1]))


def axis_values(k: str, vals: Any) -> tuple:
    """The values of axis ``k`` checked and cast to its kind (numbers sorted; categories in the
    given order)."""
    if k not in AXES:
        raise SpecError(f"axes.{k} is not a sweepable axis{did_you_mean(k, AXES)}; "
                        f"allowed: {', '.join(AXES)}")
    if isinstance(vals, (str, bytes)) or not isinstance(vals, (list, tuple)):
        raise field_error(f"axes.{k}", vals, "a non-empty list of values")
    if len(vals) == 0:
        raise SpecError(f"axes.{k} must list at least one value; got []")
    kind = AXES[k].kind
    out = []
    for i, v in enumerate(vals):
        if kind is str:
            if not isinstance(v, str) or not v:
                raise field_error(f"axes.{k}[{i}]", v, "a name (string)")
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or (
                kind is int and not float(v).is_integer()):
            raise field_error(f"axes.{k}[{i}]", v, "an integer" if kind is int else "a number")
        out.append(kind(v))
    if len(set(out)) != len(out):
        dup = sorted({v for v in out if out.count(v) > 1})
        raise SpecError(f"axes.{k} has duplicate values {dup}; each value must appear once")
    return tuple(out) if kind is str else tuple(sorted(out))
