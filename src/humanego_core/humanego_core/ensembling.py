"""Executing overlapping action chunks: ACT's temporal ensembling, or receding-horizon replanning.

A policy predicts a chunk of H future steps at every observation, so at any instant several chunks
predict the value to command. Both classes here hold the chunks that still cover the future and answer
"what is the value at time t":

- :class:`TemporalEnsembler` (ACT, Zhao et al. 2023, section 3.3): the weighted mean of every chunk
  that covers ``t``, with weights ``w_i = exp(-decay * i)`` where ``i = 0`` is the *oldest* of those
  chunks (ACT weights older predictions more, which smooths the motion; ACT uses decay 0.01 with a new
  chunk every step). The weights are normalised over the chunks covering ``t``.
- :class:`LatestChunk` (receding horizon): the newest chunk that has started by ``t``; older chunks are
  only used until a newer one starts, and never again after that (a new plan supersedes the old one).

A chunk's samples lie at ``start_time_s + k * dt_s`` (k = 0..H-1) and it covers ``[first, last]``
sample time; between samples values are interpolated linearly, so a control loop can query at its own
rate. Chunks entirely in the past of a query are dropped: queries are expected at non-decreasing times,
as a control loop makes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class _Chunk:
    start_s: float
    dt_s: float
    values: np.ndarray  # (H, D)

    @property
    def end_s(self) -> float:
        return self.start_s + (len(self.values) - 1) * self.dt_s

    def covers(self, t_s: float) -> bool:
        return self.start_s <= t_s <= self.end_s

    def at(self, t_s: float) -> np.ndarray:
        """Linear interpolation between the samples around ``t_s`` (which the chunk covers)."""
        u = (t_s - self.start_s) / self.dt_s
        k = min(int(math.floor(u)), len(self.values) - 2)
        if k < 0:  # a single-sample chunk
            return self.values[0]
        w = u - k
        return (1.0 - w) * self.values[k] + w * self.values[k + 1]


class _ChunkSet:
    """The chunks still to be executed, ordered oldest (earliest start) first."""

    def __init__(self, max_chunks: int):
        if max_chunks < 1:
            raise ValueError(f"max_chunks must be >= 1, got {max_chunks}")
        self.max_chunks = max_chunks
        self._chunks: list[_Chunk] = []
        self._dim: int | None = None

    def add(self, start_time_s: float, dt_s: float, values) -> None:
        """A chunk whose sample k is due at ``start_time_s + k * dt_s``; ``values`` (H, D), finite."""
        values = np.array(values, dtype=float)
        if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 1:
            raise ValueError(f"chunk values must have shape (H, D) with H, D >= 1, got {values.shape}")
        if self._dim is not None and self._chunks and values.shape[1] != self._dim:
            raise ValueError(f"chunk has {values.shape[1]} values per step, the chunks held have {self._dim}")
        if not (math.isfinite(start_time_s) and math.isfinite(dt_s)) or dt_s <= 0:
            raise ValueError(f"chunk start {start_time_s} s and step {dt_s} s must be finite, step > 0")
        if not np.all(np.isfinite(values)):
            raise ValueError("chunk values contain NaN or inf")
        self._dim = values.shape[1]
        chunk = _Chunk(float(start_time_s), float(dt_s), values)
        # Insert by start time (a late-arriving older chunk is still the older one); equal starts keep arrival order.
        i = len(self._chunks)
        while i > 0 and self._chunks[i - 1].start_s > chunk.start_s:
            i -= 1
        self._chunks.insert(i, chunk)
        del self._chunks[:-self.max_chunks]

    def covering(self, t_s: float) -> list[_Chunk]:
        """The chunks covering ``t_s``, oldest first, after dropping those that ended before ``t_s``."""
        self._chunks = [c for c in self._chunks if c.end_s >= t_s]
        return [c for c in self._chunks if c.covers(t_s)]

    def clear(self) -> None:
        self._chunks.clear()

    def __len__(self) -> int:
        return len(self._chunks)

    @property
    def end_time_s(self) -> float | None:
        """The last time any held chunk covers, or None when none is held."""
        return max((c.end_s for c in self._chunks), default=None)


class TemporalEnsembler(_ChunkSet):
    """ACT's temporal ensembling over the chunks covering each query time."""

    def __init__(self, decay: float = 0.01, max_chunks: int = 64):
        """``decay`` >= 0 (0 = plain mean); ``max_chunks`` bounds memory (the oldest are dropped beyond it)."""
        super().__init__(max_chunks)
        if not (math.isfinite(decay) and decay >= 0):
            raise ValueError(f"decay must be finite and >= 0, got {decay}")
        self.decay = float(decay)

    def query(self, t_s: float) -> np.ndarray | None:
        """The ensembled value (D,) at ``t_s``, or None when no chunk covers it."""
        chunks = self.covering(t_s)
        if not chunks:
            return None
        weights = np.exp(-self.decay * np.arange(len(chunks)))
        values = np.stack([c.at(t_s) for c in chunks])
        return weights @ values / weights.sum()


class LatestChunk(_ChunkSet):
    """Receding-horizon execution: the newest chunk that has started, until it ends."""

    def query(self, t_s: float) -> np.ndarray | None:
        """The value (D,) at ``t_s`` of the newest chunk started by then, or None when that one has ended
        (or none has started); chunks it supersedes are dropped."""
        started = [i for i, c in enumerate(self._chunks) if c.start_s <= t_s]
        if started:
            del self._chunks[:started[-1]]
        chunks = self.covering(t_s)
        return chunks[-1].at(t_s).copy() if chunks else None
