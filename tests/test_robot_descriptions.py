"""urdf/: robot descriptions written from published kinematics, one source for pinocchio and MuJoCo.

The independent reference is the manufacturers' DH tables evaluated in closed form here; pinocchio
(IK side) and MuJoCo (sim side) must both reproduce them from the same URDF file.
"""

import mujoco
import numpy as np
import pinocchio as pin
import pytest

# Franka Panda, modified (Craig) DH: (a_{i-1}, d_i, alpha_{i-1}); the last row is the flange.
PANDA_MDH = [(0, 0.333, 0), (0, 0, -np.pi / 2), (0, 0.316, np.pi / 2), (0.0825, 0, np.pi / 2),
             (-0.0825, 0.384, -np.pi / 2), (0, 0, np.pi / 2), (0.088, 0, np.pi / 2), (0, 0.107, 0)]
PANDA_LIMITS = [(-2.8973, 2.8973), (-1.7628, 1.7628), (-2.8973, 2.8973), (-3.0718, -0.0698),
                (-2.8973, 2.8973), (-0.0175, 3.7525), (-2.8973, 2.8973)]
PANDA_VELOCITY = [2.175] * 4 + [2.61] * 3
# UR5e, standard DH: (d_i, a_i, alpha_i).
UR5E_DH = [(0.1625, 0, np.pi / 2), (0, -0.425, 0), (0, -0.3922, 0), (0.1333, 0, np.pi / 2),
           (0.0997, 0, -np.pi / 2), (0.0996, 0, 0)]
UR5E_LIMITS = [(-2 * np.pi, 2 * np.pi)] * 2 + [(-np.pi, np.pi)] + [(-2 * np.pi, 2 * np.pi)] * 3


def rot_x(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0, 0], [0, c, -s, 0], [0, s, c, 0], [0, 0, 0, 1.0]])


def rot_z(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1.0]])


def trans(x, y, z):
    T = np.eye(4)
    T[:3, 3] = [x, y, z]
    return T


def panda_flange_dh(q):
    T = np.eye(4)
    for i, (a, d, alpha) in enumerate(PANDA_MDH):
        theta = q[i] if i < 7 else 0.0
        T = T @ rot_x(alpha) @ trans(a, 0, 0) @ rot_z(theta) @ trans(0, 0, d)
    return T


def ur5e_flange_dh(q):
    T = np.eye(4)
    for i, (d, a, alpha) in enumerate(UR5E_DH):
        T = T @ rot_z(q[i]) @ trans(0, 0, d) @ trans(a, 0, 0) @ rot_x(alpha)
    return T


ROBOTS = {
    "panda": dict(n_arm=7, dh=panda_flange_dh, limits=PANDA_LIMITS, velocity=PANDA_VELOCITY),
    "ur5e": dict(n_arm=6, dh=ur5e_flange_dh, limits=UR5E_LIMITS, velocity=[np.pi] * 6),
}


def load(workspace, name):
    path = str(workspace / "urdf" / f"{name}.urdf")
    return path, pin.buildModelFromUrdf(path)


def random_arm_configs(model, n_arm, count, seed):
    rng = np.random.default_rng(seed)
    lo, hi = model.lowerPositionLimit[:n_arm], model.upperPositionLimit[:n_arm]
    return rng.uniform(lo, hi, size=(count, n_arm))


@pytest.mark.parametrize("name", ROBOTS)
def test_pinocchio_forward_kinematics_matches_published_dh(workspace, name):
    spec = ROBOTS[name]
    _, model = load(workspace, name)
    data = model.createData()
    flange = model.getFrameId("flange")
    for q_arm in random_arm_configs(model, spec["n_arm"], 50, seed=1):
        q = pin.neutral(model)
        q[: spec["n_arm"]] = q_arm
        pin.framesForwardKinematics(model, data, q)
        np.testing.assert_allclose(data.oMf[flange].homogeneous, spec["dh"](q_arm), atol=1e-9)


@pytest.mark.parametrize("name", ROBOTS)
def test_limits_are_the_published_ones_and_gripper_present(workspace, name):
    spec = ROBOTS[name]
    _, model = load(workspace, name)
    n = spec["n_arm"]
    np.testing.assert_allclose(np.c_[model.lowerPositionLimit[:n], model.upperPositionLimit[:n]],
                               spec["limits"], atol=1e-4)
    np.testing.assert_allclose(model.velocityLimit[:n], spec["velocity"], atol=1e-3)
    assert [model.names[i] for i in range(n + 1, model.njoints)] == ["finger_joint1", "finger_joint2"]
    for frame in ("base_link", "flange", "ee"):
        assert model.existFrame(frame), f"{name}: frame {frame} missing"


@pytest.mark.parametrize("name", ROBOTS)
def test_mujoco_compiles_the_same_urdf_with_the_same_kinematics(workspace, name):
    spec = ROBOTS[name]
    path, model = load(workspace, name)
    data = model.createData()
    mj_model = mujoco.MjModel.from_xml_path(path)
    mj_data = mujoco.MjData(mj_model)
    n = spec["n_arm"]
    arm_joints = [model.names[i] for i in range(1, n + 1)]
    ranges = np.array([mj_model.joint(j).range for j in arm_joints])
    np.testing.assert_allclose(ranges, spec["limits"], atol=1e-4)
    for q_arm in random_arm_configs(model, n, 10, seed=2):
        q = pin.neutral(model)
        q[:n] = q_arm
        pin.framesForwardKinematics(model, data, q)
        for j, value in zip(arm_joints, q_arm, strict=True):
            mj_data.qpos[mj_model.joint(j).qposadr[0]] = value
        mujoco.mj_kinematics(mj_model, mj_data)
        for link_index in range(1, n + 1):
            link = f"link{link_index}"
            pose = data.oMf[model.getFrameId(link)]
            body = mj_data.body(link)
            np.testing.assert_allclose(body.xpos, pose.translation, atol=1e-9)
            np.testing.assert_allclose(body.xmat.reshape(3, 3), pose.rotation, atol=1e-9)
