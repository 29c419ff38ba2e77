"""humanego_perception.object_keypoints: keypoint selection, the keypoint frame, depth fusion, and the locator
(select -> track -> triangulate -> frame, then a rigid fit after the object moved) on rendered views of a
textured square lying on a table, seen by a moving pinhole camera."""

import math

import cv2
import numpy as np
import pytest

from humanego_core import geometry
from humanego_perception.object_keypoints import (
    KeypointError,
    KeypointLocator,
    KeypointPoseConfig,
    KeypointSelectionConfig,
    TrackerConfig,
    fuse_keypoints,
    keypoint_frame,
    make_tracker,
    model_size,
    scale_about,
    select_keypoints,
    upright,
)
from humanego_perception.onnx_model import OnnxModelError
from humanego_perception.shape_fit import model_points, pose_from
from humanego_perception.tracking import CoTrackerConfig, CoTrackerOnnx, LucasKanadeTracker

from .test_tracking import cotracker_like_model


def test_select_keypoints_on_a_flat_box_uses_its_silhouette():
    image = np.full((60, 80), 90, np.uint8)
    image[20:35, 30:55] = 200  # a flat-coloured rectangle: no texture inside
    mask = image == 200
    points = select_keypoints(image, mask, KeypointSelectionConfig(max_points=8, min_distance_px=3, quality=0.01))
    assert 4 <= len(points) <= 8 and points.dtype == np.float32
    corners = np.array([[29.5, 19.5], [54.5, 19.5], [29.5, 34.5], [54.5, 34.5]])
    nearest = np.min(np.linalg.norm(points[:, None] - corners[None], axis=-1), axis=0)
    assert np.all(nearest < 2.5), "each corner of the silhouette has a keypoint"
    assert len(select_keypoints(image, np.zeros_like(mask))) == 0
    with pytest.raises(KeypointError, match="mask of its size"):
        select_keypoints(image, mask[:10])


def test_textured_objects_get_corners_inside_the_eroded_mask():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (80, 100)).astype(np.uint8), (0, 0), 1.5)
    mask = np.zeros((80, 100), bool)
    mask[20:60, 30:80] = True
    points = select_keypoints(image, mask, KeypointSelectionConfig(max_points=20, erode_px=2))
    assert len(points) == 20
    assert np.all((points[:, 0] >= 32) & (points[:, 0] <= 77) & (points[:, 1] >= 22) & (points[:, 1] <= 57))


