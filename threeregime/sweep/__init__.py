"""Sweeps (torch half, last layer): from a sweep spec to a results Dataset.

- :mod:`~threeregime.sweep.plan` -- content-addressed stage specs, the store layout, tasks
  (torch-free);
- :mod:`~threeregime.sweep.stages` -- the idempotent dense / retrain / measure stages;
- :mod:`~threeregime.sweep.driver` -- ``run_sweep``, ``run_point``, ``sweep_status``;
- :mod:`~threeregime.sweep.executors` -- inline, process pool, dask, Slurm;
- :mod:`~threeregime.sweep.torchio` -- torch checkpoints through the atomic writer.
"""
