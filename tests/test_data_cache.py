"""The on-disk cache of generated data (threeregime.data.disk_cache): a cached load equals a
fresh generation bit for bit; a bad file is regenerated; ``off`` writes nothing."""
from __future__ import annotations

import torch

from threeregime.data import disk_cache, sources
from threeregime.spec.specs import DataSpec

SPEC = DataSpec("mnist1d", train_size=120, test_size=40, val_size=30,
                options={"n_train": 120, "n_test": 40})


def _load(spec=SPEC):
    sources.clear_cache()
    return sources.load_data(spec)


def _equal(a, b) -> bool:
    return (a.num_classes == b.num_classes and a.input_shape == b.input_shape
            and a.augment is None and b.augment is None
            and all(torch.equal(getattr(getattr(a, s), v), getattr(getattr(b, s), v))
                    for s in ("train", "test", "val") for v in ("x", "y")))


def test_cached_data_equals_a_fresh_generation(tmp_path, monkeypatch):
    monkeypatch.setenv("THREEREGIME_DATA_CACHE", "off")
    fresh = _load()
    monkeypatch.setenv("THREEREGIME_DATA_CACHE", str(tmp_path))
    first = _load()                                      # generated, then written
    path = disk_cache.cache_path(SPEC)
    assert path.parent == tmp_path and path.is_file()
    generated = []
    real = sources.DATA_SOURCES.get("mnist1d")
    monkeypatch.setattr(sources.DATA_SOURCES, "get",
                        lambda name, field=None: _Spy(real, generated))
    cached = _load()                                     # read from the file
    assert generated == [] and _equal(cached, fresh) and _equal(first, fresh)
    # another spec (no validation split) is another file, and equal to its generation
    other = DataSpec("mnist1d", train_size=120, test_size=40, options=SPEC.options)
    assert disk_cache.cache_path(other) != path


class _Spy:
    """The mnist1d source, recording each generation."""

    def __init__(self, fn, calls):
        self.fn, self.calls = fn, calls
        self.defaults, self.augmentable = fn.defaults, fn.augmentable
        self.num_classes, self.disk_cache = fn.num_classes, fn.disk_cache

    def __call__(self, *a, **k):
        self.calls.append(1)
        return self.fn(*a, **k)


def test_a_corrupt_or_stale_file_is_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv("THREEREGIME_DATA_CACHE", str(tmp_path))
    fresh = _load()
    path = disk_cache.cache_path(SPEC)
    path.write_bytes(b"not a torch file")
    assert _equal(_load(), fresh)                        # regenerated and rewritten
    assert disk_cache.read(SPEC) is not None
    raw = torch.load(path, weights_only=True)
    raw["train"] = (raw["train"][0][:5], raw["train"][1][:5])   # wrong size for the spec
    torch.save(raw, path)
    assert disk_cache.read(SPEC) is None and _equal(_load(), fresh)


def test_off_writes_nothing_and_an_unwritable_folder_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("THREEREGIME_DATA_CACHE", "off")
    assert disk_cache.cache_dir() is None and disk_cache.cache_path(SPEC) is None
    fresh = _load()
    blocker = tmp_path / "file"
    blocker.write_text("x")                              # a file where the folder should be
    monkeypatch.setenv("THREEREGIME_DATA_CACHE", str(blocker / "data"))
    assert _equal(_load(), fresh) and disk_cache.write(SPEC, fresh) is None
    monkeypatch.delenv("THREEREGIME_DATA_CACHE")
    monkeypatch.setenv("THREEREGIME_CACHE", str(tmp_path / "c"))
    assert disk_cache.cache_dir() == tmp_path / "c" / "data"
