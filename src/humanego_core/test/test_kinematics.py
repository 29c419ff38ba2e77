"""RobotKinematics against an independent reference: the URDF's joint chain composed with scipy rotations."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from humanego_core.kinematics import KinematicsError, RobotKinematics, robot_description


def urdf_chain_fk(path, q_by_name, frame):
    """T_root_frame by walking the URDF joints from the frame up to the root (no pinocchio)."""
    root = ET.parse(path).getroot()
    by_child = {j.find("child").get("link"): j for j in root.iter("joint")}
    T = np.eye(4)
    link = frame
    while link in by_child:
        joint = by_child[link]
        origin = joint.find("origin")
        xyz = np.array(origin.get("xyz", "0 0 0").split(), float)
        rpy = np.array(origin.get("rpy", "0 0 0").split(), float)
        placement = np.eye(4)
        placement[:3, :3] = Rotation.from_euler("xyz", rpy).as_matrix()
        placement[:3, 3] = xyz
        motion = np.eye(4)
        kind = joint.get("type")
        if kind in ("revolute", "prismatic"):
            axis = np.array(joint.find("axis").get("xyz").split(), float)
            value = q_by_name[joint.get("name")]
            if kind == "revolute":
                motion[:3, :3] = Rotation.from_rotvec(axis * value).as_matrix()
            else:
                motion[:3, 3] = axis * value
        T = placement @ motion @ T
        link = joint.find("parent").get("link")
    return T


@pytest.fixture(params=["panda", "ur5e"])
def kin(request):
    return RobotKinematics.load(request.param)


def test_joint_roles_and_limits_come_from_the_urdf():
    panda = RobotKinematics.load("panda")
    assert panda.arm_joint_names == [f"joint{i}" for i in range(1, 8)]
    assert panda.gripper_joint_name == "finger_joint1"
    assert panda.gripper_range == (0.0, 0.04)
    assert panda.base_frame == "base_link" and panda.ee_frame == "ee"
    np.testing.assert_allclose(panda.lower[[3, 5]], [-3.0718, -0.0175])
    np.testing.assert_allclose(panda.velocity_limit, [2.175] * 4 + [2.61] * 3)
    assert panda.chain_links() == ["base_link", *[f"link{i}" for i in range(8)], "flange", "hand", "ee"]
    ur5e = RobotKinematics.load("ur5e")
    assert ur5e.arm_joint_names[0] == "shoulder_pan_joint" and ur5e.n == 6
    assert ur5e.chain_links() == ["base_link", *[f"link{i}" for i in range(1, 7)], "flange", "gripper", "ee"]
    assert ur5e.gripper_range == (0.0, 0.0425)


def test_fk_and_frames_match_the_urdf_chain(kin):
    rng = np.random.default_rng(0)
    path = robot_description(kin.urdf_path)
    for _ in range(20):
        q = rng.uniform(kin.lower, kin.upper)
        opening = rng.uniform(*kin.gripper_range)
        q_by_name = dict(zip(kin.arm_joint_names, q, strict=True))
        q_by_name |= {"finger_joint1": opening, "finger_joint2": opening}
        np.testing.assert_allclose(kin.fk(q), urdf_chain_fk(path, q_by_name, "ee"), atol=1e-12)
        np.testing.assert_allclose(kin.frame_transform(q, "rightfinger", opening),
                                   urdf_chain_fk(path, q_by_name, "rightfinger"), atol=1e-12)
        links = kin.link_transforms(q, opening)
        np.testing.assert_allclose(links["flange"], urdf_chain_fk(path, q_by_name, "flange"), atol=1e-12)


def test_jacobian_matches_finite_differences(kin):
    rng = np.random.default_rng(1)
    eps = 1e-6
    for _ in range(5):
        q = rng.uniform(kin.lower, kin.upper)
        T, J = kin.fk_and_jacobian(q)
        np.testing.assert_allclose(J, kin.jacobian(q))
        np.testing.assert_allclose(T, kin.fk(q))
        numeric = np.zeros_like(J)
        for i in range(kin.n):
            dq = np.zeros(kin.n)
            dq[i] = eps
            T2 = kin.fk(q + dq)
            numeric[:3, i] = (T2[:3, 3] - T[:3, 3]) / eps
            numeric[3:, i] = Rotation.from_matrix(T2[:3, :3] @ T[:3, :3].T).as_rotvec() / eps
        np.testing.assert_allclose(J, numeric, atol=1e-5)


def test_the_reach_sphere_holds_every_ee_position(kin):
    centre, radius = kin.reach_sphere()
    rng = np.random.default_rng(4)
    distances = [np.linalg.norm(kin.fk(q)[:3, 3] - centre) for q in rng.uniform(kin.lower, kin.upper, (500, kin.n))]
    assert max(distances) <= radius
    assert max(distances) > 0.8 * radius  # and is not loose


def test_joint_vector_from_names_and_bad_input(kin):
    q = (kin.lower + kin.upper) / 2
    names = ["finger_joint1", *reversed(kin.arm_joint_names)]
    np.testing.assert_array_equal(kin.arm_positions(names, [0.01, *q[::-1]]), q)
    with pytest.raises(KinematicsError, match=f"missing for {kin.arm_joint_names[0]}"):
        kin.arm_positions(kin.arm_joint_names[1:], q[1:])
    with pytest.raises(KinematicsError, match="NaN or inf"):
        kin.fk(np.full(kin.n, np.nan))
    with pytest.raises(KinematicsError, match=f"expected {kin.n} arm joint positions"):
        kin.fk(np.zeros(kin.n + 1))
    with pytest.raises(KinematicsError, match="frame 'tool0' is not in"):
        kin.frame_transform(q, "tool0")


def test_unknown_robot_and_missing_file(tmp_path):
    with pytest.raises(KinematicsError, match="expected one of panda, ur5e"):
        RobotKinematics.load("kuka")
    with pytest.raises(FileNotFoundError, match="nowhere.urdf"):
        RobotKinematics.load(tmp_path / "nowhere.urdf")
    no_gripper = tmp_path / "arm.urdf"
    no_gripper.write_text('<robot name="arm"><link name="base_link"/><link name="ee"/>'
                          '<joint name="j" type="revolute"><parent link="base_link"/><child link="ee"/>'
                          '<axis xyz="0 0 1"/><limit lower="-1" upper="1" velocity="1" effort="1"/></joint></robot>')
    with pytest.raises(KinematicsError, match="expected one gripper joint"):
        RobotKinematics.load(no_gripper)
