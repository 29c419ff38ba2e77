import numpy as np
import pytest

from humanego_core import timeutil as tu


def test_stamp_round_trip_including_negative():
    for ns in [0, 1, 999_999_999, 1_000_000_000, 1_700_000_000_123_456_789, -1, -1_500_000_000]:
        sec, nanosec = tu.ns_to_stamp(ns)
        assert 0 <= nanosec < tu.NS_PER_S
        assert tu.stamp_to_ns(sec, nanosec) == ns
    assert tu.ns_to_stamp(-1) == (-1, 999_999_999)


def test_stamp_rejects_bad_nanosec():
    with pytest.raises(ValueError, match="nanosec"):
        tu.stamp_to_ns(1, tu.NS_PER_S)


def test_seconds_conversions():
    assert tu.seconds_to_ns(1.5) == 1_500_000_000
    assert tu.ns_to_seconds(2_500_000_000) == pytest.approx(2.5)
    np.testing.assert_allclose(tu.ns_to_seconds(np.array([0, 1_000_000_000])), [0.0, 1.0])


def test_nearest_index_with_tolerance():
    ts = np.array([0, 100, 200, 300])
    assert tu.nearest_index(ts, 149) == 1
    assert tu.nearest_index(ts, 151) == 2
    assert tu.nearest_index(ts, 1000) == 3
    assert tu.nearest_index(ts, 1000, tolerance_ns=50) is None
    assert tu.nearest_index([], 5) is None


def test_bracket_weights_and_out_of_range():
    i, w = tu.bracket([0, 10, 30], [0, 5, 10, 20, 30])
    np.testing.assert_array_equal(i, [0, 0, 1, 1, 1])
    np.testing.assert_allclose(w, [0.0, 0.5, 0.0, 0.5, 1.0])
    with pytest.raises(ValueError, match="outside the samples"):
        tu.bracket([0, 10], [11])
    with pytest.raises(ValueError, match="strictly increasing"):
        tu.bracket([0, 0, 1], [0])


def test_backoff_grows_to_the_cap_and_resets():
    backoff = tu.Backoff(initial_s=0.5, max_s=3.0, factor=2.0)
    assert [backoff.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.failures == 5
    backoff.reset()
    assert backoff.next_delay() == 0.5
    with pytest.raises(ValueError, match="initial_s"):
        tu.Backoff(initial_s=0.0)
