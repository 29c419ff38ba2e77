import numpy as np
import pytest

from humanego_core.profiles import min_jerk, min_jerk_duration, min_jerk_velocity


def test_min_jerk_boundary_conditions_and_symmetry():
    s = np.linspace(0, 1, 1001)
    x = min_jerk(s)
    assert x[0] == 0.0 and x[-1] == 1.0
    assert np.all(np.diff(x) >= 0)
    np.testing.assert_allclose(x + x[::-1], 1.0, atol=1e-12)
    # Zero velocity and acceleration at both ends, by finite differences.
    h = 1e-4
    for end in (0.0, 1.0):
        v = (min_jerk(end + h) - min_jerk(end - h)) / (2 * h)
        assert abs(v) < 1e-6


def test_velocity_is_the_derivative_and_duration_respects_peak_speed():
    s = np.linspace(0.01, 0.99, 99)
    h = 1e-6
    numeric = (min_jerk(s + h) - min_jerk(s - h)) / (2 * h)
    np.testing.assert_allclose(min_jerk_velocity(s), numeric, atol=1e-6)
    T = min_jerk_duration(0.4, 0.5)
    peak = 0.4 / T * min_jerk_velocity(np.linspace(0, 1, 10001)).max()
    assert peak == pytest.approx(0.5, rel=1e-6)
    with pytest.raises(ValueError):
        min_jerk_duration(0.1, 0.0)
