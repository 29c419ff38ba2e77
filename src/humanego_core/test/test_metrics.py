"""humanego_core.metrics against hand-computed cases."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanego_core import geometry as g
from humanego_core import metrics as m

R_TARGET = Rotation.from_euler("x", 30, degrees=True)


def chunk(offsets, angles_deg):
    """(N, H, 4, 4) targets along x with rotation R_TARGET, and predictions offset and turned about z."""
    offsets = np.asarray(offsets, dtype=float)
    n, h = offsets.shape[:2]
    target_p = np.broadcast_to(np.stack([np.arange(h) * 0.1, np.zeros(h), np.zeros(h)], -1), (n, h, 3))
    target = g.make_transform(np.broadcast_to(R_TARGET.as_matrix(), (n, h, 3, 3)), target_p)
    turn = Rotation.from_euler("z", np.ravel(angles_deg)[:, None], degrees=True)
    pred_R = (R_TARGET * turn).as_matrix().reshape(n, h, 3, 3)
    return g.make_transform(pred_R, target_p + offsets), target


def test_hand_computed_case():
    offsets = [[[0.03, 0.04, 0.0], [0.0, 0.0, 0.1], [0.3, 0.0, 0.0]],
               [[0.0, 0.0, 0.01], [0.0, 0.0, 0.02], [5.0, 0.0, 0.0]]]
    pred, target = chunk(offsets, [[10, 20, 30], [0, 40, 90]])
    valid = np.array([[True, True, True], [True, True, False]])
    out = m.action_metrics(pred, [[0.6, 0.4, 0.9], [0.5, 0.2, 0.9]], target, [[1, 1, 0], [0, 0, 1]], valid,
                           done_prob=[0.7, 0.2], done_label=[1, 1], k=3)
    assert list(out)[:11] == list(m.METRIC_NAMES)
    # weights (3, 2, 1) / 6 over steps; sample 1 step 3 invalid -> weight sum 11.
    expected = {
        "pos_err_k1_m": 0.03, "pos_err_kK_m": 0.3, "pos_err_w_m": (0.15 + 0.2 + 0.3 + 0.03 + 0.04) / 11,
        "rot_err_k1_deg": 5.0, "rot_err_kK_deg": 30.0, "rot_err_w_deg": (30 + 40 + 30 + 0 + 80) / 11,
        # step 1: tp 1 (0.6 vs 1), fp 1 (0.5 vs 0) -> 2/3; step 3: only sample 0, fp -> 0;
        # weighted: tp 3, fn 2 (0.4 vs 1, w 2), fp 1 (w 1) + 3 (w 3) -> 6 / 12.
        "grasp_f1_k1": 2 / 3, "grasp_f1_kK": 0.0, "grasp_f1_w": 0.5,
        "done_acc": 0.5, "zero_state_ratio": 0.0, "zero_state_ratio_target": 0.0,
    }
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, abs=1e-9), key


def test_geodesic_angle_extremes():
    for angle in (0.0, 1e-3, 90.0, 179.0, 180.0):
        pred, target = chunk([[[0, 0, 0]]], [[angle]])
        out = m.action_metrics(pred, [[0]], target, [[0]], np.ones((1, 1), bool), [0], [0], k=1)
        assert out["rot_err_k1_deg"] == pytest.approx(angle, abs=1e-4)
        assert out["rot_err_w_deg"] == pytest.approx(angle, abs=1e-4)


def test_f1_edge_cases():
    assert m.f1_score([], []) == 1.0
    assert m.f1_score([False, False], [False, False]) == 1.0
    assert m.f1_score([True, False], [False, False]) == 0.0
    assert m.f1_score([False, False], [True, False]) == 0.0
    assert m.f1_score([True, True], [True, True]) == 1.0
    assert m.f1_score([True, False], [True, True], weights=[1.0, 3.0]) == pytest.approx(2 / 5)


def test_horizon_weights():
    np.testing.assert_allclose(m.horizon_weights(4), [0.4, 0.3, 0.2, 0.1])
    np.testing.assert_allclose(m.horizon_weights(1), [1.0])


def test_zero_state_ratio():
    # Sample 0 stands still within 5 mm (its 1 m jump is at an invalid step); sample 1 moves 6 mm.
    offsets = np.zeros((2, 3, 3))
    pred, target = chunk(offsets, np.zeros((2, 3)))
    pred[0, :, :3, 3] = [[0.2, 0.2, 0.2], [0.203, 0.2, 0.2], [1.2, 0.2, 0.2]]
    pred[1, :, :3, 3] = [[0.2, 0.2, 0.2], [0.2, 0.206, 0.2], [0.2, 0.2, 0.2]]
    valid = np.array([[True, True, False], [True, True, True]])
    out = m.action_metrics(pred, np.zeros((2, 3)), target, np.zeros((2, 3)), valid, [0, 0], [0, 0], k=2)
    assert out["zero_state_ratio"] == 0.5
    assert out["zero_state_ratio_target"] == 0.0


def test_bad_input():
    pred, target = chunk(np.zeros((1, 2, 3)), np.zeros((1, 2)))
    ok = dict(pred_grasp=np.zeros((1, 2)), target_T=target, target_grasp=np.zeros((1, 2)),
              valid=np.ones((1, 2), bool), done_prob=[0.0], done_label=[0.0], k=2)
    m.action_metrics(pred, **ok)
    with pytest.raises(ValueError, match="k must be"):
        m.action_metrics(pred, **{**ok, "k": 3})
    with pytest.raises(ValueError, match="NaN"):
        m.action_metrics(np.where(np.eye(4, dtype=bool), np.nan, pred), **ok)
    scaled = pred.copy()
    scaled[..., :3, :3] *= 2
    with pytest.raises(ValueError, match="orthonormal"):
        m.action_metrics(scaled, **ok)
    with pytest.raises(ValueError, match="pred_grasp"):
        m.action_metrics(pred, **{**ok, "pred_grasp": np.zeros(2)})
    with pytest.raises(ValueError, match="valid must be a bool"):
        m.action_metrics(pred, **{**ok, "valid": np.ones((1, 2))})
    with pytest.raises(ValueError, match="no valid target at step 2"):
        m.action_metrics(pred, **{**ok, "valid": np.array([[True, False]])})
    with pytest.raises(ValueError, match="shape"):
        m.action_metrics(pred[0], **ok)
