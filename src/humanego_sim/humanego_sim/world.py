"""The MuJoCo tabletop world: table, task objects, optionally a robot arm (from its URDF) and a human.

The robot's kinematics, geometry and limits come from ``urdf/<robot>.urdf`` unchanged; this module
only adds what a URDF cannot say: where the arm is mounted, position servos on the joints and the
gripper, the finger coupling (``<mimic>`` becomes an equality constraint), gravity compensation and
contact parameters. Objects are free bodies, so grasping works by contact and friction.

Frames: world z up, floor at z = 0, table top at ``table.height``; the robot base faces +x. Each
task object's body origin is the centre of its base (where it touches the table).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from humanego_core import geometry
from humanego_core.ament_index import resource_path
from humanego_core.config import load_config, option
from humanego_sim.tasks import ObjectSpec, Placement, SuccessCheck, Table, Task, check_success, sample_placements

# Contact groups: robot and human geoms never touch each other or themselves, both touch the scene.
SCENE_CONTYPE, SCENE_CONAFFINITY = 1, 3
ROBOT_CONTYPE, ROBOT_CONAFFINITY = 2, 1
NO_CONTACT = 0

# MuJoCo cameras look along -z with y up; optical frames (REP 103) look along +z with y down.
OPTICAL_FROM_MUJOCO_CAMERA = np.diag([1.0, -1.0, -1.0])


@dataclass
class RobotMount:
    position: list[float] = option(default_factory=lambda: [0.0, 0.0, 0.75], help="base_link position in world (m)")
    yaw: float = option(0.0, help="base_link rotation about world z (rad)")
    home: dict[str, list[float]] = option(default_factory=dict, help="home arm joint positions per robot (rad)")
    arm_kp: float = option(800.0, help="arm position servo stiffness (N m/rad)", minimum=1.0)
    arm_damping_ratio: float = option(1.0, help="arm servo damping ratio", minimum=0.0)
    gripper_kp: float = option(5000.0, help="gripper servo stiffness (N/m); stiff, so the force limit holds "
                               "until the fingers are within millimetres of their target", minimum=1.0)
    gripper_force: float = option(40.0, help="gripper force limit per finger (N)", minimum=1.0)
    gripper_speed: float = option(0.1, help="finger closing speed at full force (m/s): sets the finger damping",
                                  minimum=0.01, maximum=1.0)


@dataclass
class EgoCamera:
    position: list[float] = option(default_factory=lambda: [-0.12, 0.42, 1.55],
                                   help="camera position in world (m): a head-like viewpoint over the table")
    look_at: list[float] = option(default_factory=lambda: [0.50, -0.08, 0.74], help="point the camera looks at (m)")
    fovy_deg: float = option(55.0, help="vertical field of view (deg)", minimum=10.0, maximum=150.0)
    width: int = option(320, help="image width (px)", minimum=16, maximum=2048)
    height: int = option(240, help="image height (px)", minimum=16, maximum=2048)


@dataclass
class WorldConfig:
    table: Table = option(default_factory=Table, help="table geometry")
    robot: RobotMount = option(default_factory=RobotMount, help="robot mounting, home pose and servo gains")
    ego_camera: EgoCamera = option(default_factory=EgoCamera, help="the robot's fixed head-like camera")
    timestep: float = option(0.002, help="physics step (s)", minimum=1e-4, maximum=0.02)


def load_world_config(path: str | Path | None = None) -> WorldConfig:
    return load_config(path or resource_path("config", "sim", "world.yaml"), WorldConfig)


def look_at_rotation(position, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Rotation of an optical frame (z forward, x right, y down) at ``position`` looking at ``target``."""
    z = np.asarray(target, float) - np.asarray(position, float)
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to 'up'")
    x /= np.linalg.norm(x)
    return np.column_stack([x, np.cross(z, x), z])


def intrinsics(fovy_deg: float, width: int, height: int) -> np.ndarray:
    """Pinhole matrix of a MuJoCo camera (square pixels, centred principal point)."""
    f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1.0]])


@dataclass
class RobotInfo:
    """Names and model indices of the attached robot."""

    name: str
    arm_joints: list[str]
    finger_joints: list[str]
    finger_range: tuple[float, float]
    arm_limits: np.ndarray
    arm_qpos: np.ndarray
    arm_dof: np.ndarray
    finger_qpos: np.ndarray
    arm_actuators: np.ndarray
    gripper_actuator: int
    link_bodies: list[str] = field(default_factory=list)


