"""Per-stage caches of a preprocessing run, so that a rerun resumes instead of starting over.

Each stage stores its arrays in ``<cache>/<stage>.npz`` next to ``<stage>.json`` holding the stage's key: a
hash of everything its result depends on (the stage's configuration, the input files' sizes and times, the
keys of the stages it reads). A stage whose key matches is loaded, not recomputed; a changed configuration
or input recomputes that stage and every stage after it (their keys include it). Files are written to a
temporary name and renamed, so an interrupted write never leaves a cache that looks valid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np


def fingerprint(*parts) -> str:
    """A stable hash of JSON-able parts (dataclasses, paths and numpy values are converted)."""
    text = json.dumps([_jsonable(p) for p in parts], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_signature(paths) -> list:
    """(path, size, mtime) of files, and of every file under folders: a cheap identity of the inputs."""
    out = []
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            st = f.stat()
            out.append([str(f), st.st_size, st.st_mtime_ns])
    return out


class StageCache:
    """The cache folder of one recording's preprocessing."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def load(self, stage: str, key: str) -> dict[str, np.ndarray] | None:
        """The stage's arrays if they were stored with ``key``, else None."""
        meta, data = self.folder / f"{stage}.json", self.folder / f"{stage}.npz"
        try:
            if json.loads(meta.read_text()).get("key") != key:
                return None
            with np.load(data, allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except (OSError, ValueError):  # absent, partial or from an incompatible version: recompute
            return None

    def save(self, stage: str, key: str, arrays: dict[str, np.ndarray]) -> None:
        data, meta = self.folder / f"{stage}.npz", self.folder / f"{stage}.json"
        # Per-process temporary names: several processes (DDP ranks) may fill the same cache at once.
        tmp = data.with_name(f".{stage}.{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, data)
        write_json_atomic(meta, {"stage": stage, "key": key})


def write_json_atomic(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value
