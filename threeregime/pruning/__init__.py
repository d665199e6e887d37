"""Pruning (torch half, after :mod:`threeregime.models`).

- :mod:`~threeregime.pruning.masks` -- one-shot unstructured masks (magnitude, global, lamp,
  random, N:M) and the pruner registry;
- :mod:`~threeregime.pruning.nm_training` -- N:M sparse training with progressive gradient
  flow;
- :mod:`~threeregime.pruning.channel` -- structured channel pruning;
- :mod:`~threeregime.pruning.families` -- from a method name to what retraining needs.
"""