def test_keypoint_frame_of_a_box_is_its_base_centre_with_x_along_its_length():
    T_true = pose_from(0.4, -0.2, 0.75, math.radians(160.0))  # x points to world -x: the frame turns it round
    corners = geometry.transform_points(T_true, model_points("box", (0.10, 0.05, 0.04)))
    T = keypoint_frame(corners)
    np.testing.assert_allclose(T[:3, 3], [0.4, -0.2, 0.75], atol=1e-9)
    np.testing.assert_allclose(T[:3, 2], [0.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(T[:3, 0], -T_true[:3, 0], atol=1e-9)
    assert T[0, 0] >= 0
    np.testing.assert_allclose(model_size("box", geometry.transform_points(geometry.invert(T), corners)),
                               [0.10, 0.05, 0.04], atol=1e-9)
    # Percentiles: one of 9 keypoints far off (along its viewing ray) moves the extremes, not the 20th percentile.
    off = np.r_[corners, [[0.4, -0.2, 0.45]]]
    assert keypoint_frame(off)[2, 3] == pytest.approx(0.45)
    assert keypoint_frame(off, 20.0)[2, 3] == pytest.approx(0.75)


def test_upright_keeps_the_origin_and_the_yaw():
    tilted = pose_from(0.1, 0.2, 0.3, 0.7) @ geometry.make_transform(
        geometry.matrix_from_rot6d(np.array([1.0, 0.0, 0.0, math.cos(0.2), 0.0, math.sin(0.2)])), np.zeros(3))
    np.testing.assert_allclose(upright(tilted), pose_from(0.1, 0.2, 0.3, 0.7), atol=1e-12)


def test_fusion_pulls_uncertain_depths_to_the_common_depth_and_keeps_certain_points():
    camera = np.zeros(3)
    X = np.array([[-0.05, 0.0, 1.0], [0.05, 0.0, 1.3], [0.0, 0.05, 0.8], [0.0, -0.05, 1.1]])
    variances = np.array([1.0, 0.01, 1e-4, 1.0])  # along the ray (z); the image position known
    fused, covariance = fuse_keypoints(X, [np.diag([1e-8, 1e-8, v]) for v in variances], camera)
    np.testing.assert_allclose(fused[:, :2], X[:, :2], atol=1e-6)
    # Closed form along z (the viewing ray; all matrices are diagonal): prior s^2 = 1.5 * 0.05^2, weights
    # 1 / (v_i + s^2), centre c their weighted mean, each point c + s^2 / (v_i + s^2) (z_i - c).
    s2 = 1.5 * 0.05 ** 2
    w = 1 / (variances + s2)
    c = (w @ X[:, 2]) / w.sum()
    np.testing.assert_allclose(fused[:, 2], c + s2 * w * (X[:, 2] - c), rtol=1e-9)
    assert abs(fused[2, 2] - 0.8) < 0.003 and abs(fused[0, 2] - c) < 0.01  # certain kept, uncertain pulled
    assert covariance[2, 2] == pytest.approx(1 / w.sum())
    certain, _ = fuse_keypoints(X, [1e-10 * np.eye(3)] * 4, camera)
    np.testing.assert_allclose(certain, X, atol=1e-6)


def test_scaling_about_the_camera_keeps_the_projections():
    rng = np.random.default_rng(3)
    centre = np.array([0.1, -0.2, 1.3])
    X = rng.uniform(-0.1, 0.1, (6, 3)) + [0.5, 0.0, 0.8]
    scaled = scale_about(X, centre, 1.7)
    rays, scaled_rays = X - centre, scaled - centre
    np.testing.assert_allclose(scaled_rays / np.linalg.norm(scaled_rays, axis=1, keepdims=True),
                               rays / np.linalg.norm(rays, axis=1, keepdims=True), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(scaled_rays, axis=1), 1.7 * np.linalg.norm(rays, axis=1))


# ----- the locator on rendered views -----
K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]])
WIDTH, HEIGHT = 320, 240
SIDE_M, TEXTURE_PX = 0.16, 320
POSE_A = pose_from(0.0, 0.0, 0.0, 0.0)  # the square's centre on the table (z = 0)
POSE_B = pose_from(0.04, 0.03, 0.0, math.radians(15.0))
FRAMES = 36  # 0-11 at A, 12-23 moved smoothly to B, 24-35 at B


def look_at(eye, target) -> np.ndarray:
    """T_world_camera of an optical frame (z forward, y down) at ``eye`` looking at ``target``."""
    z = np.asarray(target, float) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    return geometry.make_transform(np.stack([x, np.cross(z, x), z], axis=1), eye)


def object_pose(t: int) -> np.ndarray:
    alpha = np.clip((t - 11) / 12.0, 0.0, 1.0)
    return pose_from(0.04 * alpha, 0.03 * alpha, 0.0, math.radians(15.0) * alpha)


@pytest.fixture(scope="module")
def views():
    """Frames, masks and camera poses: the camera circles 30 cm around the square from 0.55 m away."""
    rng = np.random.default_rng(1)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (TEXTURE_PX, TEXTURE_PX, 3)).astype(np.uint8), (0, 0), 2.0)
    # texture pixel (u, v) -> object frame (x, y, 0) -> world
    S = np.array([[SIDE_M / TEXTURE_PX, 0, -SIDE_M / 2], [0, SIDE_M / TEXTURE_PX, -SIDE_M / 2], [0, 0, 1]])
    frames, masks, poses = [], [], []
    for t in range(FRAMES):
        angle = 2 * math.pi * t / FRAMES
        T_wc = look_at(np.array([0.15 * math.cos(angle) - 0.35, 0.15 * math.sin(angle), 0.4]), [0.02, 0.015, 0.0])
        T_cw = geometry.invert(T_wc)
        T_co = T_cw @ object_pose(t)
        H = K @ np.c_[T_co[:3, 0], T_co[:3, 1], T_co[:3, 3]] @ S
        image = np.full((HEIGHT, WIDTH, 3), 110, np.uint8)
        warped = cv2.warpPerspective(texture, H, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR)
        mask = cv2.warpPerspective(np.full((TEXTURE_PX, TEXTURE_PX), 255, np.uint8), H, (WIDTH, HEIGHT)) > 127
        image[mask] = warped[mask]
        frames.append(image)
        masks.append(mask)
        poses.append(T_wc)
    return frames, masks, np.array(poses)


