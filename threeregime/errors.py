"""Exception and warning types.

Every error raised for bad *user input* is a :class:`ThreeRegimeError` whose message is one
line naming the field, the value received and what is allowed.  The command-line front end
prints such errors without a traceback.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["ThreeRegimeError", "SpecError", "FieldError", "DataError", "ResultsError",
           "ThreeRegimeWarning", "did_you_mean"]


class ThreeRegimeError(Exception):
    """Base class of the library's user-facing errors."""


class SpecError(ThreeRegimeError, ValueError):
    """A specification (YAML file, dataclass field, function argument) is invalid."""


class FieldError(SpecError):
    """A one-line SpecError about ``field``; its message starts with the field's path.

    A caller that knows where the field sits (``base.model``, ``sweeps/x.yaml: axes``) prefixes
    the location from :attr:`field` (:meth:`under`) instead of re-parsing message text.

    >>> str(FieldError("density", "density must be in (0, 1]; got 2").under("prune"))
    'prune.density must be in (0, 1]; got 2'
    """

    def __init__(self, field: str, message: str | None = None) -> None:
        if message is None:  # ``type(e)(text)``, as re-wrapping code does: no known field
            field, message = "", field
        super().__init__(message)
        self.field = field

    def under(self, prefix: str) -> FieldError:
        """The same error located under ``prefix`` (``prefix.field ...``)."""
        return FieldError(f"{prefix}.{self.field}", f"{prefix}.{self}")


class DataError(ThreeRegimeError, ValueError):
    """Data cannot be found, read or is unsuitable for the requested work."""


class ResultsError(ThreeRegimeError, ValueError):
    """A results file or directory is missing, corrupt or belongs to another spec."""


class ThreeRegimeWarning(UserWarning):
    """Warnings issued by the library (turned into errors in the test suite)."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest known name, or ``""``."""
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
