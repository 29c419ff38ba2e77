"""RobotSelfMask against independent references: MuJoCo's own segmentation of the simulated robot (the
same URDF, rasterised by OpenGL), a brute-force ray cast through every pixel (pinhole and Aria fisheye,
primitives crossing the camera plane), and MuJoCo's forward kinematics."""

import math

import mujoco
import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt
from scipy.spatial.transform import Rotation

from humanego_core.camera_models import LINEAR, CameraModel
from humanego_core.geometry import make_transform
from humanego_core.transform_tree import TransformTree
from humanego_perception.robot_mask import NEAR_CLIP_M, RobotDescriptionError, RobotSelfMask
from humanego_sim.robot_sim import CAMERA_OPTICAL_FRAME, RobotSim
from humanego_sim.tasks import load_task
from humanego_sim.world import robot_urdf

WIDTH, HEIGHT = 320, 240


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def pinhole(K: np.ndarray, width: int, height: int) -> CameraModel:
    return CameraModel(LINEAR, [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], width, height)


class RobotOnlySim:
    """The simulated robot with every non-robot geom moved to a geom group MuJoCo does not draw, so its
    'labels' render shows the whole robot (also where the table or objects would hide it)."""

    def __init__(self, robot: str):
        self.sim = RobotSim(load_task("serve_bread"), robot)
        m, robot_bodies = self.sim.model, set(self.sim.robot.link_bodies)
        for g in range(m.ngeom):
            if m.body(m.geom_bodyid[g]).name not in robot_bodies:
                m.geom_group[g] = 3  # not drawn: mjvOption shows groups 0-2 by default
        tree = TransformTree()
        for parent, child, T in self.sim.static_transforms():
            tree.set(parent, child, T, 0, static=True)
        self.T_camera_base = tree.lookup(CAMERA_OPTICAL_FRAME, "base_link")

    def pose(self, arm: np.ndarray, finger: float) -> dict[str, float]:
        r, data = self.sim.robot, self.sim.data
        data.qpos[r.arm_qpos], data.qpos[r.finger_qpos] = arm, finger
        mujoco.mj_kinematics(self.sim.model, data)
        return dict(zip(self.sim.joint_names, np.r_[arm, finger, finger], strict=True))

    def random_pose(self, rng) -> dict[str, float]:
        r = self.sim.robot
        return self.pose(rng.uniform(r.arm_limits[:, 0], r.arm_limits[:, 1]), rng.uniform(*r.finger_range))

    def robot_pixels(self, width: int, height: int) -> np.ndarray:
        return self.sim.render(width, height, "labels") == 1


@pytest.fixture(scope="module", params=["panda", "ur5e"])
def robot_sim(request):
    sim = RobotOnlySim(request.param)
    yield request.param, sim
    sim.sim.close()


def test_mask_matches_the_simulators_segmentation(robot_sim):
    robot, sim = robot_sim
    mask = RobotSelfMask(robot_urdf(robot), padding_px=0)
    camera = pinhole(sim.sim.camera_matrix(WIDTH, HEIGHT), WIDTH, HEIGHT)
    rng = np.random.default_rng(7)
    scores = []
    for _ in range(12):
        q = sim.random_pose(rng)
        truth = sim.robot_pixels(WIDTH, HEIGHT)
        ours = mask.mask(camera, sim.T_camera_base, q)
        scores.append(iou(ours, truth))
        assert_tight_superset(ours, truth, max_missed=0.002)
    assert min(scores) >= 0.95, scores


def test_forward_kinematics_matches_mujoco(robot_sim):
    robot, sim = robot_sim
    mask = RobotSelfMask(robot_urdf(robot))
    world = sim.sim.world
    T_world_base = world.body_pose("base_link")
    q = sim.random_pose(np.random.default_rng(3))
    np.testing.assert_allclose(mask.fk(q, "ee"), np.linalg.inv(T_world_base) @ world.body_pose("ee"), atol=1e-9)
    for link, T_base_link in mask.link_poses(q).items():
        np.testing.assert_allclose(T_base_link, np.linalg.inv(T_world_base) @ world.body_pose(link), atol=1e-9,
                                   err_msg=link)
    finger = sim.sim.robot.finger_joints
    assert mask.finger_joints == finger
    assert mask.finger_opening(q) == pytest.approx(q[finger[0]] + q[finger[1]])
    # Closed on nothing, a simulated gripper reads a few micrometres below its limit: that is closed.
    assert mask.finger_opening({**q, finger[0]: -3e-6, finger[1]: -4e-6}) == 0.0


