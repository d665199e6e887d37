"""Specs: what a run is, as frozen dataclasses, and their plain-data form (torch-free).

- :mod:`~threeregime.spec.specs` -- the frozen specs (``DataSpec`` ... ``SweepSpec``), YAML in
  and out (:func:`~threeregime.spec.specs.load_yaml`), the canonical JSON and its content hash
  (:func:`~threeregime.spec.specs.spec_hash`);
- :mod:`~threeregime.spec.codec` -- specs as plain data (dict / YAML / canonical JSON), the
  one set of validators (``check_pos_int``, ``check_float``, ``check_choice``) and the table of
  sweepable axes (:data:`~threeregime.spec.codec.AXES`, re-exported by ``specs``).

Nothing here imports torch; every other package may import this one.
"""
