"""analysis.slices: a family sweep cut into one Dataset per method / retraining mode."""
from __future__ import annotations

import numpy as np
import xarray as xr

from threeregime.analysis.slices import slices


def _family(dim: str, values: list[str]) -> xr.Dataset:
    dens = [0.25, 0.5, 0.8]
    shape = (len(values), 2, len(dens))
    err = np.arange(np.prod(shape), dtype=float).reshape(shape)
    return xr.Dataset({"test_error": ((dim, "epochs", "density"), err),
                       "regime": ((dim, "epochs", "density"), np.zeros(shape, np.int8))},
                      coords={dim: values, "epochs": [1, 2], "density": dens})


def test_nm_methods_join_one_slice_each_at_its_own_density():
    ds = _family("prune_method", ["magnitude", "nm_2_4", "nm_1_4"])
    out = slices(ds, "nm:")
    assert list(out) == ["nm:magnitude", "nm:nm"]
    nm = out["nm:nm"]
    np.testing.assert_array_equal(nm["density"].values, [0.25, 0.5])
    # nm_1_4 (density 0.25) is the third method, nm_2_4 (0.5) the second
    np.testing.assert_array_equal(nm["test_error"].sel(density=0.25).values,
                                  ds["test_error"].sel(prune_method="nm_1_4", density=0.25))
    np.testing.assert_array_equal(nm["test_error"].sel(density=0.5).values,
                                  ds["test_error"].sel(prune_method="nm_2_4", density=0.5))
    assert all("regime" not in s and "prune_method" not in s.dims for s in out.values())
    assert out["nm:magnitude"].sizes == {"epochs": 2, "density": 3}


def test_retrain_modes_and_a_sweep_without_a_category():
    out = slices(_family("retrain_mode", ["finetune", "rewind"]))
    assert list(out) == ["finetune", "rewind"]
    plain = _family("retrain_mode", ["finetune"]).isel(retrain_mode=0, drop=True)
    assert list(slices(plain)) == ["all"] and list(slices(plain, "x:")) == ["x:"]
