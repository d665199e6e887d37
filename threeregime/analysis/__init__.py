"""From a results Dataset to regimes, advice and pictures (torch-free).

- :mod:`~threeregime.analysis.features` -- cell means and standard errors, the evidence rules
  read;
- :mod:`~threeregime.analysis.rules` -- the regime rules, their thresholds and scores;
- :mod:`~threeregime.analysis.regimes` -- :func:`~threeregime.analysis.regimes.classify`;
- :mod:`~threeregime.analysis.calibrate` -- fitting and scoring rules, the protocol's tests;
- :mod:`~threeregime.analysis.advice` -- advice on a results Dataset;
- :mod:`~threeregime.analysis.validation` -- advice scored against test error;
- :mod:`~threeregime.analysis.slices` -- one-axis slices of family sweeps (notebook 07);
- :mod:`~threeregime.analysis.plotting`, :mod:`~threeregime.analysis.plot_text` -- phase
  diagrams (matplotlib imported inside the drawing functions);
- :mod:`~threeregime.analysis.accessor` -- ``ds.threeregime``, registered by the package.

Imports :mod:`threeregime.spec` and :mod:`threeregime.results`, never torch.
"""
