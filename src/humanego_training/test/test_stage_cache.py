from dataclasses import dataclass

import numpy as np

from humanego_training.stage_cache import StageCache, file_signature, fingerprint


@dataclass
class Settings:
    threshold: float = 0.1


def test_saved_arrays_load_only_with_their_key(tmp_path):
    cache = StageCache(tmp_path / "cache")
    arrays = {"a": np.arange(5), "reason": np.array(["", "gap"]), "flag": np.bool_(True)}
    key = fingerprint(Settings(), "inputs")
    cache.save("hands", key, arrays)
    loaded = cache.load("hands", key)
    np.testing.assert_array_equal(loaded["a"], arrays["a"])
    assert list(loaded["reason"]) == ["", "gap"] and bool(loaded["flag"])
    assert cache.load("hands", fingerprint(Settings(threshold=0.2), "inputs")) is None
    assert cache.load("phases", key) is None


def test_partial_or_corrupt_cache_is_recomputed(tmp_path):
    cache = StageCache(tmp_path)
    cache.save("masks", "k", {"m": np.zeros(3)})
    (tmp_path / "masks.npz").write_bytes(b"not a zip")
    assert cache.load("masks", "k") is None
    (tmp_path / "masks.json").write_text("{")
    assert cache.load("masks", "k") is None


def test_fingerprint_follows_content_and_file_changes(tmp_path):
    assert fingerprint({"b": 1, "a": [1.0, np.float64(2)]}) == fingerprint({"a": [1.0, 2.0], "b": 1})
    assert fingerprint(Settings()) != fingerprint(Settings(threshold=0.3))
    f = tmp_path / "x.csv"
    f.write_text("1")
    before = fingerprint(file_signature([tmp_path]))
    f.write_text("12")
    assert fingerprint(file_signature([tmp_path])) != before