def test_missing_and_bad_joint_positions_are_named():
    mask = RobotSelfMask(robot_urdf("panda"))
    q = {f"joint{i}": 0.1 for i in range(1, 8)}
    with pytest.raises(ValueError, match="missing for finger_joint1, finger_joint2"):
        mask.fk(q)
    with pytest.raises(ValueError, match="missing for joint3, finger_joint1"):
        mask.fk({k: v for k, v in q.items() if k != "joint3"} | {"other_robot_joint": 1.0})
    # A mimic joint left out follows its master (URDF <mimic>), as a driver publishing one finger would need.
    one_finger = mask.configuration(q | {"finger_joint1": 0.03})
    both = mask.configuration(q | {"finger_joint1": 0.03, "finger_joint2": 0.03})
    np.testing.assert_array_equal(one_finger, both)
    with pytest.raises(ValueError, match="NaN or inf for joint2"):
        mask.fk(q | {"joint2": math.nan, "finger_joint1": 0.0})
    with pytest.raises(ValueError, match="frame 'tool0' is not in panda.urdf"):
        mask.fk(q | {"finger_joint1": 0.0}, "tool0")


# ----- a synthetic robot with every primitive, against a ray cast -----
PRIMITIVES_URDF = """<?xml version="1.0"?>
<robot name="primitives">
  <link name="base_link">
    <visual><origin xyz="0 0 0.05"/><geometry><sphere radius="0.08"/></geometry></visual>
  </link>
  <link name="arm">
    <visual><origin xyz="0.15 0 0" rpy="0 1.5707963268 0"/>
      <geometry><cylinder radius="0.04" length="0.3"/></geometry></visual>
    <visual><origin xyz="0.3 0 0.05" rpy="0.3 0 0.2"/><geometry><box size="0.06 0.1 0.04"/></geometry></visual>
  </link>
  <joint name="swing" type="revolute"><parent link="base_link"/><child link="arm"/><origin xyz="0 0 0.1"/>
    <axis xyz="0 0 1"/><limit lower="-3" upper="3" effort="1" velocity="1"/></joint>
</robot>
"""
# (shape, dims, link, T_link_shape) of the same primitives, written out independently of the URDF parser
PRIMITIVES = [("sphere", (0.08,), "base_link", make_transform(np.eye(3), [0, 0, 0.05])),
              ("cylinder", (0.04, 0.15), "arm",
               make_transform(Rotation.from_euler("y", math.pi / 2).as_matrix(), [0.15, 0, 0])),
              ("box", (0.03, 0.05, 0.02), "arm",
               make_transform(Rotation.from_euler("xyz", [0.3, 0, 0.2]).as_matrix(), [0.3, 0, 0.05]))]


def inside(shape: str, dims, p: np.ndarray) -> np.ndarray:
    if shape == "sphere":
        return np.sum(p * p, axis=-1) <= dims[0] ** 2
    if shape == "cylinder":
        return (p[..., 0] ** 2 + p[..., 1] ** 2 <= dims[0] ** 2) & (np.abs(p[..., 2]) <= dims[1])
    return np.all(np.abs(p) <= np.asarray(dims), axis=-1)