def has_ancestor(model: mujoco.MjModel, body: int, ancestor: int) -> bool:
    """Whether ``ancestor`` is ``body`` or on its chain of parents."""
    while body > 0:
        if body == ancestor:
            return True
        body = model.body_parentid[body]
    return False


def robot_urdf(name: str) -> Path:
    return resource_path("urdf", f"{name}.urdf")


def _add_object(parent: mujoco.MjsBody, name: str, spec: ObjectSpec) -> mujoco.MjsBody:
    body = parent.add_body(name=name)
    if spec.movable:
        body.add_freejoint(name=f"{name}_free")
    common = dict(rgba=spec.rgba, friction=[spec.friction, 0.01, 0.001], contype=SCENE_CONTYPE,
                  conaffinity=SCENE_CONAFFINITY, condim=4)
    if spec.shape == "box":
        sx, sy, sz = spec.size
        body.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_BOX, size=[sx / 2, sy / 2, sz / 2],
                      pos=[0, 0, sz / 2], mass=spec.mass, **common)
    elif spec.shape == "cylinder":
        radius, height = spec.size
        body.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[radius, height / 2, 0],
                      pos=[0, 0, height / 2], mass=spec.mass, **common)
    elif spec.shape == "bowl":
        radius, height, wall = spec.size
        segments = 16
        body.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[radius, wall / 2, 0],
                      pos=[0, 0, wall / 2], mass=spec.mass / 2, **common)
        half_chord = radius * math.tan(math.pi / segments) + wall / 2
        for i in range(segments):
            a = 2 * math.pi * i / segments
            body.add_geom(name=f"{name}_wall{i}", type=mujoco.mjtGeom.mjGEOM_BOX,
                          size=[wall / 2, half_chord, height / 2],
                          pos=[(radius - wall / 2) * math.cos(a), (radius - wall / 2) * math.sin(a), height / 2],
                          quat=Rotation.from_euler("z", a).as_quat(scalar_first=True),
                          mass=spec.mass / (2 * segments), **common)
    elif spec.shape == "marker":
        body.add_geom(name=name, type=mujoco.mjtGeom.mjGEOM_CYLINDER, size=[spec.size[0], 0.0005, 0],
                      pos=[0, 0, 0.0005], rgba=spec.rgba, contype=NO_CONTACT, conaffinity=NO_CONTACT, mass=0.001)
    return body


