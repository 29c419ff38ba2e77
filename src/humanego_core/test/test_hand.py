import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanego_core import hand
from humanego_core.geometry import GeometryError


def canonical_landmarks():
    """Landmarks whose hand frame is known by construction: identity at the tip midpoint."""
    L = np.zeros((21, 3))
    L[hand.THUMB_FINGERTIP] = [-0.01, 0.0, 0.0]
    L[hand.INDEX_FINGERTIP] = [0.01, 0.0, 0.0]
    L[hand.THUMB_INTERMEDIATE] = [-0.03, -0.05, 0.0]
    L[hand.INDEX_PROXIMAL] = [0.03, -0.05, 0.0]
    L[hand.WRIST] = [0.0, -0.12, 0.0]
    return L


def test_frame_of_canonical_hand_is_identity_and_follows_rigid_motion():
    L = canonical_landmarks()
    np.testing.assert_allclose(hand.hand_frame(L), np.eye(4), atol=1e-12)
    R = Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).as_matrix()
    t = np.array([0.4, -0.2, 0.9])
    moved = L @ R.T + t
    T = hand.hand_frame(moved)
    np.testing.assert_allclose(T[:3, :3], R, atol=1e-12)
    np.testing.assert_allclose(T[:3, 3], t, atol=1e-12)
    batch = hand.hand_frame(np.stack([L, moved]))
    assert batch.shape == (2, 4, 4)
    assert hand.pinch_distance(moved) == pytest.approx(0.02)


def test_degenerate_and_nonfinite_landmarks_are_rejected():
    L = canonical_landmarks()
    bad = L.copy()
    bad[hand.INDEX_PROXIMAL] = bad[hand.THUMB_INTERMEDIATE]
    with pytest.raises(GeometryError, match="coincide"):
        hand.hand_frame(bad)
    bad = L.copy()
    bad[hand.WRIST] = [0.5, -0.05, 0.0]
    with pytest.raises(GeometryError, match="wrist"):
        hand.hand_frame(bad)
    bad = L.copy()
    bad[3, 0] = np.nan
    with pytest.raises(GeometryError, match="NaN"):
        hand.hand_frame(bad)
    with pytest.raises(GeometryError, match="shape"):
        hand.hand_frame(np.zeros((20, 3)))


def test_pinch_frame_follows_the_tips_and_sits_turned_in_the_hand_frame():
    L = canonical_landmarks()
    np.testing.assert_allclose(hand.pinch_frame(L), np.eye(4), atol=1e-12)  # tips on x, wrist on -y
    # Turn the tips by 30 degrees about the hand's z around their midpoint: the knuckles (the hand frame) stay.
    turn = Rotation.from_euler("z", 30, degrees=True)
    L[[hand.THUMB_FINGERTIP, hand.INDEX_FINGERTIP]] = turn.apply(L[[hand.THUMB_FINGERTIP, hand.INDEX_FINGERTIP]])
    np.testing.assert_allclose(hand.hand_frame(L), np.eye(4), atol=1e-12)
    np.testing.assert_allclose(hand.pinch_in_hand(L)[:3, :3], turn.as_matrix(), atol=1e-12)
    # The relation is the hand's own: moving the whole hand keeps it.
    R = Rotation.from_euler("xyz", [0.3, -1.1, 2.0])
    moved = R.apply(L) + [0.4, -0.2, 0.9]
    np.testing.assert_allclose(hand.pinch_in_hand(moved), hand.pinch_in_hand(L), atol=1e-12)
    np.testing.assert_allclose(hand.pinch_frame(moved)[:3, :3], R.as_matrix() @ turn.as_matrix(), atol=1e-12)
    bad = L.copy()
    bad[hand.INDEX_FINGERTIP] = bad[hand.THUMB_FINGERTIP]
    with pytest.raises(GeometryError, match="tips coincide"):
        hand.pinch_frame(bad)
