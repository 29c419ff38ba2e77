import math

import numpy as np
import pytest

from humanego_core.ensembling import LatestChunk, TemporalEnsembler


def act_reference(chunks: list[np.ndarray], k: float) -> np.ndarray:
    """ACT's own loop (imitate_episodes.py, temporal_agg): a chunk per step into all_time_actions, then the
    populated predictions for step t weighted by exp(-k * i), i = 0 for the oldest."""
    steps, horizon, dim = len(chunks), chunks[0].shape[0], chunks[0].shape[1]
    all_time_actions = np.zeros((steps, steps + horizon, dim))
    out = []
    for t in range(steps):
        all_time_actions[t, t:t + horizon] = chunks[t]
        actions_for_curr_step = all_time_actions[:, t]
        populated = np.all(actions_for_curr_step != 0, axis=1)
        actions_for_curr_step = actions_for_curr_step[populated]
        exp_weights = np.exp(-k * np.arange(len(actions_for_curr_step)))
        exp_weights = exp_weights / exp_weights.sum()
        out.append((actions_for_curr_step * exp_weights[:, None]).sum(axis=0))
    return np.array(out)


def test_two_overlapping_chunks_by_hand():
    ens = TemporalEnsembler(decay=math.log(2.0))  # weights 1 (older), 1/2 (newer)
    ens.add(0.0, 0.1, [[0.0], [1.0], [2.0]])      # covers 0.0 .. 0.2
    ens.add(0.1, 0.1, [[10.0], [11.0], [12.0]])   # covers 0.1 .. 0.3
    assert ens.query(0.05) == pytest.approx([0.5])           # only the first, interpolated
    assert ens.query(0.1) == pytest.approx([(1 + 0.5 * 10) / 1.5])
    assert ens.query(0.15) == pytest.approx([(1.5 + 0.5 * 10.5) / 1.5])
    assert len(ens) == 2
    assert ens.query(0.25) == pytest.approx([11.5])          # the first ended: dropped
    assert len(ens) == 1 and ens.end_time_s == pytest.approx(0.3)
    assert ens.query(0.31) is None and len(ens) == 0


def test_matches_act_at_the_chunk_steps():
    rng = np.random.default_rng(0)
    chunks = [rng.uniform(0.5, 2.0, size=(5, 3)) for _ in range(12)]  # nonzero: ACT marks empty slots with 0
    expected = act_reference(chunks, k=0.3)
    ens = TemporalEnsembler(decay=0.3)
    got = []
    for t, chunk in enumerate(chunks):
        ens.add(float(t), 1.0, chunk)
        got.append(ens.query(float(t)))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_a_late_older_chunk_counts_as_older():
    ens = TemporalEnsembler(decay=math.log(2.0))
    ens.add(0.1, 0.1, [[10.0], [10.0]])
    ens.add(0.0, 0.1, [[0.0], [0.0], [0.0]])  # predicted earlier, arrived later
    assert ens.query(0.1) == pytest.approx([(0.0 + 0.5 * 10.0) / 1.5])


def test_zero_decay_is_the_plain_mean_and_max_chunks_drops_the_oldest():
    ens = TemporalEnsembler(decay=0.0, max_chunks=2)
    for value in (1.0, 2.0, 6.0):
        ens.add(0.0, 1.0, [[value], [value]])
    assert len(ens) == 2
    assert ens.query(0.5) == pytest.approx([4.0])


def test_latest_chunk_follows_the_newest_once_it_has_started():
    latest = LatestChunk(max_chunks=8)
    latest.add(0.0, 0.1, [[0.0, 0.0], [1.0, -1.0], [2.0, -2.0], [3.0, -3.0]])
    latest.add(0.15, 0.1, [[5.0, 5.0], [6.0, 6.0]])
    np.testing.assert_allclose(latest.query(0.1), [1.0, -1.0])   # the new chunk starts at 0.15
    np.testing.assert_allclose(latest.query(0.2), [5.5, 5.5])
    np.testing.assert_allclose(latest.query(0.25), [6.0, 6.0])
    # The older chunk would still cover 0.26, but the newer plan superseded it: nothing to follow.
    assert latest.query(0.26) is None
    assert len(latest) == 0


def test_peek_looks_ahead_without_dropping():
    latest = LatestChunk(max_chunks=8)
    latest.add(0.0, 0.1, [[0.0], [1.0], [2.0]])
    latest.add(0.15, 0.1, [[5.0], [6.0]])
    assert latest.peek(0.2) == pytest.approx([5.5])  # the newer chunk has started by 0.2 ...
    assert latest.query(0.1) == pytest.approx([1.0])  # ... but at 0.1 the older one still applies
    assert len(latest) == 2
    ens = TemporalEnsembler()
    ens.add(0.0, 0.1, [[0.0], [1.0]])
    assert ens.peek(0.2) is None and len(ens) == 1
    assert ens.query(0.05) == pytest.approx([0.5])


def test_single_sample_chunks_and_bad_input():
    ens = TemporalEnsembler()
    ens.add(1.0, 0.1, [[3.0, 4.0]])
    np.testing.assert_allclose(ens.query(1.0), [3.0, 4.0])
    with pytest.raises(ValueError, match="3 values per step, the chunks held have 2"):
        ens.add(1.0, 0.1, [[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="NaN or inf"):
        ens.add(1.0, 0.1, [[math.nan, 1.0]])
    with pytest.raises(ValueError, match="step"):
        ens.add(1.0, 0.0, [[1.0, 1.0]])
    with pytest.raises(ValueError, match="shape"):
        ens.add(1.0, 0.1, [1.0, 2.0])
    with pytest.raises(ValueError, match="decay"):
        TemporalEnsembler(decay=-1.0)
    ens.clear()
    assert ens.query(1.0) is None and ens.end_time_s is None
