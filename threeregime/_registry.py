"""Tiny name -> factory registries (data sources, models, pruners)."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from ._errors import SpecError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to factories with helpful errors.

    >>> r = Registry("model"); r.register("mlp")(dict) is dict
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise SpecError(f"{self.kind} '{name}' is already registered")
            self._items[name] = obj
            return obj
        return deco

    def get(self, name: str, field: str | None = None) -> T:
        try:
            return self._items[name]
        except KeyError:
            where = f"{field}: " if field else ""
            raise SpecError(
                f"{where}unknown {self.kind} {name!r}{did_you_mean(name, self._items)}; "
                f"known: {', '.join(sorted(self._items))}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


def resolve_options(kind: str, name: str, given: Mapping, defaults: Mapping) -> dict:
    """Merge ``given`` options over ``defaults``; an unknown key is a one-line SpecError.

    >>> resolve_options("model", "mlp", {"hidden": [8]}, {"hidden": [128, 128]})
    {'hidden': [8]}
    """
    for key in given:
        if key not in defaults:
            allowed = ", ".join(sorted(defaults)) or f"none (this {kind} takes no options)"
            raise SpecError(f"options.{key}: unknown option for {kind} {name!r}"
                            f"{did_you_mean(str(key), defaults)}; allowed: {allowed}")
    return {**defaults, **given}
