"""humanego_perception.gripper_overlay: a known pose drawn onto the pixels the pinhole formula gives, the robot's
ee mapped onto the hand-frame convention, near-plane clipping, fisheye, keypoint dots and config checks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from humanego_core import geometry
from humanego_core.camera_models import LINEAR, CameraModel
from humanego_perception.gripper_overlay import (
    GripperConfig,
    GripperOverlay,
    KeypointsConfig,
    clip_near,
    draw_keypoints,
)
from humanego_sim.aria_recording import RecordingWriter

F, CX, CY = 200.0, 159.5, 119.5
CAMERA = CameraModel(LINEAR, [F, F, CX, CY], 320, 240)
BACKGROUND = 90
# The gripper facing the camera: closing axis = image right, approach = image up, z = towards the camera.
R_FRONTAL = np.column_stack([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]])


def frontal(depth=0.5) -> np.ndarray:
    return geometry.make_transform(R_FRONTAL, [0.0, 0.0, depth])


def blank(camera=CAMERA) -> np.ndarray:
    return np.full((camera.height, camera.width, 3), BACKGROUND, np.uint8)


def changed(a, b) -> np.ndarray:
    return (a != b).any(axis=-1)


def covered(image) -> np.ndarray:
    """Pixels more than half covered by the gripper (its anti-aliased edges fade over a pixel)."""
    return np.abs(image.astype(int) - BACKGROUND).max(axis=-1) > 0.5 * (255 - BACKGROUND)


def test_a_known_pose_lands_on_the_pixels_the_pinhole_gives():
    config = GripperConfig()
    out = GripperOverlay(config).draw(blank(), CAMERA, frontal(0.5), 0.08)
    half, t, length, w = 0.04, config.finger_thickness_m, config.finger_length_m, config.finger_width_m
    front = 0.5 - w / 2  # the fingers' front faces
    # the right finger's front face: u in [cx + f h / z, cx + f (h + t) / z], v in [cy, cy + f L / z]
    u = CX + F * (half + t / 2) / front
    for v in (CY + 0.25 * F * length / front, CY + 0.75 * F * length / front):
        pixel = out[int(round(v)), int(round(u))].astype(float)
        centroid = np.array([half + t / 2, length / 2, front])
        shade = config.ambient + (1 - config.ambient) * front / np.linalg.norm(centroid)
        np.testing.assert_allclose(pixel, np.array(config.colour) * shade, atol=1.5)
    # the left finger mirrors it; the gap between the fingers shows the background
    assert changed(out, blank())[int(CY + 10), int(round(2 * CX - u))]
    assert not changed(out, blank())[int(CY + 10), int(CX)]
    # the inner edge of the right finger (its inner side face reaches back to depth 0.51)
    row = np.flatnonzero(covered(out)[int(CY + 10), int(CX):]) + int(CX)
    assert abs(row[0] - (CX + F * half / (0.5 + w / 2))) <= 1.0
    assert abs(row[-1] - (CX + F * (half + t) / front)) <= 1.0


def test_the_opening_moves_the_fingers():
    narrow = GripperOverlay(GripperConfig()).draw(blank(), CAMERA, frontal(0.5), 0.02)
    row = np.flatnonzero(covered(narrow)[int(CY + 10), int(CX):]) + int(CX)
    assert abs(row[0] - (CX + F * 0.01 / 0.51)) <= 1.0
    with pytest.raises(ValueError, match="opening"):
        GripperOverlay(GripperConfig()).draw(blank(), CAMERA, frontal(0.5), float("nan"))


def test_robot_ee_pose_maps_onto_the_hand_frame_convention():
    # a panda/ur5e ee (z approach, fingers moving along y) pointing up in the image, fingers along image x
    R_camera_ee = np.column_stack([[0, 0, -1.0], [1.0, 0, 0], [0, -1.0, 0]])
    T_camera_ee = geometry.make_transform(R_camera_ee, [0.0, 0.0, 0.5])
    config = GripperConfig()
    T_camera_gripper = T_camera_ee @ config.T_ee_gripper
    np.testing.assert_allclose(T_camera_gripper, frontal(0.5), atol=1e-12)
    overlay = GripperOverlay(config)
    np.testing.assert_array_equal(overlay.draw(blank(), CAMERA, T_camera_gripper, 0.05),
                                  overlay.draw(blank(), CAMERA, frontal(0.5), 0.05))


def test_back_faces_are_culled_and_faces_come_farthest_first():
    faces = GripperOverlay(GripperConfig()).faces(frontal(0.5), 0.08)
    depths = [d for d, _, _ in faces]
    assert depths == sorted(depths, reverse=True)
    assert len(faces) <= 3 * 4  # a convex box shows at most 3 faces
    assert all(0 < shade <= 1 for _, _, shade in faces)


def test_what_is_behind_the_camera_is_not_drawn():
    overlay = GripperOverlay(GripperConfig())
    np.testing.assert_array_equal(overlay.draw(blank(), CAMERA, frontal(-0.5), 0.08), blank())
    # approach pointing at the camera from 3 cm away: the stem and palm are behind it, the fingertips not
    T = geometry.make_transform(np.column_stack([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]]), [0.0, 0.0, 0.03])
    out = overlay.draw(blank(), CAMERA, T, 0.08)
    assert changed(out, blank()).any()


def test_clip_near_cuts_polygons_at_the_plane():
    square = np.array([[0, 0, -1.0], [1, 0, 1.0], [1, 1, 1.0], [0, 1, -1.0]])
    clipped = clip_near(square, 0.0)
    assert np.all(clipped[:, 2] >= 0) and len(clipped) == 4
    np.testing.assert_allclose(sorted(clipped[:, 0]), [0.5, 0.5, 1.0, 1.0])
    assert len(clip_near(square, 2.0)) == 0


def test_fisheye_camera():
    camera = RecordingWriter.camera_for(240, 240)
    ray = camera.unproject(camera.principal_point[None])[0][0]
    T = frontal()
    T[:3, 3] = ray / np.linalg.norm(ray) * 0.4
    config = GripperConfig()
    out = GripperOverlay(config).draw(blank(camera), camera, T, 0.08)
    finger = geometry.transform_points(T, np.array([[0.04 + config.finger_thickness_m / 2, -0.025,
                                                     config.finger_width_m / 2]]))
    u, v = np.round(camera.project(finger)[0][0]).astype(int)
    assert changed(out, blank(camera))[v, u]
    gap = geometry.transform_points(T, np.array([[0.0, -0.025, 0.0]]))
    u, v = np.round(camera.project(gap)[0][0]).astype(int)
    assert not changed(out, blank(camera))[v, u]


def test_keypoints_are_dots_in_their_objects_colour():
    config = KeypointsConfig(radius_px=3)
    out = draw_keypoints(blank(), np.array([[50.3, 60.7], [200.0, 100.0]]), config, index=5)
    colour = config.colours[5 % len(config.colours)]
    np.testing.assert_array_equal(out[61, 50], colour)
    np.testing.assert_array_equal(out[100, 200], colour)
    drawn = changed(out, blank())
    assert drawn.sum() < 2 * np.pi * 4.5**2 and not drawn[61, 60] and not drawn[70, 50]
    with pytest.raises(ValueError, match="NaN"):
        draw_keypoints(blank(), np.array([[np.nan, 3.0]]), config)
    np.testing.assert_array_equal(draw_keypoints(blank(), np.zeros((0, 2)), config), blank())


def test_config_problems_are_refused():
    with pytest.raises(ValueError, match="gripper.ee_to_gripper"):
        GripperOverlay(GripperConfig(ee_to_gripper=[[2.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]]))
    with pytest.raises(ValueError, match="gripper.closed_width_m"):
        GripperOverlay(replace(GripperConfig(), closed_width_m=0.1, open_width_m=0.05))
    with pytest.raises(ValueError, match="keypoints.colours"):
        draw_keypoints(blank(), np.zeros((1, 2)), KeypointsConfig(colours=[[1, 2]]))
