"""Tiny CIFAR-10 python batches in the standard format, shared by the data tests."""
from __future__ import annotations

import pickle

import numpy as np

CIFAR_TRAIN_PER_BATCH = 6
CIFAR_TEST = 8


def write_cifar(folder, *, n_train=CIFAR_TRAIN_PER_BATCH, n_test=CIFAR_TEST, seed=0):
    """Write data_batch_1..5 and test_batch (bytes keys, uint8 rows) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        n = n_test if name == "test_batch" else n_train
        d = {b"batch_label": name.encode(),
             b"labels": [int(v) for v in rng.integers(0, 10, n)],
             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
             b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(d, f, protocol=2)
    return folder