def ray_cast(camera: CameraModel, T_camera_base: np.ndarray, link_poses: dict) -> np.ndarray:
    """Visible pixels (in the valid radius and field of view) whose ray through the pixel centre meets a
    primitive at a depth >= the near clip."""
    rays, visible = camera.unproject(camera.pixel_grid())
    if camera.model != LINEAR:
        visible &= np.arctan(np.hypot(rays[..., 0], rays[..., 1])) <= camera.max_solid_angle
    hit = np.zeros(rays.shape[:2], bool)
    for shape, dims, link, T_link_shape in PRIMITIVES:
        T_camera_shape = T_camera_base @ link_poses[link] @ T_link_shape
        T_shape_camera = np.linalg.inv(T_camera_shape)
        # Rays have z = 1, so a point's depth is its z: sample the depths of the primitive's bounding sphere.
        centre_z, radius = T_camera_shape[2, 3], np.linalg.norm(dims)
        depths = np.arange(max(NEAR_CLIP_M, centre_z - radius), centre_z + radius, 0.0015)
        for chunk in np.array_split(depths, max(1, len(depths) // 50)):
            p = rays[:, :, None, :] * chunk[None, None, :, None]
            p = p @ T_shape_camera[:3, :3].T + T_shape_camera[:3, 3]
            hit |= inside(shape, dims, p).any(axis=-1)
    return hit & visible


def assert_tight_superset(ours: np.ndarray, truth: np.ndarray, max_missed: float) -> None:
    """Our mask misses at most ``max_missed`` of the true pixels, and every extra pixel touches the true
    silhouette (the rasteriser fills the pixels a polygon's outline passes through)."""
    assert (truth & ~ours).sum() <= max_missed * truth.sum(), (truth & ~ours).sum()
    extra_distance = distance_transform_edt(~truth)[ours & ~truth]
    assert extra_distance.size == 0 or extra_distance.max() <= 1.5, extra_distance.max()


@pytest.fixture(scope="module")
def primitives_urdf(tmp_path_factory):
    path = tmp_path_factory.mktemp("urdf") / "primitives.urdf"
    path.write_text(PRIMITIVES_URDF)
    return path


def looking_at_origin(distance: float, yaw: float) -> np.ndarray:
    """T_camera_base of a camera ``distance`` from the base origin, looking at it from above at an angle."""
    position = distance * np.array([math.cos(yaw) * 0.8, math.sin(yaw) * 0.8, 0.6])
    z = -position / np.linalg.norm(position)
    x = np.cross(z, [0, 0, 1.0])
    x /= np.linalg.norm(x)
    return np.linalg.inv(make_transform(np.column_stack([x, np.cross(z, x), z]), position))


def aria_fisheye(size: int) -> CameraModel:
    from humanego_core.ament_index import resource_path
    camera = CameraModel.from_calibration_json(resource_path("config", "sim", "aria_device_calibration.json")
                                               .read_text())
    return camera.rescale(size, size, size / camera.width)


@pytest.mark.parametrize("camera_kind", ["pinhole", "fisheye"])
@pytest.mark.parametrize("distance, yaw, swing", [(0.9, 0.3, 0.4), (0.5, 2.0, -1.2), (0.25, -0.5, 0.1)])
def test_every_primitive_against_a_ray_cast(primitives_urdf, camera_kind, distance, yaw, swing):
    mask = RobotSelfMask(primitives_urdf, padding_px=0)
    camera = pinhole(np.array([[90.0, 0, 59.5], [0, 90.0, 44.5], [0, 0, 1]]), 120, 90) if camera_kind == "pinhole" \
        else aria_fisheye(160)
    T_camera_base = looking_at_origin(distance, yaw)
    q = {"swing": swing}
    truth = ray_cast(camera, T_camera_base, mask.link_poses(q))
    ours = mask.mask(camera, T_camera_base, q)
    assert truth.sum() > 100
    assert_tight_superset(ours, truth, max_missed=0.01)
    assert iou(ours, truth) >= 0.8, iou(ours, truth)  # small silhouettes: the outline is a good share


def test_a_primitive_reaching_behind_the_camera_is_clipped(primitives_urdf):
    """The camera sits inside the arm's cylinder's extent: the part in front fills a half-plane-like region."""
    mask = RobotSelfMask(primitives_urdf, padding_px=0)
    camera = pinhole(np.array([[60.0, 0, 39.5], [0, 60.0, 29.5], [0, 0, 1]]), 80, 60)
    q = {"swing": 0.0}
    # Camera 0.1 m above the arm's axis (z = 0.1), at x = 0.15, looking along +x: half the cylinder is behind it.
    R = np.column_stack([[0, -1.0, 0], [0, 0, -1.0], [1.0, 0, 0]])  # optical x = -y, y = -z, z = +x
    T_camera_base = np.linalg.inv(make_transform(R, [0.15, 0.0, 0.16]))
    truth = ray_cast(camera, T_camera_base, mask.link_poses(q))
    ours = mask.mask(camera, T_camera_base, q)
    assert truth.sum() > 300
    assert_tight_superset(ours, truth, max_missed=0.01)
    # Entirely behind the camera: nothing.
    away = np.linalg.inv(make_transform(np.column_stack([[0, 1.0, 0], [0, 0, -1.0], [-1.0, 0, 0]]), [-0.5, 0, 0.1]))
    assert not mask.mask(camera, away, q).any()


def test_padding_dilates_by_that_many_pixels(primitives_urdf):
    camera = pinhole(np.array([[60.0, 0, 39.5], [0, 60.0, 29.5], [0, 0, 1]]), 80, 60)
    T_camera_base, q = looking_at_origin(0.9, 0.3), {"swing": 0.4}
    bare = RobotSelfMask(primitives_urdf, padding_px=0).mask(camera, T_camera_base, q)
    padded = RobotSelfMask(primitives_urdf, padding_px=4).mask(camera, T_camera_base, q)
    distance = distance_transform_edt(~bare)
    assert np.all(padded[distance <= 3.5]) and not np.any(padded[distance > 4.5])


def test_meshes_and_bad_files_are_refused_naming_the_link(tmp_path):
    mesh = tmp_path / "mesh.urdf"
    mesh.write_text(PRIMITIVES_URDF.replace('<cylinder radius="0.04" length="0.3"/>',
                                            '<mesh filename="package://arm/meshes/upper.stl"/>'))
    with pytest.raises(RobotDescriptionError, match=r"link 'arm' has a visual mesh; .* supports only box, cylinder"):
        RobotSelfMask(mesh)
    broken = tmp_path / "broken.urdf"
    broken.write_text("<robot><link")
    with pytest.raises(RobotDescriptionError, match="broken.urdf: not a readable URDF"):
        RobotSelfMask(broken)
    with pytest.raises(FileNotFoundError, match="nowhere.urdf"):
        RobotSelfMask(tmp_path / "nowhere.urdf")
