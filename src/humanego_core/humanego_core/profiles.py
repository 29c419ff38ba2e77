"""Time-scaling profiles for smooth point-to-point motion.

The minimum-jerk profile (Flash & Hogan, 1985) is what human reaching movements follow closely and a
gentle choice for scripted robot motions: zero velocity and acceleration at both ends.
"""

from __future__ import annotations

import numpy as np


def min_jerk(s):
    """Position fraction 10 s^3 - 15 s^4 + 6 s^5 for normalised time s (clipped to [0, 1])."""
    s = np.clip(np.asarray(s, dtype=float), 0.0, 1.0)
    return s**3 * (10.0 + s * (-15.0 + 6.0 * s))


def min_jerk_velocity(s):
    """d/ds of :func:`min_jerk`: 30 s^2 (1 - s)^2, peak 1.875 at s = 0.5."""
    s = np.clip(np.asarray(s, dtype=float), 0.0, 1.0)
    return 30.0 * s**2 * (1.0 - s) ** 2


def min_jerk_duration(distance: float, peak_speed: float) -> float:
    """Shortest duration of a minimum-jerk move over ``distance`` that stays below ``peak_speed``."""
    if peak_speed <= 0:
        raise ValueError(f"peak_speed must be positive, got {peak_speed}")
    return 1.875 * abs(distance) / peak_speed