def _robot_spec(name: str, mount: RobotMount, timestep: float) -> mujoco.MjSpec:
    """The URDF as the scene's base spec (keeps its names), mounted, with servos and the finger coupling."""
    spec = mujoco.MjSpec.from_file(str(robot_urdf(name)))
    spec.compiler.fusestatic = False  # keep flange/hand/ee frames as bodies for TF and grasp checks
    # The URDF importer discards contact-free geoms and unused textures by default, and the scene added to this
    # spec has both (table legs, the push target's marker, the floor's checker): the robot's camera has to
    # see the same scene as the human recordings' camera.
    spec.compiler.discardvisual = False
    base = spec.body("base_link")
    base.pos = mount.position
    base.quat = Rotation.from_euler("z", mount.yaw).as_quat(scalar_first=True)
    joints = [j for j in spec.joints if j.type in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)]
    arm = [j for j in joints if j.type == mujoco.mjtJoint.mjJNT_HINGE]
    fingers = [j for j in joints if j.type == mujoco.mjtJoint.mjJNT_SLIDE]
    for joint in arm:
        joint.armature = 0.1
        joint.damping = [1.0, 0.0, 0.0]
        act = spec.add_actuator(name=f"{joint.name}_servo", target=joint.name,
                                trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=mount.arm_kp, dampratio=mount.arm_damping_ratio, inheritrange=True)
    for joint in fingers:
        joint.armature = 0.01
        joint.damping = [5.0, 0.0, 0.0]
    # The driven finger carries the drive's damping: real grippers close at a few cm/s, and a finger that
    # snapped shut would hit an object fast enough to tunnel into it.
    fingers[0].damping = [mount.gripper_force / mount.gripper_speed, 0.0, 0.0]
    # MuJoCo turns the URDF's <mimic> into a joint equality coupling the fingers; make it stiff (2 physics
    # steps), as rigid as the rack of a real gripper.
    (coupling,) = [e for e in spec.equalities if e.type == mujoco.mjtEq.mjEQ_JOINT
                   and {e.name1, e.name2} == {fingers[0].name, fingers[1].name}]
    coupling.solref = [2 * timestep, 1.0]
    grip = spec.add_actuator(name="gripper_servo", target=fingers[0].name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
    grip.set_to_position(kp=mount.gripper_kp, dampratio=1.0, inheritrange=True)
    grip.forcelimited = True
    grip.forcerange = [-mount.gripper_force, mount.gripper_force]
    for body in spec.bodies:
        if body.name and body.name != "world":
            body.gravcomp = 1.0  # the arm's controller compensates gravity, like a real one
    for geom in spec.geoms:
        geom.contype, geom.conaffinity = ROBOT_CONTYPE, ROBOT_CONAFFINITY
        geom.condim = 4
        geom.friction = [1.5, 0.01, 0.001]
    return spec


def build_spec(task: Task, config: WorldConfig, robot: str | None = None, human=None) -> mujoco.MjSpec:
    """The scene as an MjSpec: robot (if any) first, then table, objects, cameras and the human (if any)."""
    spec = _robot_spec(robot, config.robot, config.timestep) if robot else mujoco.MjSpec()
    spec.modelname = f"{task.name}_{robot or 'human'}"
    spec.option.timestep = config.timestep
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.noslip_iterations = 3
    spec.visual.global_.offwidth = 2048
    spec.visual.global_.offheight = 2048
    spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
    spec.visual.headlight.diffuse = [0.45, 0.45, 0.45]
    world = spec.worldbody
    table = config.table
    floor_tex = spec.add_texture(name="floor_tex", type=mujoco.mjtTexture.mjTEXTURE_2D,
                                 builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER, width=256, height=256,
                                 rgb1=[0.35, 0.37, 0.40], rgb2=[0.30, 0.32, 0.35])
    floor_mat = spec.add_material(name="floor_mat", texrepeat=[8, 8])
    floor_mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = floor_tex.name
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[4, 4, 0.1], material="floor_mat",
                   contype=SCENE_CONTYPE, conaffinity=SCENE_CONAFFINITY)
    # MuJoCo uses the larger of two geoms' friction coefficients: a slippery table top lets each object's
    # own friction (task YAML) govern how it slides on the table.
    world.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX,
                   size=[table.size[0] / 2, table.size[1] / 2, 0.02],
                   pos=[table.centre[0], table.centre[1], table.height - 0.02],
                   rgba=[0.55, 0.42, 0.30, 1.0], friction=[0.3, 0.01, 0.001],
                   contype=SCENE_CONTYPE, conaffinity=SCENE_CONAFFINITY, condim=4)
    for sx in (-1, 1):
        for sy in (-1, 1):
            world.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.025, 0.025, (table.height - 0.04) / 2],
                           pos=[table.centre[0] + sx * (table.size[0] / 2 - 0.05),
                                table.centre[1] + sy * (table.size[1] / 2 - 0.05), (table.height - 0.04) / 2],
                           rgba=[0.40, 0.30, 0.22, 1.0], contype=NO_CONTACT, conaffinity=NO_CONTACT)
    world.add_light(name="ceiling", pos=[0.4, 0.0, 2.6], dir=[0, 0, -1], diffuse=[0.55, 0.55, 0.55],
                    castshadow=False)
    world.add_light(name="side", pos=[1.6, 1.2, 2.0], dir=[-0.6, -0.5, -0.6], diffuse=[0.25, 0.25, 0.25],
                    castshadow=False)
    for name, obj in task.objects.items():
        _add_object(world, name, obj)
    cam = config.ego_camera
    R = look_at_rotation(cam.position, cam.look_at) @ OPTICAL_FROM_MUJOCO_CAMERA
    world.add_camera(name="ego_camera", pos=cam.position, quat=Rotation.from_matrix(R).as_quat(scalar_first=True),
                     fovy=cam.fovy_deg)
    if human is not None:
        human.add_to_spec(spec)
    return spec


