"""Tiny name -> factory registries (data sources, models, pruners, measures), torch-free.

Every :class:`Registry` records the names registered under its kind in :data:`NAMES`, a plain
table that imports nothing, so :mod:`threeregime.spec.specs` can accept a newly registered name
(e.g. a pruner) without importing the torch-side module that holds the factory.  The built-in
names of a torch-side registry are in :data:`BUILTIN` (so ``measure: {extra: [robustness]}``
validates in a process that never imports torch); ``tests/test_builtin_names.py`` checks that
the registries register exactly those.

Unknown names and options raise :class:`~threeregime.errors.FieldError` (re-exported here),
which carries the field it is about.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from .errors import FieldError, SpecError, did_you_mean

__all__ = ["BUILTIN", "NAMES", "FieldError", "Registry", "registered_names", "resolve_options"]

T = TypeVar("T")

#: kind -> names the torch-side module registers when it is imported (``measures.MEASURES``;
#: ``corruption``: :data:`threeregime.data.corruptions.CORRUPTIONS`, in its order)
BUILTIN: dict[str, tuple[str, ...]] = {
    "measure": ("lmc", "cka", "hessian", "robustness"),
    "corruption": ("shift", "scale", "mask", "contrast", "brightness", "gaussian_noise", "blur",
                   "jpeg")}

#: kind -> names known so far: the built-ins, then those :meth:`Registry.register` adds
NAMES: dict[str, set[str]] = {kind: set(names) for kind, names in BUILTIN.items()}


def registered_names(kind: str) -> frozenset[str]:
    """Names registered so far under ``kind``: its :data:`BUILTIN` names before the registering
    module loads (none for a kind without built-ins listed there)."""
    return frozenset(NAMES.get(kind, ()))


class Registry(Generic[T]):
    """A mapping from names to factories with helpful errors.

    >>> r = Registry("example"); r.register("mlp")(dict) is dict
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        NAMES.setdefault(kind, set())

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise SpecError(f"{self.kind} '{name}' is already registered")
            self._items[name] = obj
            NAMES[self.kind].add(name)
            return obj
        return deco

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a temporary entry clean up with this)."""
        self._items.pop(name, None)
        NAMES[self.kind].discard(name)

    def get(self, name: str, field: str | None = None) -> T:
        try:
            return self._items[name]
        except KeyError:
            msg = (f"unknown {self.kind} {name!r}{did_you_mean(name, self._items)}; "
                   f"known: {', '.join(sorted(self._items))}")
            if field:
                raise FieldError(field, f"{field}: {msg}") from None
            raise SpecError(msg) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


def resolve_options(kind: str, name: str, given: Mapping, defaults: Mapping) -> dict:
    """Merge ``given`` options over ``defaults``; an unknown key is a one-line FieldError.

    >>> resolve_options("model", "mlp", {"hidden": [8]}, {"hidden": [128, 128]})
    {'hidden': [8]}
    """
    for key in given:
        if key not in defaults:
            allowed = ", ".join(sorted(defaults)) or f"none (this {kind} takes no options)"
            raise FieldError(f"options.{key}",
                             f"options.{key}: unknown option for {kind} {name!r}"
                             f"{did_you_mean(str(key), defaults)}; allowed: {allowed}")
    return {**defaults, **given}
