"""Training (torch half, after :mod:`threeregime.pruning`).

- :mod:`~threeregime.training.train` -- :func:`~threeregime.training.train.fit` and
  ``evaluate`` of ensembles;
- :mod:`~threeregime.training.engines` -- the vmap and loop engines and their update;
- :mod:`~threeregime.training.functional` -- stacked functional forward and evaluation of M
  models (also what the metrics evaluate with);
- :mod:`~threeregime.training.device` -- the device rule and the progress-bar factory.

The metrics use ``functional`` and ``device`` only, never the training loop or its engines.
"""