def test_the_locator_finds_the_square_and_follows_it_by_a_rigid_fit(views):
    frames, masks, T_world_camera = views
    config = KeypointPoseConfig()
    locator = KeypointLocator(config, make_tracker(config.tracker), K, T_world_camera, frames, masks)
    model = locator.first(0, 12, [])
    assert model is not None and len(model.track_index) >= 10
    assert model.rms_px < 0.5
    # The keypoints lie on the table (measured: within -6..+3 mm of it), the base at the extent percentile of
    # their heights, within the square.
    world = geometry.transform_points(model.T_world_obj, model.points_obj)
    assert abs(np.median(world[:, 2])) < 0.003 and np.all(np.abs(world[:, 2]) < 0.01)
    assert model.T_world_obj[2, 3] == pytest.approx(np.percentile(world[:, 2], config.extent_percentile))
    assert np.all(np.abs(world[:, :2]) < SIDE_M / 2)
    assert set(locator.clock) == {"tracking_s", "triangulation_s"}

    T_moved = locator.refit(24, FRAMES, [], model)
    assert T_moved is not None
    # The motion it found is the square's (the object frame is the keypoints', so compare motions).
    found = T_moved @ geometry.invert(model.T_world_obj)
    true = POSE_B @ geometry.invert(POSE_A)
    assert np.linalg.norm(geometry.transform_points(found, model.T_world_obj[:3, 3])
                          - geometry.transform_points(true, model.T_world_obj[:3, 3])) < 0.005
    assert math.degrees(geometry.geodesic_angle(found[:3, :3], true[:3, :3])) < 1.5

    # Tracks that slid off the object (here: half of them shifted by 20 px after the move) do not fit the model:
    # refused, the carried pose stays.
    locator.tracks[24:, model.track_index[::2]] += 20.0
    assert locator.refit(24, FRAMES, [], model) is None
    locator.config.max_refit_rms_m = 1.0  # they still triangulate: it is the residual that refuses them
    assert locator.refit(24, FRAMES, [], model) is not None

    # Too few views: no pose.
    assert locator.first(0, 2, []) is None


def test_a_metric_cue_sets_the_keypoints_depth_along_their_rays(views):
    frames, masks, T_world_camera = views
    config = KeypointPoseConfig()
    locator = KeypointLocator(config, make_tracker(config.tracker), K, T_world_camera, frames, masks)
    centre = T_world_camera[0:12, :3, 3].mean(axis=0)
    free = locator.first(0, 12, [])
    free_world = geometry.transform_points(free.T_world_obj, free.points_obj)

    # A support 2 cm above the table: the points' base moves onto it along the rays from the cameras' centre.
    lifted = locator.first(0, 12, [], support_z=0.02)
    world = geometry.transform_points(lifted.T_world_obj, lifted.points_obj)
    assert lifted.T_world_obj[2, 3] == pytest.approx(0.02)
    directions = [(p - centre) / np.linalg.norm(p - centre, axis=1, keepdims=True) for p in (free_world, world)]
    np.testing.assert_allclose(directions[1], directions[0], atol=1e-9)

    # A pinch point: the points' centroid ends as deep (along its ray) as the anchor.
    anchor = np.array([0.0, 0.0, -0.03])
    held = locator.first(0, 12, [anchor])
    world = geometry.transform_points(held.T_world_obj, held.points_obj)
    ray = world.mean(axis=0) - centre
    assert (world.mean(axis=0) - centre) @ ray == pytest.approx((anchor - centre) @ ray)


def test_the_tracker_backend_is_chosen_in_the_config_and_a_missing_model_is_named(tmp_path):
    assert isinstance(make_tracker(TrackerConfig()), LucasKanadeTracker)
    model = cotracker_like_model(tmp_path / "cotracker.onnx", T=4)
    config = TrackerConfig(backend="cotracker_onnx", cotracker=CoTrackerConfig(model_path=str(model)))
    assert isinstance(make_tracker(config), CoTrackerOnnx)
    config.cotracker.model_path = str(tmp_path / "missing.onnx")
    with pytest.raises(OnnxModelError, match=r"missing\.onnx.*does not exist.*objects\.keypoints\.tracker\.cotracker"):
        make_tracker(config)
