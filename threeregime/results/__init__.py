"""Results on disk: the netCDF schema, atomic files and leases (torch-free).

- :mod:`~threeregime.results.storage` -- the results schema (its module docstring *is* the
  schema), write / read / open / export of Datasets, combining point files into a sweep;
- :mod:`~threeregime.results.schema` -- the point Dataset: status flags, variables, builder;
- :mod:`~threeregime.results.artifacts` -- atomic writes, claims as leases and the fault
  points of the durability tests (the sweep's store uses them; the netCDF writer needs the
  atomic write, so they live below the sweep).

Imports :mod:`threeregime.spec` and nothing of the torch half.
"""
