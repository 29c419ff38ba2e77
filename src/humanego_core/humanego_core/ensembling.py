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
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

# Times within this of a chunk's ends count as covered (query times are sums of control periods).
TIME_TOL_S = 1e-9


@dataclass(frozen=True)
class _Chunk:
    start_s: float
    dt_s: float
    values: np.ndarray  # (H, D)

    @property
    def end_s(self) -> float:
        return self.start_s + (len(self.values) - 1) * self.dt_s

    def covers(self, t_s: float) -> bool:
        return self.start_s - TIME_TOL_S <= t_s <= self.end_s + TIME_TOL_S

    def at(self, t_s: float) -> np.ndarray:
        """Linear interpolation between the samples around ``t_s`` (which the chunk covers)."""
        u = min(max((t_s - self.start_s) / self.dt_s, 0.0), len(self.values) - 1.0)
        k = min(int(math.floor(u)), len(self.values) - 2)
        if k < 0:  # a single-sample chunk
            return self.values[0]
        w = u - k
        return (1.0 - w) * self.values[k] + w * self.values[k + 1]


class _ChunkSet(ABC):
    """The chunks still to be executed, ordered oldest (earliest start) first."""

    def __init__(self, max_chunks: int = 128):
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

    def query(self, t_s: float) -> np.ndarray | None:
        """The value (D,) at ``t_s``, or None when no chunk applies; drops the chunks that cannot apply to
        ``t_s`` or later (queries come at non-decreasing times)."""
        self._chunks = self._live(t_s)
        return self._value(self._chunks, t_s)

    def peek(self, t_s: float) -> np.ndarray | None:
        """The value :meth:`query` would give at ``t_s``, dropping nothing (a look-ahead)."""
        return self._value(self._live(t_s), t_s)

    def _live(self, t_s: float) -> list[_Chunk]:
        return [c for c in self._chunks if c.end_s >= t_s - TIME_TOL_S]

    @abstractmethod
    def _value(self, chunks: list[_Chunk], t_s: float) -> np.ndarray | None:
        """The value at ``t_s`` from the live ``chunks`` (oldest first)."""

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

    def __init__(self, decay: float = 0.01, max_chunks: int = 128):
        """``decay`` >= 0 (0 = plain mean); ``max_chunks`` bounds memory (the oldest are dropped beyond it; 128
        holds every live chunk of a 100-step chunk at 30 Hz predicted at 30 Hz, ACT's setting)."""
        super().__init__(max_chunks)
        if not (math.isfinite(decay) and decay >= 0):
            raise ValueError(f"decay must be finite and >= 0, got {decay}")
        self.decay = float(decay)

    def _value(self, chunks: list[_Chunk], t_s: float) -> np.ndarray | None:
        """The weighted mean over the chunks covering ``t_s`` (oldest first), None when none does."""
        covering = [c for c in chunks if c.covers(t_s)]
        if not covering:
            return None
        weights = np.exp(-self.decay * np.arange(len(covering)))
        values = np.stack([c.at(t_s) for c in covering])
        return weights @ values / weights.sum()


class LatestChunk(_ChunkSet):
    """Receding-horizon execution: the newest chunk that has started, until it ends."""

    def _live(self, t_s: float) -> list[_Chunk]:
        """As for every chunk set, plus: the chunks superseded by a newer one started by ``t_s`` are gone."""
        started = [i for i, c in enumerate(self._chunks) if c.start_s <= t_s + TIME_TOL_S]
        return super()._live(t_s) if not started else [
            c for c in self._chunks[started[-1]:] if c.end_s >= t_s - TIME_TOL_S]

    def _value(self, chunks: list[_Chunk], t_s: float) -> np.ndarray | None:
        """The newest started chunk's value at ``t_s``, None when it has ended or none has started."""
        started = [c for c in chunks if c.start_s <= t_s + TIME_TOL_S]
        return started[-1].at(t_s).copy() if started else None
