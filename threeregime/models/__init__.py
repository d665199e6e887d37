"""Models (torch half, after :mod:`threeregime.data`).

- :mod:`~threeregime.models.zoo` -- the model zoo by name (mlp, cnn1d, preresnet20, vgg),
  ``build_model`` and ``prunable_names``.
"""
