"""humanego_core.ict: tokens of a hand-built scene equal values computed by hand, plus an independent
numpy reference on random scenes and the rules for padding, order, flags and bad input."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanego_core import geometry as g
from humanego_core import ict
from humanego_core.actions import NormStats

STATS = NormStats(np.array([0.1, 0.2, 0.3]), np.array([0.5, 0.25, 2.0]))
RZ90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
RX180 = np.diag([1.0, -1.0, -1.0])
I6 = [1, 0, 0, 1, 0, 0]  # rot6d of the identity

# The scene (world frame): camera rotated 90 deg about z at (1, 0, 0), so p_cam = (y, 1 - x, z).
T_WORLD_CAMERA = g.make_transform(RZ90, [1.0, 0.0, 0.0])
RIGHT = ict.HandState("right", g.make_transform(np.eye(3), [1.5, 0.5, 0.2]), grasp=0.8)
LEFT = ict.HandState("left", g.make_transform(RX180, [1.5, -0.5, 0.2]), grasp=0.3)
PLATE = ict.ObjectState("plate", g.make_transform(np.eye(3), [2.0, 0.0, 0.0]), is_anchor=True)
BREAD = ict.ObjectState("bread", g.make_transform(RZ90, [1.5, 0.5, 0.0]))


def row(type_id, xyz, rot6d, *slots, flag):
    return [type_id, *xyz, *rot6d, *[v for s in slots for v in s], flag]


def test_token_dims():
    assert ict.token_dim(False) == 20 and ict.token_dim(True) == 29
    assert ict.hand_slot(False, "left") == slice(10, 19)
    assert ict.hand_slot(True, "left") == slice(10, 19) and ict.hand_slot(True, "right") == slice(19, 28)


def test_single_hand_camera_frame_by_hand():
    config = ict.ICTConfig(frame_mode="camera_frame", dual_hand=False, hand_side="right", max_tokens=5)
    T_ref = ict.reference_transform(config, T_WORLD_CAMERA, [BREAD, PLATE])
    np.testing.assert_array_equal(T_ref, T_WORLD_CAMERA)
    # The anchor is listed after bread on purpose: the anchor's row comes first anyway.
    out = ict.build_tokens(config, T_ref, [RIGHT, LEFT], [BREAD, PLATE], STATS)
    # hand: p_cam (0.5, -0.5, 0.2) -> ((0.5-0.1)/0.5, (-0.5-0.2)/0.25, (0.2-0.3)/2); R_cam = RZ90^T.
    # plate: p_cam (0, -1, 0); hand in plate (-0.5, 0.5, 0.2) / std = (-1, 2, 0.1).
    # bread: p_cam (0.5, -0.5, 0), R_cam = I; hand in bread = RZ90^T (0, 0, 0.2), R = RZ90^T.
    expected = [
        row(2, [0.8, -2.8, -0.05], [0, 1, -1, 0, 0, 0], [0, 0, 0, *I6], flag=1),
        row(3, [-0.2, -4.8, -0.15], [0, 1, -1, 0, 0, 0], [-1, 2, 0.1, *I6], flag=-1),
        row(4, [0.8, -2.8, -0.15], I6, [0, 0, 0.1, 0, 1, -1, 0, 0, 0], flag=-1),
        [0] * 20, [0] * 20,
    ]
    assert out.tokens.dtype == np.float32 and out.tokens.shape == (5, 20)
    np.testing.assert_allclose(out.tokens, expected, atol=1e-6)
    np.testing.assert_array_equal(out.mask, [True, True, True, False, False])
    assert out.entity_ids == ["hand_right", "plate", "bread", "", ""]


def test_single_hand_anchor_frame_by_hand():
    config = ict.ICTConfig(frame_mode="anchor_frame")
    T_ref = ict.reference_transform(config, T_WORLD_CAMERA, [BREAD, PLATE])
    np.testing.assert_array_equal(T_ref, PLATE.T_world_object)
    out = ict.build_tokens(config, T_ref, [RIGHT], [PLATE, BREAD], STATS)
    expected = [
        row(2, [-1.2, 1.2, -0.05], I6, [0, 0, 0, *I6], flag=1),
        row(3, [-0.2, -0.8, -0.15], I6, [-1, 2, 0.1, *I6], flag=-1),
        row(4, [-1.2, 1.2, -0.15], [0, -1, 1, 0, 0, 0], [0, 0, 0.1, 0, 1, -1, 0, 0, 0], flag=-1),
    ] + [[0] * 20] * 5
    assert out.tokens.shape == (ict.MAX_TOKENS, 20)
    np.testing.assert_allclose(out.tokens, expected, atol=1e-6)
    assert out.mask.sum() == 3


def test_dual_hand_camera_frame_by_hand():
    config = ict.ICTConfig(dual_hand=True, max_tokens=4)
    out = ict.build_tokens(config, T_WORLD_CAMERA, [RIGHT, LEFT], [BREAD, PLATE], STATS)
    # left hand: p_cam (-0.5, -0.5, 0.2), R_cam = RZ90^T RX180; right in left = RX180 (0, 1, 0) = (0, -1, 0).
    # bread: left in bread = RZ90^T (0, -1, 0.2) = (-1, 0, 0.2), R = RZ90^T RX180.
    r_l_in_r = [0, -4, 0, 1, 0, 0, -1, 0, 0]
    expected = [
        row(1, [-1.2, -2.8, -0.05], [0, -1, -1, 0, 0, 0], [0, 0, 0, *I6], r_l_in_r, flag=0),
        row(2, [0.8, -2.8, -0.05], [0, 1, -1, 0, 0, 0], r_l_in_r, [0, 0, 0, *I6], flag=1),
        row(3, [-0.2, -4.8, -0.15], [0, 1, -1, 0, 0, 0], [-1, -2, 0.1, 1, 0, 0, -1, 0, 0],
            [-1, 2, 0.1, *I6], flag=-1),
        row(4, [0.8, -2.8, -0.15], I6, [-2, 0, 0.1, 0, -1, -1, 0, 0, 0], [0, 0, 0.1, 0, 1, -1, 0, 0, 0], flag=-1),
    ]
    assert out.tokens.shape == (4, 29)
    np.testing.assert_allclose(out.tokens, expected, atol=1e-6)
    assert out.entity_ids == ["hand_left", "hand_right", "plate", "bread"]


def test_missing_hand_gives_no_token_and_zero_slot():
    dual = ict.build_tokens(ict.ICTConfig(dual_hand=True), T_WORLD_CAMERA, [RIGHT], [PLATE], STATS)
    assert dual.entity_ids[:2] == ["hand_right", "plate"]
    np.testing.assert_array_equal(dual.tokens[:2, ict.hand_slot(True, "left")], 0.0)
    assert np.all(np.abs(dual.tokens[:2, ict.hand_slot(True, "right")]).sum(axis=1) > 0)
    # One-hand layout for the left hand given only the right: the right hand is ignored.
    single = ict.build_tokens(ict.ICTConfig(hand_side="left"), T_WORLD_CAMERA, [RIGHT], [PLATE, BREAD], STATS)
    assert single.entity_ids[:3] == ["plate", "bread", ""]
    np.testing.assert_array_equal(single.tokens[:, 10:19], 0.0)


@pytest.mark.parametrize("grasp, flag", [(0.0, 0.0), (0.5, 0.0), (0.5001, 1.0), (1.0, 1.0)])
def test_hand_flag_is_grasp_above_half(grasp, flag):
    hand = ict.HandState("right", np.eye(4), grasp)
    out = ict.build_tokens(ict.ICTConfig(), np.eye(4), [hand], [BREAD], STATS)
    assert out.tokens[0, -1] == flag and out.tokens[1, -1] == -1.0 and out.tokens[2, -1] == 0.0


def test_random_scene_matches_numpy_reference():
    rng = np.random.default_rng(7)
    rots = Rotation.random(6, random_state=7).as_matrix()
    T = [g.make_transform(rots[i], rng.normal(size=3)) for i in range(6)]
    hands = [ict.HandState("left", T[0], 0.9), ict.HandState("right", T[1], 0.1)]
    objects = [ict.ObjectState("a", T[2]), ict.ObjectState("b", T[3], True), ict.ObjectState("c", T[4])]
    config = ict.ICTConfig(frame_mode="anchor_frame", dual_hand=True)
    out = ict.build_tokens(config, ict.reference_transform(config, T[5], objects), hands, objects, STATS)
    inv = np.linalg.inv
    entities = [T[0], T[1], T[3], T[2], T[4]]  # hands, anchor, others
    for r, T_e in enumerate(entities):
        rel = inv(T[3]) @ T_e
        np.testing.assert_allclose(out.tokens[r, 1:4], (rel[:3, 3] - STATS.pos_mean) / STATS.pos_std, atol=1e-5)
        np.testing.assert_allclose(out.tokens[r, 4:10], rel[:3, :2].ravel(), atol=1e-6)
        for slot, T_h in ((slice(10, 19), T[0]), (slice(19, 28), T[1])):
            h = inv(T_e) @ T_h
            np.testing.assert_allclose(out.tokens[r, slot][:3], h[:3, 3] / STATS.pos_std, atol=1e-5)
            np.testing.assert_allclose(out.tokens[r, slot][3:], h[:3, :2].ravel(), atol=1e-6)
    np.testing.assert_array_equal(out.tokens[:5, 0], [1, 2, 3, 4, 4])
    np.testing.assert_array_equal(out.tokens[:5, -1], [1, 0, -1, -1, -1])


def test_bad_input():
    config = ict.ICTConfig()
    with pytest.raises(ValueError, match="frame_mode"):
        ict.ICTConfig(frame_mode="world")
    with pytest.raises(ValueError, match="hand_side"):
        ict.ICTConfig(hand_side="both")
    with pytest.raises(ValueError, match="max_tokens"):
        ict.ICTConfig(max_tokens=0)
    with pytest.raises(ValueError, match="side"):
        ict.HandState("middle", np.eye(4), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        ict.HandState("right", np.full((4, 4), np.nan), 0.0)
    with pytest.raises(ValueError, match="grasp"):
        ict.HandState("right", np.eye(4), float("nan"))
    with pytest.raises(ValueError, match="orthonormal"):
        ict.ObjectState("box", np.diag([1.0, 2.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="one 4x4"):
        ict.ObjectState("box", np.stack([np.eye(4)] * 2))
    with pytest.raises(ValueError, match="non-empty"):
        ict.ObjectState("", np.eye(4))
    with pytest.raises(ValueError, match="needs an anchor"):
        ict.reference_transform(ict.ICTConfig(frame_mode="anchor_frame"), np.eye(4), [BREAD])
    with pytest.raises(ValueError, match="needs an anchor"):
        ict.build_tokens(ict.ICTConfig(frame_mode="anchor_frame"), np.eye(4), [RIGHT], [BREAD], STATS)
    with pytest.raises(ValueError, match="more than one anchor"):
        ict.build_tokens(config, np.eye(4), [], [PLATE, ict.ObjectState("p2", np.eye(4), True)], STATS)
    with pytest.raises(ValueError, match="repeated: bread"):
        ict.build_tokens(config, np.eye(4), [], [BREAD, BREAD], STATS)
    with pytest.raises(ValueError, match="two hands"):
        ict.build_tokens(config, np.eye(4), [RIGHT, RIGHT], [], STATS)
    with pytest.raises(ValueError, match="do not fit"):
        ict.build_tokens(ict.ICTConfig(max_tokens=2), np.eye(4), [RIGHT], [PLATE, BREAD], STATS)
    with pytest.raises(ValueError, match="T_world_ref"):
        ict.build_tokens(config, np.eye(3), [RIGHT], [], STATS)
    with pytest.raises(ValueError, match="HandState"):
        ict.build_tokens(config, np.eye(4), [np.eye(4)], [], STATS)
