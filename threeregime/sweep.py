"""Former home of the sweep driver, kept as an alias for old imports.

The sweep is now :mod:`threeregime.plan` (jobs, keys, store layout, grouping),
:mod:`threeregime.stages` (the idempotent stage functions) and :mod:`threeregime.driver`
(``run_sweep``, ``run_point``, ``sweep_status``, ``assemble``).  New code imports from those.
"""
from __future__ import annotations

from .driver import assemble, default_out, run_point, run_sweep, sweep_status
from .plan import plan_sweep

__all__ = ["assemble", "default_out", "plan_sweep", "run_point", "run_sweep", "sweep_status"]
