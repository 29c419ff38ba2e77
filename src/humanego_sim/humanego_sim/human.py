"""A kinematic human demonstrator: a right arm and hand that perform a task, seen from the head.

The hand is a 21-landmark skeleton in the MPS hand-tracking layout (fixed bone lengths, thumb and
index that pinch, the other fingers curling with the grip), carried by a two-link arm whose shoulder
leans forward for far reaches. Motions are scripted from the task but human-like: minimum-jerk
segments (reach, descend, grasp, lift, carry, place, release, retract) with per-demo speed
variation, random hesitations and approach offsets. The head looks ahead of the hand (at the object,
then at the goal) with smooth gaze shifts and slow drift, so the egocentric camera really moves.

Grasped objects follow the pinch rigidly; a pushed object follows the fingertips along the table.
This is a demonstrator, not physics: it produces demonstrations that succeed by construction, and the
ground truth of every pose it produced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from humanego_core import geometry
from humanego_core import hand as landmarks_ids
from humanego_core.config import option
from humanego_core.hand import pinch_frame
from humanego_core.profiles import min_jerk
from humanego_sim.tasks import Task, footprint_radius, object_height, support_height
from humanego_sim.world import OPTICAL_FROM_MUJOCO_CAMERA, look_at_rotation

SKIN_RGBA = [0.87, 0.67, 0.54, 1.0]
# Aria's RGB sensor is mounted sideways: on the real MPS sample + VRS calibration the camera's x axis
# points down in the world when the wearer looks ahead. Raw synthetic frames are sideways too, so they
# go through the same 90-degree rotation as real ones downstream.
SENSOR_FROM_UPRIGHT = Rotation.from_euler("z", 90, degrees=True).as_matrix()

# Anatomical hand coordinates (right hand): f along the fingers, n out of the palm, t towards the
# thumb; (f, n, t) is right-handed. The MPS wrist frame of a right hand is x = -f, y = -n, z = t
# (measured on the real MPS sample: fingers along -x, palm normal along -y, thumb at +z).
MPS_RIGHT_WRIST_FROM_ANATOMICAL = np.array([[-1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0]])

# Finger MCP joints (f, n, t) and phalanx lengths (proximal, intermediate, distal), adult hand.
_FINGERS = {
    "index": ((0.092, 0.005, 0.020), (0.039, 0.023, 0.021),
              (landmarks_ids.INDEX_PROXIMAL, landmarks_ids.INDEX_INTERMEDIATE, landmarks_ids.INDEX_DISTAL,
               landmarks_ids.INDEX_FINGERTIP)),
    "middle": ((0.096, 0.003, 0.002), (0.043, 0.027, 0.022),
               (landmarks_ids.MIDDLE_PROXIMAL, landmarks_ids.MIDDLE_INTERMEDIATE, landmarks_ids.MIDDLE_DISTAL,
                landmarks_ids.MIDDLE_FINGERTIP)),
    "ring": ((0.090, 0.008, -0.017), (0.040, 0.026, 0.021),
             (landmarks_ids.RING_PROXIMAL, landmarks_ids.RING_INTERMEDIATE, landmarks_ids.RING_DISTAL,
              landmarks_ids.RING_FINGERTIP)),
    "pinky": ((0.078, 0.014, -0.035), (0.031, 0.019, 0.018),
              (landmarks_ids.PINKY_PROXIMAL, landmarks_ids.PINKY_INTERMEDIATE, landmarks_ids.PINKY_DISTAL,
               landmarks_ids.PINKY_FINGERTIP)),
}
_FLEX_PER_CURL = np.array([1.0, 1.2, 0.7])  # MCP, PIP, DIP flexion (rad) at curl 1
_THUMB_CMC = np.array([0.035, 0.020, 0.025])
_THUMB_METACARPAL, _THUMB_PROXIMAL, _THUMB_DISTAL = 0.045, 0.032, 0.027
_PALM_CENTER = np.array([0.082, 0.020, 0.004])
# Direction from the index tip to the thumb tip when the pinch opens (anatomical frame).
_PINCH_OPENING = np.array([-0.35, 0.10, 0.93]) / np.linalg.norm([-0.35, 0.10, 0.93])
FINGER_RADIUS = 0.0085  # the landmarks lie on the bones' centre line; the skin is this far out
REST_APERTURE = 0.03  # thumb-index tip distance of the hand at rest (m)


@dataclass
class HumanConfig:
    shoulder: list[float] = option(default_factory=lambda: [-0.16, -0.19, 1.11],
                                   help="right shoulder at rest, world (m)")
    head: list[float] = option(default_factory=lambda: [-0.10, 0.03, 1.36],
                               help="RGB camera (eye) position at rest, world (m)")
    rest_hand: list[float] = option(default_factory=lambda: [0.12, -0.22, 0.86],
                                    help="pinch point of the hand at start and end, world (m)")
    rest_across: list[float] = option(default_factory=lambda: [0.3, -1.0],
                                      help="horizontal direction (x, y) across the pinch at start and end, world")
    rest_pitch: float = option(0.5, help="how far the pinch points down from horizontal at start and end (rad)",
                               minimum=0.0, maximum=math.pi / 2)
    upper_arm: float = option(0.30, help="shoulder to elbow (m)", minimum=0.1, maximum=0.5)
    forearm: float = option(0.26, help="elbow to wrist (m)", minimum=0.1, maximum=0.5)
    max_lean: float = option(0.25, help="how far the shoulders may lean towards a far target (m)", minimum=0.0)
    fps: float = option(30.0, help="frame rate of the recording (Hz)", minimum=1.0, maximum=120.0)
    speed_range: list[float] = option(default_factory=lambda: [0.8, 1.25],
                                      help="per-demo speed factor range (1 = nominal durations)")
    hesitation_probability: float = option(0.35, help="chance of a short pause before grasping or placing",
                                           minimum=0.0, maximum=1.0)
    head_drift: float = option(0.012, help="amplitude of slow head position drift (m)", minimum=0.0)
    gaze_drift: float = option(0.03, help="amplitude of slow gaze point drift (m)", minimum=0.0)
    head_roll_deg: float = option(3.0, help="amplitude of slow head roll (deg)", minimum=0.0)

    def __post_init__(self):
        for name, size in (("shoulder", 3), ("head", 3), ("rest_hand", 3), ("rest_across", 2)):
            value = np.asarray(getattr(self, name), float)
            if value.shape != (size,) or not np.all(np.isfinite(value)):
                raise ValueError(f"human config: {name} must be {size} finite numbers, got {getattr(self, name)}")
        if np.linalg.norm(self.rest_across) < 1e-6:
            raise ValueError("human config: rest_across must be a direction, not [0, 0]")


def pinch_rotation(across, reach_from, towards, pitch: float) -> np.ndarray:
    """Pinch frame rotation: x across the pinch (horizontal), y forward (from ``reach_from`` towards ``towards``)
    and down by ``pitch``."""
    x = np.array([across[0], across[1], 0.0], float)
    x /= np.linalg.norm(x)
    h = np.cross(np.array([0, 0, 1.0]), x)  # horizontal, perpendicular to x
    if np.dot(h, np.asarray(towards, float) - np.asarray(reach_from, float)) < 0:
        x, h = -x, -h
    y = math.cos(pitch) * h - math.sin(pitch) * np.array([0, 0, 1.0])
    return np.column_stack([x, y, np.cross(x, y)])


def rest_pose(config: HumanConfig) -> np.ndarray:
    """T_world_pinch each demo starts and ends near (the demos add a little noise to its position)."""
    rest = np.asarray(config.rest_hand, float)
    return geometry.make_transform(pinch_rotation(config.rest_across, config.shoulder, rest + [1, 0, 0],
                                                  config.rest_pitch), rest)


# ----------------------------------------------------------------------------------------------
# Hand skeleton
# ----------------------------------------------------------------------------------------------
def _finger_chain(mcp: np.ndarray, lengths, curl: float) -> list[np.ndarray]:
    angles = np.cumsum(curl * _FLEX_PER_CURL)
    points, p = [], np.asarray(mcp, float)
    for length, a in zip(lengths, angles, strict=True):
        p = p + length * np.array([math.cos(a), math.sin(a)])
        points.append(p)
    return points


def _two_link(base: np.ndarray, target: np.ndarray, l1: float, l2: float, pole: np.ndarray) -> np.ndarray:
    """Middle joint of a two-link chain reaching ``target`` from ``base``, bending towards ``pole``."""
    d_vec = target - base
    d = float(np.linalg.norm(d_vec))
    d = min(max(d, abs(l1 - l2) + 1e-6), l1 + l2 - 1e-6)
    u = d_vec / max(np.linalg.norm(d_vec), 1e-9)
    a = (l1 * l1 - l2 * l2 + d * d) / (2 * d)
    h = math.sqrt(max(l1 * l1 - a * a, 0.0))
    p = pole - np.dot(pole, u) * u
    p /= max(np.linalg.norm(p), 1e-9)
    return base + a * u + h * p


def hand_landmarks(aperture: float) -> np.ndarray:
    """(21, 3) landmarks of the right hand in the MPS wrist frame for a thumb-index tip distance.

    The index curls less as the pinch opens; the thumb reaches for a point ``aperture`` from the index
    tip (clamped to what the thumb can reach, so the returned tips are the truth, not the request).
    """
    opening = float(np.clip(aperture / 0.10, 0.0, 1.0))
    L = np.zeros((21, 3))
    L[landmarks_ids.WRIST] = 0.0
    L[landmarks_ids.PALM_CENTER] = _PALM_CENTER
    curls = {"index": 0.72 - 0.22 * opening, "middle": 0.85 - 0.25 * opening,
             "ring": 0.95 - 0.25 * opening, "pinky": 1.0 - 0.25 * opening}
    for name, (mcp, lengths, ids) in _FINGERS.items():
        mcp = np.asarray(mcp, float)
        # Each finger bends in its own (f, n) plane at its t offset.
        chain = _finger_chain(mcp[:2], lengths, curls[name])
        L[ids[0]] = mcp
        for idx, p in zip(ids[1:], chain, strict=True):
            L[idx] = [p[0], p[1], mcp[2]]
    index_tip = L[landmarks_ids.INDEX_FINGERTIP]
    tip = index_tip + aperture * _PINCH_OPENING
    # The thumb pad faces the index: its distal phalanx is perpendicular to the squeeze axis, leaning
    # back towards the hand, so a pinched object is touched by the pads and not cut by the thumb.
    squeeze = (index_tip - tip) / max(np.linalg.norm(index_tip - tip), 1e-9) if aperture > 1e-4 else _PINCH_OPENING
    back = _THUMB_CMC - tip
    back = back - np.dot(back, squeeze) * squeeze
    distal = tip + _THUMB_DISTAL * back / np.linalg.norm(back)
    mcp = _two_link(_THUMB_CMC, distal, _THUMB_METACARPAL, _THUMB_PROXIMAL, pole=np.array([0.3, -1.0, 0.6]))
    # Where the thumb cannot reach that far, its chain ends short of the requested tip.
    distal = mcp + _THUMB_PROXIMAL * (distal - mcp) / np.linalg.norm(distal - mcp)
    tip = distal + _THUMB_DISTAL * (tip - distal) / np.linalg.norm(tip - distal)
    L[landmarks_ids.THUMB_INTERMEDIATE] = mcp
    L[landmarks_ids.THUMB_DISTAL] = distal
    L[landmarks_ids.THUMB_FINGERTIP] = tip
    return L @ MPS_RIGHT_WRIST_FROM_ANATOMICAL.T


def hand_normals() -> tuple[np.ndarray, np.ndarray]:
    """Palm and wrist normals of the skeleton in the MPS wrist frame (the palm faces -y there)."""
    palm = np.array([0.08, -1.0, -0.05])
    return palm / np.linalg.norm(palm), np.array([0.0, -1.0, 0.0])


# Bones drawn as capsules: (name, landmark a, landmark b, radius); fingers in MPS layout.
_BONES = [("thumb1", None, landmarks_ids.THUMB_INTERMEDIATE, 0.011),
          ("thumb2", landmarks_ids.THUMB_INTERMEDIATE, landmarks_ids.THUMB_DISTAL, 0.0095),
          ("thumb3", landmarks_ids.THUMB_DISTAL, landmarks_ids.THUMB_FINGERTIP, FINGER_RADIUS)]
for _name, (_, _, _ids) in _FINGERS.items():
    _BONES += [(f"{_name}1", _ids[0], _ids[1], 0.0095), (f"{_name}2", _ids[1], _ids[2], 0.009),
               (f"{_name}3", _ids[2], _ids[3], FINGER_RADIUS)]


# ----------------------------------------------------------------------------------------------
# The body in the MuJoCo scene
# ----------------------------------------------------------------------------------------------
class HumanBody:
    """Mocap bodies (no collisions) for the arm and hand, plus the head with the ``aria_rgb`` camera."""

    CAMERA = "aria_rgb"

    def __init__(self, config: HumanConfig):
        self.config = config
        self._segments = [("upper_arm", 0.045), ("forearm", 0.036)] + [(n, r) for n, _, _, r in _BONES]
        self._lengths: dict[str, float] = {}
        L = hand_landmarks(0.05)
        cmc = _THUMB_CMC @ MPS_RIGHT_WRIST_FROM_ANATOMICAL.T
        for name, a, b, _ in _BONES:
            pa = cmc if a is None else L[a]
            self._lengths[name] = float(np.linalg.norm(L[b] - pa))
        self._lengths["upper_arm"] = config.upper_arm
        self._lengths["forearm"] = config.forearm

    def add_to_spec(self, spec: mujoco.MjSpec) -> None:
        world = spec.worldbody
        for name, radius in self._segments:
            body = world.add_body(name=f"human/{name}", mocap=True)
            body.add_geom(type=mujoco.mjtGeom.mjGEOM_CAPSULE, size=[radius, self._lengths[name] / 2, 0],
                          rgba=SKIN_RGBA, contype=0, conaffinity=0)
        palm = world.add_body(name="human/palm", mocap=True)
        # Palm between the wrist and the knuckles, in the MPS wrist frame (fingers along -x).
        palm.add_geom(type=mujoco.mjtGeom.mjGEOM_ELLIPSOID, size=[0.052, 0.017, 0.034], pos=[-0.050, -0.004, -0.007],
                      rgba=SKIN_RGBA, contype=0, conaffinity=0)
        head = world.add_body(name="human/head", mocap=True)
        head.add_camera(name=self.CAMERA, fovy=90.0)

    def apply(self, model: mujoco.MjModel, data: mujoco.MjData, frame: HumanFrame) -> None:
        """Move the mocap bodies to a frame of the demonstration."""
        def put(name: str, pos, R):
            mocap = model.body(f"human/{name}").mocapid[0]
            data.mocap_pos[mocap] = pos
            data.mocap_quat[mocap] = Rotation.from_matrix(R).as_quat(scalar_first=True)

        def capsule(name: str, a, b):
            put(name, 0.5 * (a + b), _z_along(b - a))

        capsule("upper_arm", frame.shoulder, frame.elbow)
        capsule("forearm", frame.elbow, frame.landmarks[landmarks_ids.WRIST])
        T = frame.T_world_wrist
        cmc = T[:3, :3] @ (_THUMB_CMC @ MPS_RIGHT_WRIST_FROM_ANATOMICAL.T) + T[:3, 3]
        for name, a, b, _ in _BONES:
            capsule(name, cmc if a is None else frame.landmarks[a], frame.landmarks[b])
        put("palm", T[:3, 3], T[:3, :3])
        put("head", frame.T_world_rgb[:3, 3], frame.T_world_rgb[:3, :3] @ OPTICAL_FROM_MUJOCO_CAMERA)


def _z_along(v: np.ndarray) -> np.ndarray:
    """A rotation whose z axis points along v."""
    z = v / np.linalg.norm(v)
    helper = np.array([1.0, 0, 0]) if abs(z[0]) < 0.9 else np.array([0, 1.0, 0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.column_stack([x, np.cross(z, x), z])


# ----------------------------------------------------------------------------------------------
# The scripted demonstration
# ----------------------------------------------------------------------------------------------
@dataclass
class HumanFrame:
    """Ground truth of one frame: everything the demonstrator decided, in the world frame."""

    t: float
    phase: str
    T_world_pinch: np.ndarray     # the planned pinch frame (see pinch_frame)
    T_world_hand: np.ndarray      # HumanEgo hand frame from the landmarks (DESIGN.md section 5)
    T_world_wrist: np.ndarray     # MPS wrist frame
    landmarks: np.ndarray         # (21, 3) world
    aperture: float               # thumb-index tip distance (m)
    grasped: bool
    shoulder: np.ndarray
    elbow: np.ndarray
    T_world_rgb: np.ndarray       # RGB camera optical frame
    objects: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class _Segment:
    phase: str
    duration: float
    pose_end: np.ndarray          # grasp frame at the end
    aperture_end: float
    carrying: bool = False        # object rigidly follows the pinch
    pushing: bool = False         # object slides with the fingertips


@dataclass
class _Gaze:
    t: float
    target: np.ndarray


class Demonstration:
    """A complete scripted demonstration of a task for one scene, sampled at any time."""

    def __init__(self, task: Task, config: HumanConfig, table_height: float, object_poses: dict[str, np.ndarray],
                 rng: np.random.Generator):
        self.task, self.config, self.table_height = task, config, table_height
        self.initial_objects = {k: v.copy() for k, v in object_poses.items()}
        self.rng = rng
        self.speed = float(rng.uniform(*config.speed_range))
        self._drift = rng.uniform(0, 2 * math.pi, size=(3, 4)), rng.uniform(0.12, 0.45, size=(3, 4))
        self._segments, self.start_pose, self.start_aperture, self._gaze = self._plan()
        self._times = np.cumsum([0.0] + [s.duration for s in self._segments])
        self.duration = float(self._times[-1])
        self._attach: dict[int, np.ndarray] = {}
        self._resolve_object_motion()

    @property
    def segments(self) -> list[_Segment]:
        return list(self._segments)

    # ----- planning -----
    def _t(self, nominal: float) -> float:
        return nominal / self.speed * float(self.rng.uniform(0.9, 1.1))

    def _plan(self):
        task, cfg, rng = self.task, self.config, self.rng
        obj_name, goal_name = task.manipulated, task.goal
        T_obj = self.initial_objects[obj_name]
        T_goal = self.initial_objects[goal_name]
        spec = task.objects[obj_name]
        shoulder = np.array(cfg.shoulder)
        start = rest_pose(cfg)
        start[:3, 3] += rng.normal(0, 0.015, 3)
        segments: list[_Segment] = []
        gaze: list[_Gaze] = []
        t_first_idle = self._t(float(rng.uniform(0.4, 0.9)))
        segments.append(_Segment("idle", t_first_idle, start, REST_APERTURE))
        obj_pos = T_obj[:3, 3]
        goal_pos = T_goal[:3, 3]
        gaze.append(_Gaze(0.0, obj_pos + [0, 0, 0.02]))
        if task.kind == "pick_place":
            short_axis = T_obj[:3, 1] if spec.shape == "box" and spec.size[1] <= spec.size[0] else T_obj[:3, 0]
            width = spec.size[1] if spec.shape == "box" and spec.size[1] <= spec.size[0] else spec.size[0]
            closed = width + 2 * FINGER_RADIUS - 0.002  # a slight squeeze
            opened = min(closed + float(rng.uniform(0.03, 0.05)), 0.11)
            pitch = float(rng.uniform(0.8, 1.0))
            grasp_height = min(0.6 * object_height(spec), object_height(spec) - 0.012)
            R = pinch_rotation(short_axis, shoulder, obj_pos, pitch)
            # People pinch off-centre along the object, never into it across the squeeze axis.
            along = float(rng.normal(0, 0.006)) * np.cross([0, 0, 1.0], R[:, 0])
            grasp = geometry.make_transform(R, obj_pos + [0, 0, grasp_height] + along)
            pre = grasp.copy()
            pre[:3, 3] += [0, 0, float(rng.uniform(0.08, 0.12))] - 0.04 * R[:3, 1] * [1, 1, 0]
            lift = grasp.copy()
            lift[:3, 3] += [0, 0, float(rng.uniform(0.10, 0.15))]
            # Where the object will rest: on/in the goal, near its centre, possibly turned a little.
            place_obj = T_obj.copy()
            yaw = float(rng.uniform(-0.35, 0.35))
            place_obj[:3, :3] = Rotation.from_euler("z", yaw).as_matrix() @ T_obj[:3, :3]
            offset = rng.normal(0, 0.008, 2)
            place_obj[:3, 3] = [goal_pos[0] + offset[0], goal_pos[1] + offset[1],
                                goal_pos[2] + support_height(task.objects[goal_name])]
            T_grasp_obj = geometry.invert(grasp) @ T_obj
            place = place_obj @ geometry.invert(T_grasp_obj)
            above_place = place.copy()
            above_place[:3, 3] += [0, 0, float(rng.uniform(0.06, 0.10))]
            retreat = place.copy()
            retreat[:3, 3] += [0, 0, 0.10]
            segments += [
                _Segment("reach", self._t(1.1), pre, opened),
                _Segment("descend", self._t(0.6), grasp, opened),
            ]
            if rng.random() < cfg.hesitation_probability:
                segments.append(_Segment("hesitate", self._t(float(rng.uniform(0.15, 0.4))), grasp, opened))
            segments += [
                _Segment("grasp", self._t(0.35), grasp, closed),
                _Segment("lift", self._t(0.55), lift, closed, carrying=True),
                _Segment("carry", self._t(0.9), above_place, closed, carrying=True),
            ]
            if rng.random() < cfg.hesitation_probability:
                segments.append(_Segment("hesitate", self._t(float(rng.uniform(0.15, 0.4))), above_place, closed,
                                         carrying=True))
            segments += [
                _Segment("place", self._t(0.6), place, closed, carrying=True),
                _Segment("release", self._t(0.3), place, opened),
                _Segment("retract", self._t(0.35), retreat, opened),
            ]
            t_grasped = sum(s.duration for s in segments[:-5])
            gaze.append(_Gaze(t_grasped, goal_pos + [0, 0, 0.02]))
        else:
            direction = goal_pos[:2] - obj_pos[:2]
            distance = float(np.linalg.norm(direction))
            d = np.r_[direction / distance, 0.0]
            half = _support_distance(spec, T_obj, d)
            closed = 0.02
            pitch = float(rng.uniform(1.0, 1.15))
            R = pinch_rotation(np.cross([0, 0, 1.0], d), obj_pos - d, obj_pos, pitch)
            # Curled fingers lead with their middle phalanges: keep every bone behind the face and above
            # the table.
            bones = _bone_points(hand_landmarks(closed), R)
            ahead = float(np.max(bones @ d))
            contact_height = max(min(0.5 * object_height(spec), 0.035), 0.004 + FINGER_RADIUS - bones[:, 2].min())
            contact = obj_pos - (half + ahead + FINGER_RADIUS + 0.003) * d + [0, 0, contact_height]
            behind = geometry.make_transform(R, contact - 0.05 * d)
            above = behind.copy()
            above[:3, 3] += [0, 0, 0.10]
            at_box = geometry.make_transform(R, contact)
            overshoot = float(rng.uniform(-0.01, 0.01))
            pushed = geometry.make_transform(R, contact + (distance + overshoot) * d)
            retreat = pushed.copy()
            retreat[:3, 3] += -0.04 * d + [0, 0, 0.10]
            segments += [
                _Segment("reach", self._t(1.1), above, closed),
                _Segment("descend", self._t(0.6), behind, closed),
                _Segment("approach", self._t(0.45), at_box, closed),
            ]
            if rng.random() < cfg.hesitation_probability:
                segments.append(_Segment("hesitate", self._t(float(rng.uniform(0.15, 0.4))), at_box, closed))
            segments += [
                _Segment("push", self._t(0.6 + 3.0 * distance), pushed, closed, pushing=True),
                _Segment("retract", self._t(0.5), retreat, closed),
            ]
            t_push = sum(s.duration for s in segments[:-2])
            gaze.append(_Gaze(t_push - 0.2, goal_pos))
        end_rest = start.copy()
        end_rest[:3, 3] = np.array(cfg.rest_hand) + rng.normal(0, 0.015, 3)
        segments.append(_Segment("return", self._t(1.0), end_rest, REST_APERTURE))
        segments.append(_Segment("idle", self._t(float(rng.uniform(0.3, 0.6))), end_rest, REST_APERTURE))
        t_return = sum(s.duration for s in segments[:-2])
        gaze.append(_Gaze(t_return + 0.2, 0.5 * (obj_pos + goal_pos) + [0.05, 0, 0]))
        return segments, start, REST_APERTURE, gaze

    def _resolve_object_motion(self) -> None:
        """Fix the object's pose relative to the pinch at the start of each carry or push."""
        pose = self.initial_objects[self.task.manipulated].copy()
        for i, seg in enumerate(self._segments):
            T_start = self._segment_start_pose(i)
            if seg.carrying:
                if i - 1 not in self._attach or not self._segments[i - 1].carrying:
                    self._attach[i] = geometry.invert(T_start) @ pose
                else:
                    self._attach[i] = self._attach[i - 1]
                pose = seg.pose_end @ self._attach[i]
            elif seg.pushing:
                self._attach[i] = pose[:3, 3] - T_start[:3, 3]
                pose = pose.copy()
                pose[:3, 3] = seg.pose_end[:3, 3] + self._attach[i]
        self.final_object_pose = pose

    def _segment_start_pose(self, i: int) -> np.ndarray:
        return self.start_pose if i == 0 else self._segments[i - 1].pose_end

    def _segment_start_aperture(self, i: int) -> float:
        return self.start_aperture if i == 0 else self._segments[i - 1].aperture_end

    # ----- sampling -----
    def frame_times(self) -> np.ndarray:
        return np.arange(0.0, self.duration, 1.0 / self.config.fps)

    def grasp_pose(self, t: float) -> tuple[np.ndarray, float, int, float]:
        """Pinch frame, aperture, segment index and progress at time t."""
        i = int(np.clip(np.searchsorted(self._times, t, side="right") - 1, 0, len(self._segments) - 1))
        seg = self._segments[i]
        s = float(min_jerk((t - self._times[i]) / seg.duration))
        a, b = self._segment_start_pose(i), seg.pose_end
        rot = Slerp([0.0, 1.0], Rotation.from_matrix(np.stack([a[:3, :3], b[:3, :3]])))(s).as_matrix()
        T = geometry.make_transform(rot, (1 - s) * a[:3, 3] + s * b[:3, 3])
        # The fingers close (or open) a little faster than the arm moves.
        s_hand = float(min_jerk(min(1.0, 1.3 * (t - self._times[i]) / seg.duration)))
        aperture = (1 - s_hand) * self._segment_start_aperture(i) + s_hand * seg.aperture_end
        return T, aperture, i, s

    def _arm(self, wrist: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shoulder (leaning towards far targets), elbow, and the lean offset."""
        cfg = self.config
        rest = np.array(cfg.shoulder)
        reach = 0.96 * (cfg.upper_arm + cfg.forearm)
        horizontal = np.r_[wrist[:2] - rest[:2], 0.0]
        norm = np.linalg.norm(horizontal)
        lean = np.zeros(3)
        if norm > 1e-6 and np.linalg.norm(wrist - rest) > reach:
            u = horizontal / norm
            # Smallest forward lean putting the wrist within reach: |wrist - (rest + l u)| = reach.
            diff = wrist - rest
            b = np.dot(diff, u)
            c = np.dot(diff, diff) - reach * reach
            disc = max(b * b - c, 0.0)
            lean = min(b - math.sqrt(disc), cfg.max_lean) * u
            lean[2] = -0.35 * np.linalg.norm(lean)  # leaning forward also lowers the shoulders
        shoulder = rest + lean
        elbow = _two_link(shoulder, wrist, cfg.upper_arm, cfg.forearm, pole=np.array([0.0, -1.0, -0.5]))
        return shoulder, elbow, lean

    def _gaze_target(self, t: float) -> np.ndarray:
        target = self._gaze[0].target
        for prev, nxt in zip(self._gaze, self._gaze[1:], strict=False):
            if t >= nxt.t:
                target = nxt.target
                continue
            s = float(min_jerk((t - nxt.t + 0.45) / 0.45))  # a head turn of ~0.45 s ending at nxt.t
            target = (1 - s) * prev.target + s * nxt.target
            break
        return target + self.config.gaze_drift * self._noise(t, 0)

    def _noise(self, t: float, channel: int) -> np.ndarray:
        phase, freq = self._drift
        return np.array([np.mean(np.sin(2 * math.pi * freq[(channel + k) % 3] * t + phase[(channel + k) % 3]))
                         for k in range(3)])

    def frame(self, t: float) -> HumanFrame:
        T_grasp, aperture, i, s = self.grasp_pose(t)
        seg = self._segments[i]
        L_wrist = hand_landmarks(aperture)
        T_wrist = T_grasp @ geometry.invert(pinch_frame(L_wrist))
        landmarks = geometry.transform_points(T_wrist, L_wrist)
        shoulder, elbow, lean = self._arm(T_wrist[:3, 3], t)
        cfg = self.config
        eye = np.array(cfg.head) + 0.9 * lean + cfg.head_drift * self._noise(t, 1)
        R = look_at_rotation(eye, self._gaze_target(t))
        roll = math.radians(cfg.head_roll_deg) * float(self._noise(t, 2)[0])
        R = R @ Rotation.from_euler("z", roll).as_matrix() @ SENSOR_FROM_UPRIGHT
        objects = {k: v.copy() for k, v in self.initial_objects.items()}
        name = self.task.manipulated
        objects[name] = self._object_pose_at(i, T_grasp)
        return HumanFrame(t=t, phase=seg.phase, T_world_pinch=T_grasp, T_world_hand=landmarks_ids.hand_frame(landmarks),
                          T_world_wrist=T_wrist, landmarks=landmarks,
                          aperture=float(np.linalg.norm(landmarks[0] - landmarks[1])),
                          grasped=seg.carrying or (seg.phase in ("grasp",) and s > 0.5),
                          shoulder=shoulder, elbow=elbow, T_world_rgb=geometry.make_transform(R, eye),
                          objects=objects)

    def _object_pose_at(self, i: int, T_grasp: np.ndarray) -> np.ndarray:
        seg = self._segments[i]
        if seg.carrying:
            return T_grasp @ self._attach[i]
        if seg.pushing:
            pose = self._pose_before(i).copy()
            pose[:3, 3] = T_grasp[:3, 3] + self._attach[i]
            return pose
        return self._pose_before(i + 1)

    def _pose_before(self, i: int) -> np.ndarray:
        """The manipulated object's pose at the start of segment i (after all earlier motion)."""
        pose = self.initial_objects[self.task.manipulated]
        for j in range(i):
            seg = self._segments[j]
            if seg.carrying:
                pose = seg.pose_end @ self._attach[j]
            elif seg.pushing:
                pose = pose.copy()
                pose[:3, 3] = seg.pose_end[:3, 3] + self._attach[j]
        return pose


def _bone_points(landmarks_wrist: np.ndarray, R_world_pinch: np.ndarray) -> np.ndarray:
    """Points along every finger bone, relative to the pinch origin, rotated into the world."""
    T = geometry.invert(pinch_frame(landmarks_wrist))
    local = geometry.transform_points(T, landmarks_wrist)
    points = [np.linspace(local[a], local[b], 5) for _, a, b, _ in _BONES if a is not None]
    return np.concatenate(points) @ R_world_pinch.T


def _support_distance(spec, T_obj: np.ndarray, d: np.ndarray) -> float:
    """Distance from the object's centre to its side facing -d (pushing direction d)."""
    if spec.shape == "box":
        return 0.5 * (abs(np.dot(T_obj[:3, 0], d)) * spec.size[0] + abs(np.dot(T_obj[:3, 1], d)) * spec.size[1])
    return footprint_radius(spec)
