"""Data sources: source-specific values and bad-input messages (the contract test over every
registered source is in test_registries.py)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from _tiny_cifar import write_cifar
from torch.utils.data import DataLoader, TensorDataset

from threeregime import DataError, DataSpec, SpecError
from threeregime.data.sources import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    as_tensor_data,
    clear_cache,
    load_data,
)

torch.set_num_threads(1)


@pytest.fixture
def cifar_root(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-py")
    return str(tmp_path)          # the parent folder: the source must find the subfolder


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def test_cifar10_values_and_exact_crop_flip(cifar_root):
    d = load_data(DataSpec("cifar10", root=cifar_root))
    # normalisation: the first training image, by hand from the pickle
    with open(f"{cifar_root}/cifar-10-batches-py/data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    img = torch.tensor(raw[b"data"][0], dtype=torch.float32).view(3, 32, 32) / 255
    mean, std = torch.tensor(CIFAR10_MEAN).view(3, 1, 1), torch.tensor(CIFAR10_STD).view(3, 1, 1)
    want = (img - mean) / std
    torch.testing.assert_close(d.train.x[0], want)
    assert d.train.y[0].item() == raw[b"labels"][0]

    aug = load_data(DataSpec("cifar10", root=cifar_root, augment=True)).augment
    x = d.train.x[:16]
    out = aug(x, torch.Generator().manual_seed(0))
    fill = torch.tensor([-m / s for m, s in zip(CIFAR10_MEAN, CIFAR10_STD)]).view(1, 3, 1, 1)
    padded = fill.expand(16, 3, 40, 40).clone()
    padded[:, :, 4:36, 4:36] = x
    flips = set()
    for b in range(16):   # each output is exactly one of the 9 x 9 x 2 crop/flip candidates
        hits = [(dy, dx, fl) for dy in range(9) for dx in range(9) for fl in (False, True)
                if torch.equal(out[b], (padded[b, :, dy:dy + 32, dx:dx + 32].flip(-1) if fl
                                        else padded[b, :, dy:dy + 32, dx:dx + 32]))]
        assert hits, f"augmented example {b} is not a pad-4 crop (+flip) of its input"
        flips.add(hits[0][2])
    assert flips == {False, True}


def test_mnist1d_grows_pool_when_train_size_exceeds_it():
    d = load_data(DataSpec("mnist1d", train_size=150, options={"n_train": 100, "n_test": 50}))
    assert d.train.x.shape == (150, 1, 40) and d.test.x.shape == (50, 1, 40)


def test_teacher_student_label_noise():
    opts = {"n_train": 1000, "n_test": 10}
    clean = load_data(DataSpec("teacher_student", options=opts))
    noisy = load_data(DataSpec("teacher_student", options={**opts, "label_noise": 0.5}))
    assert torch.equal(clean.train.x, noisy.train.x)
    assert torch.equal(clean.test.y, noisy.test.y)          # test labels stay clean
    changed = (clean.train.y != noisy.train.y).float().mean().item()
    assert 0.35 < changed < 0.55                            # 0.5 * 9/10 expected
    # classes are roughly balanced (centred teacher)
    assert clean.train.y.bincount(minlength=10).min() > 20


def test_digits_range():
    d = load_data(DataSpec("digits"))
    assert float(d.train.x.min()) >= 0.0 and float(d.train.x.max()) <= 1.0


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("spec, exc, match", [
    (DataSpec("mnist1"), SpecError,
     r"data.name: unknown data source 'mnist1' \(did you mean 'mnist1d'\?\); known: cifar10, "
     r"digits, mnist1d, teacher_student"),
    (DataSpec("digits", train_size=5000), DataError,
     r"train_size must be <= 1437 \(the examples data source 'digits' has\); got 5000"),
    (DataSpec("teacher_student", options={"dimm": 5}), SpecError,
     r"options.dimm: unknown option for data source 'teacher_student' \(did you mean 'dim'\?\); "
     r"allowed: classes, dim, label_noise, n_test, n_train, teacher_hidden"),
    (DataSpec("teacher_student", options={"label_noise": 1.5}), SpecError,
     r"options.label_noise of data source 'teacher_student' must be a number in \[0, 1\); "
     r"got 1.5"),
    (DataSpec("mnist1d", options={"n_train": 0}), SpecError,
     r"options.n_train of data source 'mnist1d' must be an integer >= 1; got 0"),
    (DataSpec("cifar10"), DataError, r"data source 'cifar10' needs root: set data.root"),
    (DataSpec("cifar10", root="/nonexistent/cifar"), DataError,
     r"cifar10 root '/nonexistent/cifar' is not a folder; put the CIFAR-10 python batches"),
])
def test_bad_specs(spec, exc, match):
    with pytest.raises(exc, match=match):
        load_data(spec)


def test_cifar10_missing_and_corrupt_files(tmp_path):
    folder = write_cifar(tmp_path / "cifar-10-batches-py")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"cifar10 files missing in '.*cifar-10-batches-py': "
                                        r"data_batch_3; put the CIFAR-10 python batches"):
        load_data(DataSpec("cifar10", root=str(tmp_path)))
    write_cifar(folder)
    (folder / "data_batch_2").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"cifar10 file '.*data_batch_2' is corrupt"):
        load_data(DataSpec("cifar10", root=str(folder)))
    write_cifar(folder)
    with pytest.raises(DataError, match=r"test_size must be <= 8 \(the examples data source "
                                        r"'cifar10' has\); got 9"):
        load_data(DataSpec("cifar10", root=str(folder), test_size=9))


# --------------------------------------------------------------------------- as_tensor_data
def test_as_tensor_data_accepts_pairs_tensordata_and_loaders():
    x = np.arange(30, dtype=np.float64).reshape(10, 3)
    y = np.arange(10) % 3
    td = as_tensor_data((x, y))
    assert td.x.dtype == torch.float32 and td.y.dtype == torch.int64 and td.x.shape == (10, 3)
    assert as_tensor_data(td).x is td.x
    loader = DataLoader(TensorDataset(td.x, td.y), batch_size=4, shuffle=False)
    from_loader = as_tensor_data(loader)
    assert torch.equal(from_loader.x, td.x) and torch.equal(from_loader.y, td.y)
    assert torch.equal(as_tensor_data((td.x, td.y.double())).y, td.y)


@pytest.mark.parametrize("data, match", [
    ("abc", r"data must be an \(x, y\) pair, a TensorData or a DataLoader; got str"),
    ((torch.zeros(4, 2), torch.zeros(3)), r"x of shape \(N, ...\) and y of shape \(N,\); got "
                                          r"x \(4, 2\) and y \(3,\)"),
    ((torch.zeros(2, 2), torch.tensor([0.5, 1.0])), r"labels y must be integer class indices"),
    (DataLoader(TensorDataset(torch.zeros(0, 2), torch.zeros(0)), batch_size=2),
     r"DataLoader yielded no batches"),
])
def test_as_tensor_data_rejects(data, match):
    with pytest.raises(DataError, match=match):
        as_tensor_data(data)


def test_num_classes_known_without_making_the_data():
    """Built-in sources say their class count upfront (the driver labels near-chance cells
    with it without generating MNIST-1D again); a user's source without one says None."""
    from threeregime.data.sources import DATA_SOURCES, num_classes_of

    for name in ("mnist1d", "digits", "teacher_student"):
        spec = DataSpec(name=name, train_size=64, test_size=32)
        assert num_classes_of(spec) == load_data(spec).num_classes
    assert num_classes_of(DataSpec(name="teacher_student", options={"classes": 3})) == 3

    @DATA_SOURCES.register("no_count")
    def _user(spec, opts):  # pragma: no cover - never loaded here
        raise AssertionError

    try:
        assert num_classes_of(DataSpec(name="no_count")) is None
    finally:
        DATA_SOURCES.unregister("no_count")
