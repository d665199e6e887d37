"""Data (torch half, first layer).

- :mod:`~threeregime.data.sources` -- data sources by name (mnist1d, digits,
  teacher_student, cifar10), :class:`~threeregime.data.sources.TensorData`, ``load_data``;
- :mod:`~threeregime.data.corruptions` -- input corruptions at severities 1..5.
"""
