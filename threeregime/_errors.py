"""Exception and warning types.

Every error raised for bad *user input* is a :class:`ThreeRegimeError` whose message is one
line naming the field, the value received and what is allowed.  The command-line front end
prints such errors without a traceback.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["ThreeRegimeError", "SpecError", "DataError", "ResultsError", "ThreeRegimeWarning",
           "did_you_mean"]


class ThreeRegimeError(Exception):
    """Base class of the library's user-facing errors."""


class SpecError(ThreeRegimeError, ValueError):
    """A specification (YAML file, dataclass field, function argument) is invalid."""


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
