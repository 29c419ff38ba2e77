"""ROS message <-> numpy conversions: round trips and the rejection of malformed messages."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import Image

from humanego_core import geometry, ict
from humanego_core.actions import NormStats
from humanego_core.camera_models import FISHEYE624, LINEAR, CameraModel
from humanego_interfaces.msg import ActionChunk, InteractionTokens
from humanego_ros import conversions as conv


def random_poses(n, seed=0):
    return geometry.make_transform(Rotation.random(n, random_state=seed).as_matrix(),
                                   np.random.default_rng(seed).normal(size=(n, 3)))


def test_time_round_trip():
    for ns in [0, 1_700_000_000_123_456_789, 5]:
        assert conv.time_to_ns(conv.ns_to_time(ns)) == ns


def test_pose_and_transform_round_trip():
    for T in random_poses(10):
        np.testing.assert_allclose(conv.pose_to_matrix(conv.matrix_to_pose(T)), T, atol=1e-12)
        ts = conv.matrix_to_transform_stamped(T, "world", "base_link", 42)
        assert ts.header.frame_id == "world" and ts.child_frame_id == "base_link"
        assert conv.time_to_ns(ts.header.stamp) == 42
        np.testing.assert_allclose(conv.transform_to_matrix(ts.transform), T, atol=1e-12)


@pytest.mark.parametrize("encoding, shape, dtype", [
    ("rgb8", (4, 5, 3), np.uint8), ("mono8", (4, 5), np.uint8), ("16UC1", (3, 7), np.uint16),
    ("32FC1", (2, 3), np.float32), ("bgra8", (2, 2, 4), np.uint8),
])
def test_image_round_trip(encoding, shape, dtype):
    arr = (np.arange(np.prod(shape)) % 250).astype(dtype).reshape(shape)
    msg = conv.numpy_to_image(arr, encoding, 7, "camera_optical_frame")
    assert (msg.width, msg.height, msg.header.frame_id) == (shape[1], shape[0], "camera_optical_frame")
    np.testing.assert_array_equal(conv.image_to_numpy(msg), arr)


def test_image_with_row_padding_and_big_endian():
    data = np.arange(2 * 3, dtype=">u2").reshape(2, 3)
    padded = np.zeros((2, 8), dtype=np.uint8)  # 6 bytes of pixels + 2 bytes padding per row
    padded[:, :6] = data.view(np.uint8).reshape(2, 6)
    msg = Image(height=2, width=3, encoding="16UC1", is_bigendian=1, step=8, data=padded.tobytes())
    np.testing.assert_array_equal(conv.image_to_numpy(msg), data.astype(np.uint16))


def test_image_errors():
    with pytest.raises(ValueError, match="unsupported image encoding 'yuv422'"):
        conv.image_to_numpy(Image(encoding="yuv422"))
    with pytest.raises(ValueError, match="too small"):
        conv.image_to_numpy(Image(height=2, width=2, encoding="rgb8", step=6, data=b"\x00" * 5))
    with pytest.raises(ValueError, match="rgb8 needs a uint8 array"):
        conv.numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8", 0, "f")


def test_camera_info_projection_matches_k():
    K = np.array([[300.0, 0, 160.0], [0, 310.0, 120.0], [0, 0, 1]])
    info = conv.make_camera_info(K, 320, 240, 0, "camera_optical_frame")
    P = np.array(info.p).reshape(3, 4)
    point = np.array([0.1, -0.2, 2.0, 1.0])
    uv = P @ point
    np.testing.assert_allclose(uv[:2] / uv[2], [160.0 + 300.0 * 0.05, 120.0 - 310.0 * 0.1])


def test_camera_info_from_models():
    pinhole = CameraModel(LINEAR, [200.0, 210.0, 239.5, 159.5], 480, 320, T_device_camera=np.eye(4))
    info = conv.camera_info_from_model(pinhole, 7, "cam")
    point = np.array([0.3, -0.1, 1.5])
    uv = np.array(info.p).reshape(3, 4) @ np.append(point, 1.0)
    np.testing.assert_allclose(uv[:2] / uv[2], pinhole.project_no_checks(point))
    assert (info.width, info.height, info.distortion_model, list(info.d)) == (480, 320, "plumb_bob", [])
    fisheye_params = np.arange(1.0, 16.0)
    info = conv.camera_info_from_model(CameraModel(FISHEYE624, fisheye_params, 64, 64), 7, "cam")
    assert info.distortion_model == "fisheye624"
    np.testing.assert_array_equal(info.d, fisheye_params[3:])
    np.testing.assert_array_equal(np.array(info.k).reshape(3, 3)[:2], [[1.0, 0, 2.0], [0, 1.0, 3.0]])


def test_camera_model_from_info_inverts_camera_info_from_model():
    pinhole = CameraModel(LINEAR, [200.0, 210.0, 239.5, 159.5], 480, 320)
    fisheye = CameraModel(FISHEYE624, np.r_[150.0, 31.5, 32.5, np.linspace(-0.1, 0.1, 12)], 64, 64)
    for model in (pinhole, fisheye):
        back = conv.camera_model_from_info(conv.camera_info_from_model(model, 7, "cam"))
        assert (back.model, back.width, back.height) == (model.model, model.width, model.height)
        np.testing.assert_array_equal(back.params, model.params)
    # a RealSense-style info with zero plumb_bob coefficients is a pinhole too
    K = np.array([[300.0, 0, 160.0], [0, 310.0, 120.0], [0, 0, 1]])
    zero = conv.make_camera_info(K, 320, 240, 0, "cam", distortion=[0.0] * 5)
    np.testing.assert_array_equal(conv.camera_model_from_info(zero).params, [300.0, 310.0, 160.0, 120.0])


def test_camera_model_from_info_rejections():
    K = np.array([[300.0, 0, 160.0], [0, 310.0, 120.0], [0, 0, 1]])
    with pytest.raises(ValueError, match="frame 'cam' has plumb_bob distortion .* rectify the images first"):
        conv.camera_model_from_info(conv.make_camera_info(K, 320, 240, 0, "cam", distortion=[0.1, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match="not calibrated"):
        conv.camera_model_from_info(conv.make_camera_info(np.zeros((3, 3)), 320, 240, 0, "cam"))
    with pytest.raises(ValueError, match="fisheye624 needs 12 coefficients"):
        conv.camera_model_from_info(conv.make_camera_info(K, 320, 240, 0, "cam", [0.0] * 12, "fisheye624"))
    binned = conv.make_camera_info(K, 320, 240, 0, "cam")
    binned.binning_x = 2
    with pytest.raises(ValueError, match="binning"):
        conv.camera_model_from_info(binned)


def test_tokens_round_trip_and_rejections():
    tokens = np.random.default_rng(0).normal(size=(8, 20)).astype(np.float32)
    mask = np.array([True] * 3 + [False] * 5)
    ids = ["hand_right", "plate", "bread"] + [""] * 5
    msg = conv.tokens_to_msg(tokens, mask, ids, "camera_frame", 11, "camera_optical_frame")
    out_tokens, out_mask, out_ids = conv.msg_to_tokens(msg)
    np.testing.assert_array_equal(out_tokens, tokens)
    np.testing.assert_array_equal(out_mask, mask)
    assert out_ids == ids
    bad = InteractionTokens(token_dim=20, tokens=[0.0] * 30, mask=[True, True], entity_ids=["a", "b"])
    with pytest.raises(ValueError, match="sizes disagree"):
        conv.msg_to_tokens(bad)
    tokens[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        conv.tokens_to_msg(tokens, mask, ids, "camera_frame", 0, "f")
    with pytest.raises(ValueError, match="frame_mode"):
        conv.tokens_to_msg(tokens * 0, mask, ids, "base_frame", 0, "f")


@pytest.mark.parametrize("dual_hand", [False, True])
def test_tokens_of_the_ict_builder_round_trip(dual_hand):
    # The message's constants and row-major layout are those of humanego_core.ict.
    assert ict.FRAME_MODES == (InteractionTokens.FRAME_MODE_CAMERA, InteractionTokens.FRAME_MODE_ANCHOR)
    assert (ict.TYPE_PAD, ict.TYPE_HAND_LEFT, ict.TYPE_HAND_RIGHT, ict.TYPE_OBJECT_ANCHOR, ict.TYPE_OBJECT_OTHER) == (
        InteractionTokens.TYPE_PAD, InteractionTokens.TYPE_HAND_LEFT, InteractionTokens.TYPE_HAND_RIGHT,
        InteractionTokens.TYPE_OBJECT_ANCHOR, InteractionTokens.TYPE_OBJECT_OTHER)
    T = random_poses(4, seed=2)
    config = ict.ICTConfig(frame_mode="anchor_frame", dual_hand=dual_hand)
    objects = [ict.ObjectState("plate", T[2], is_anchor=True), ict.ObjectState("bread", T[3])]
    built = ict.build_tokens(config, T[2], [ict.HandState("left", T[0], 1.0), ict.HandState("right", T[1], 0.0)],
                             objects, NormStats(np.zeros(3), np.ones(3)))
    msg = conv.tokens_to_msg(built.tokens, built.mask, built.entity_ids, config.frame_mode, 5, "plate")
    assert msg.token_dim == ict.token_dim(dual_hand) and len(msg.tokens) == ict.MAX_TOKENS * msg.token_dim
    np.testing.assert_array_equal(np.asarray(msg.tokens[:msg.token_dim]), built.tokens[0])
    tokens, mask, ids = conv.msg_to_tokens(msg)
    np.testing.assert_array_equal(tokens, built.tokens)
    np.testing.assert_array_equal(mask, built.mask)
    assert ids == built.entity_ids


def test_chunk_round_trip_and_rejections():
    poses = random_poses(50 * 2, seed=3).reshape(50, 2, 4, 4)
    grasp = np.random.default_rng(1).uniform(size=(50, 2)).astype(np.float32)
    msg = conv.chunk_to_msg(poses, grasp, ["left", "right"], 1 / 30, 0.2, 99, "base_link", "flow")
    assert len(msg.poses) == 100 and msg.policy_id == "flow"
    out_poses, out_grasp = conv.msg_to_chunk(msg)
    np.testing.assert_allclose(out_poses, poses, atol=1e-12)
    np.testing.assert_array_equal(out_grasp, grasp)
    with pytest.raises(ValueError, match="sizes disagree"):
        conv.msg_to_chunk(ActionChunk(dt=0.1, arms=["right"], poses=msg.poses[:3], grasp=[0.0] * 2))
    msg.dt = float("nan")
    with pytest.raises(ValueError, match="dt"):
        conv.msg_to_chunk(msg)
    msg.dt = 0.1
    msg.poses[5].orientation.w = float("nan")
    with pytest.raises(ValueError, match="pose invalid"):
        conv.msg_to_chunk(msg)
