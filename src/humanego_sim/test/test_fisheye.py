"""FisheyeRenderer: MuJoCo renders warped into Aria's Fisheye624 image, checked with projectaria_tools' projection."""

import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanego_core import geometry
from humanego_core.camera_models import CameraModel
from humanego_sim.fisheye import FisheyeRenderer
from humanego_sim.tasks import load_task
from humanego_sim.world import World

calibration = pytest.importorskip("projectaria_tools.core.calibration")

CALIBRATION_JSON = Path(os.environ.get("HUMANEGO_WS", Path(__file__).resolve().parents[3])) / "config" / "sim" / \
    "aria_device_calibration.json"
SIZE = 352  # a quarter of the 1408 sensor: fast, and 4x coarser than the sensor is still sub-object


@pytest.fixture(scope="module")
def world():
    w = World(load_task("serve_bread"))
    yield w
    w.close()


@pytest.fixture(scope="module")
def rgb_calib():
    calib = calibration.device_calibration_from_json_string(CALIBRATION_JSON.read_text())
    return calib.get_camera_calib("camera-rgb").rescale(np.array([SIZE, SIZE]), SIZE / 1408)


@pytest.fixture(scope="module")
def renderer(world, rgb_calib):
    return FisheyeRenderer.from_camera_model(world, "ego_camera", CameraModel.from_projectaria(rgb_calib))


def box_corners(world, name):
    sx, sy, sz = world.task.objects[name].size
    local = np.array([[x, y, z] for x in (-sx / 2, sx / 2) for y in (-sy / 2, sy / 2) for z in (0.0, sz)])
    return geometry.transform_points(world.object_pose(name), local)


def in_camera(world, points_world):
    return geometry.transform_points(geometry.invert(world.camera_pose("ego_camera")), points_world)


def test_pinhole_covers_the_valid_circle_at_the_fisheye_centre_resolution(world, renderer, rgb_calib):
    pin = renderer.pinhole
    focal = rgb_calib.get_projection_params()[0]
    assert pin.params[0] == pytest.approx(focal)
    # MuJoCo's own intrinsics for the fovy the renderer set agree with the pinhole model used for the maps.
    renderer.render_pinhole("depth")
    K = world.camera_matrix("ego_camera", pin.width, pin.height)
    np.testing.assert_allclose([K[0, 0], K[1, 1], K[0, 2], K[1, 2]], pin.params, rtol=1e-12)
    # Every pixel inside Aria's valid radius is rendered (the default cone is the calibration's 1 rad).
    uv = renderer.fisheye.pixel_grid()
    inside = np.sum((uv - rgb_calib.get_principal_point()) ** 2, axis=-1) <= rgb_calib.get_valid_radius() ** 2
    np.testing.assert_array_equal(renderer.valid, inside)


@pytest.mark.parametrize("positions", [
    {"bread": (0.45, -0.15, 0.3), "plate": (0.47, 0.15)},   # the task's region, near the image centre
    {"bread": (0.82, 0.50, -0.8), "plate": (0.0, -0.45)},   # far corners: the fisheye periphery
    {"bread": (0.05, 0.45, 1.2), "plate": (0.85, -0.50)},
])
def test_objects_are_where_projectaria_projects_them(world, renderer, rgb_calib, positions):
    height = world.config.table.height
    x, y, yaw = positions["bread"]
    world.set_object_pose("bread", geometry.make_transform(Rotation.from_euler("z", yaw).as_matrix(), [x, y, height]))
    world.set_object_pose("plate", geometry.make_transform(np.eye(3), [*positions["plate"], height]))
    world.forward()
    labels = renderer.render("labels")
    rgb = renderer.render("rgb")
    ids = {name: i for i, name in world.label_names().items()}

    # Object centres land on the object's label.
    for name, half_height in (("bread", 0.02), ("plate", 0.0075)):
        centre = world.object_pose(name)[:3, 3] + [0, 0, half_height]
        uv = rgb_calib.project(in_camera(world, centre[None])[0])
        assert uv is not None, f"{name} centre not visible"
        u, v = np.round(uv).astype(int)
        assert np.all(labels[v - 1:v + 2, u - 1:u + 2] == ids[name]), (name, uv)
        assert rgb[v, u].sum() > 0

    # The bread's silhouette spans the projected box corners: its edges are where projectaria puts them.
    corners = np.array([rgb_calib.project(p) for p in in_camera(world, box_corners(world, "bread"))])
    vs, us = np.nonzero(labels == ids["bread"])
    silhouette = np.array([us.min() - 0.5, vs.min() - 0.5, us.max() + 0.5, vs.max() + 0.5])
    projected = np.r_[corners.min(axis=0), corners.max(axis=0)]
    np.testing.assert_allclose(silhouette, projected, atol=1.0)


def test_outside_the_valid_circle_is_black_and_background(world, renderer):
    world.reset(seed=3)
    rgb, labels, depth = (renderer.render(kind) for kind in ("rgb", "labels", "depth"))
    outside = ~renderer.valid
    assert outside.sum() > 0.15 * outside.size  # the corners of the square image
    assert not rgb[outside].any() and not labels[outside].any() and not depth[outside].any()
    assert labels.dtype == np.int32 and depth.dtype == np.float32 and rgb.shape == (SIZE, SIZE, 3)
    # Inside, the table and floor are lit and have a depth; objects are labelled.
    lit = rgb[renderer.valid].sum(axis=-1) > 0
    assert lit.mean() > 0.5
    assert np.all(depth[renderer.valid][lit] > 0.3)
    assert set(np.unique(labels)) == {0, 3, 4}


def test_bad_configurations_are_refused(world, rgb_calib):
    model = CameraModel.from_projectaria(rgb_calib)
    with pytest.raises(ValueError, match="offscreen buffer"):
        FisheyeRenderer.from_camera_model(world, "ego_camera", model, oversample=8.0)
    with pytest.raises(ValueError, match="max_ray_angle"):
        FisheyeRenderer.from_camera_model(world, "ego_camera", model, max_ray_angle=math.radians(95))
    with pytest.raises(ValueError, match="needs a fisheye624"):
        pinhole = CameraModel("linear", [99.0, 99.0, 87.5, 87.5], 176, 176)
        FisheyeRenderer.from_camera_model(world, "ego_camera", pinhole)
    renderer = FisheyeRenderer.from_camera_model(world, "ego_camera", model, max_ray_angle=math.radians(40))
    rays, _ = renderer.fisheye.unproject(renderer.fisheye.pixel_grid())
    angle = np.arctan(np.hypot(rays[..., 0], rays[..., 1]))
    assert not renderer.valid[angle > math.radians(40)].any() and renderer.valid[angle < math.radians(39)].all()
    with pytest.raises(ValueError, match="kind must be"):
        renderer.warp(np.zeros((renderer.pinhole.height, renderer.pinhole.width)), "normals")