class World:
    """A compiled scene with the accessors the demo generator, the oracle and the sim node share."""

    def __init__(self, task: Task, config: WorldConfig | None = None, robot: str | None = None, human=None):
        self.task = task
        self.config = config or load_world_config()
        self.spec = build_spec(task, self.config, robot, human)
        self.model = self.spec.compile()
        self.data = mujoco.MjData(self.model)
        self.robot = self._robot_info(robot) if robot else None
        self.placements: dict[str, Placement] = {}
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._object_body = {name: self.model.body(name).id for name in task.objects}
        self._geom_label = self._geom_labels()

    # ----- robot -----
    def _robot_info(self, name: str) -> RobotInfo:
        m = self.model
        arm = [m.joint(i).name for i in range(m.njnt) if m.jnt_type[i] == mujoco.mjtJoint.mjJNT_HINGE]
        fingers = [m.joint(i).name for i in range(m.njnt) if m.jnt_type[i] == mujoco.mjtJoint.mjJNT_SLIDE]
        home = self.config.robot.home.get(name)
        if home is not None and len(home) != len(arm):
            raise ValueError(f"world config robot.home.{name}: {len(home)} values for {len(arm)} arm joints")
        f0 = m.joint(fingers[0])
        base = m.body("base_link").id
        robot_bodies = [m.body(i).name for i in range(1, m.nbody) if has_ancestor(m, i, base)]
        return RobotInfo(
            name=name, arm_joints=arm, finger_joints=fingers,
            finger_range=(float(f0.range[0]), float(f0.range[1])),
            arm_limits=np.array([m.joint(j).range for j in arm]),
            arm_qpos=np.array([m.joint(j).qposadr[0] for j in arm]),
            arm_dof=np.array([m.joint(j).dofadr[0] for j in arm]),
            finger_qpos=np.array([m.joint(j).qposadr[0] for j in fingers]),
            arm_actuators=np.array([m.actuator(f"{j}_servo").id for j in arm]),
            gripper_actuator=m.actuator("gripper_servo").id,
            link_bodies=robot_bodies)

    def home_configuration(self) -> np.ndarray:
        r = self._require_robot()
        home = self.config.robot.home.get(r.name)
        return np.array(home, float) if home is not None else np.clip(0.0, r.arm_limits[:, 0], r.arm_limits[:, 1])

    def _require_robot(self) -> RobotInfo:
        if self.robot is None:
            raise RuntimeError("this world has no robot")
        return self.robot

    def arm_positions(self) -> np.ndarray:
        return self.data.qpos[self._require_robot().arm_qpos].copy()

    def arm_velocities(self) -> np.ndarray:
        return self.data.qvel[self._require_robot().arm_dof].copy()

    def gripper_opening(self) -> float:
        """Finger travel of one finger (m), 0 = closed."""
        return float(self.data.qpos[self._require_robot().finger_qpos[0]])

    def set_arm_targets(self, q: np.ndarray) -> None:
        r = self._require_robot()
        self.data.ctrl[r.arm_actuators] = np.clip(q, r.arm_limits[:, 0], r.arm_limits[:, 1])

    def set_gripper_target(self, opening: float) -> None:
        """Target finger travel (m per finger), clipped to the gripper's range."""
        r = self._require_robot()
        self.data.ctrl[r.gripper_actuator] = float(np.clip(opening, *r.finger_range))

    def body_pose(self, name: str) -> np.ndarray:
        body = self.data.body(name)
        return geometry.make_transform(body.xmat.reshape(3, 3), body.xpos)

    # ----- scene -----
    def reset(self, seed: int | None = None, placements: dict[str, Placement] | None = None) -> dict[str, Placement]:
        """Put the robot at home and the objects at sampled (or given) placements, at rest."""
        mujoco.mj_resetData(self.model, self.data)
        if placements is None:
            placements = sample_placements(self.task, np.random.default_rng(seed))
        self.placements = placements
        height = self.config.table.height
        for name, p in placements.items():
            R = Rotation.from_euler("z", p.yaw).as_matrix()
            self.set_object_pose(name, geometry.make_transform(R, [p.x, p.y, height]))
        if self.robot is not None:
            q = self.home_configuration()
            self.data.qpos[self.robot.arm_qpos] = q
            self.set_arm_targets(q)
            self.data.qpos[self.robot.finger_qpos] = self.robot.finger_range[1]
            self.set_gripper_target(self.robot.finger_range[1])
        mujoco.mj_forward(self.model, self.data)
        return placements

    def set_object_pose(self, name: str, T_world_object: np.ndarray) -> None:
        """Place an object's base centre; movable objects through their free joint, fixed ones in the model."""
        T = geometry.check_transform(T_world_object)
        quat = Rotation.from_matrix(T[:3, :3]).as_quat(scalar_first=True)
        if self.task.objects[name].movable:
            joint = self.model.joint(f"{name}_free")
            self.data.qpos[joint.qposadr[0]:joint.qposadr[0] + 7] = np.r_[T[:3, 3], quat]
            self.data.qvel[joint.dofadr[0]:joint.dofadr[0] + 6] = 0.0
        else:
            body = self._object_body[name]
            self.model.body_pos[body] = T[:3, 3]
            self.model.body_quat[body] = quat

    def object_pose(self, name: str) -> np.ndarray:
        return self.body_pose(name)

    def object_speed(self, name: str) -> float:
        if not self.task.objects[name].movable:
            return 0.0
        joint = self.model.joint(f"{name}_free")
        return float(np.linalg.norm(self.data.qvel[joint.dofadr[0]:joint.dofadr[0] + 3]))

    def check_success(self) -> SuccessCheck:
        t = self.task
        return check_success(t, self.config.table.height, self.object_pose(t.manipulated)[:3, 3],
                             self.object_pose(t.goal)[:3, 3], self.object_speed(t.manipulated))

    def step(self, n: int = 1) -> None:
        mujoco.mj_step(self.model, self.data, nstep=n)

    def forward(self) -> None:
        mujoco.mj_forward(self.model, self.data)

    # ----- cameras -----
    def camera_pose(self, name: str) -> np.ndarray:
        """World pose of a camera's optical frame (z forward, x right, y down)."""
        cam = self.data.camera(name)
        return geometry.make_transform(cam.xmat.reshape(3, 3) @ OPTICAL_FROM_MUJOCO_CAMERA, cam.xpos)

    def camera_matrix(self, name: str, width: int, height: int) -> np.ndarray:
        return intrinsics(float(self.model.camera(name).fovy[0]), width, height)

    def renderer(self, width: int, height: int) -> mujoco.Renderer:
        key = (width, height)
        if key not in self._renderers:
            self._renderers[key] = mujoco.Renderer(self.model, height=height, width=width)
        return self._renderers[key]

    def render(self, camera: str, width: int, height: int, kind: str = "rgb") -> np.ndarray:
        """rgb (H,W,3) uint8, depth (H,W) float32 metres along the optical axis, or labels (H,W) int32."""
        r = self.renderer(width, height)
        r.update_scene(self.data, camera=camera)
        if kind == "rgb":
            return r.render()
        if kind == "depth":
            r.enable_depth_rendering()
            try:
                return r.render().astype(np.float32)
            finally:
                r.disable_depth_rendering()
        if kind == "labels":
            r.enable_segmentation_rendering()
            try:
                seg = r.render()
            finally:
                r.disable_segmentation_rendering()
            return self.labels_from_segmentation(seg)
        raise ValueError(f"render kind must be rgb, depth or labels, got {kind!r}")

    def label_names(self) -> dict[int, str]:
        """Label ids of :meth:`render` 'labels': 0 background, 1 robot, 2 human, 3.. task objects in order."""
        names = {0: "background", 1: "robot", 2: "human"}
        names.update({3 + i: name for i, name in enumerate(self.task.objects)})
        return names

    def _geom_labels(self) -> np.ndarray:
        m = self.model
        object_label = {name: 3 + i for i, name in enumerate(self.task.objects)}
        labels = np.zeros(m.ngeom + 1, np.int32)  # last entry: background (id -1)
        robot_bodies = set(self.robot.link_bodies) if self.robot else set()
        for g in range(m.ngeom):
            body = m.body(m.geom_bodyid[g]).name
            if body in object_label:
                labels[g] = object_label[body]
            elif body in robot_bodies:
                labels[g] = 1
            elif body.startswith("human/"):
                labels[g] = 2
        return labels

    def labels_from_segmentation(self, seg: np.ndarray) -> np.ndarray:
        geom_ids = np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1)
        return self._geom_label[geom_ids]

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()
