"""Object-state inputs from a synthetic recording, and errors of :class:`ObjectTrack` against its ground truth.

Used by ``benchmarks/object_state.py`` and the tests; never by preprocessing (it reads ``gt/``).

- :func:`recording_inputs`: what the preprocessing pipeline hands to :func:`estimate_object_states`, made the
  way it makes it from what a real recording has: rectified frames (:class:`Rectifier`, rotated upright),
  camera poses from the MPS trajectory, the right hand's pose from MPS hand tracking (HumanEgo's hand frame),
  and a grasp signal from the thumb-index distance (a stand-in for the pipeline's hand-state stage:
  ``pinch_distance < grasp_distance_m``). The simulator's object label masks, rectified the same way, come
  along for ablations and detector scoring.
- :func:`position_errors`: the estimated origin is the centroid of the keypoints on the object's visible
  surface, not the body's origin, so the truth is built from the same surface points: each keypoint's pixel
  at the first valid frame is ray-cast onto the ground-truth box/cylinder (sizes from the task config) in its
  true pose, which gives its point in the object's frame; the true origin at frame t is
  ``T_world_obj_gt(t) * centroid``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from humanego_core import geometry
from humanego_core.hand import hand_frame, pinch_distance
from humanego_core.image_warp import Rectifier
from humanego_perception.objects import ObjectTrack

# The simulator's grasp closes the thumb-index distance to ~0.065 m, open hands are at ~0.10 m.
DEFAULT_GRASP_DISTANCE_M = 0.08


@dataclass
class RecordingInputs:
    frames: list[np.ndarray]  # rectified RGB
    camera: object  # LINEAR CameraModel of the frames
    T_world_camera: np.ndarray  # (F, 4, 4) from the MPS trajectory
    T_world_hand: np.ndarray  # (F, 4, 4) right hand from MPS hand tracking (identity where not seen)
    hand_valid: np.ndarray  # (F,)
    grasp: np.ndarray  # (F,) 0/1
    label_masks: list[dict[str, np.ndarray]]  # simulator masks by object name, rectified
    gt: dict  # the recording's ground truth (without masks)
    task_objects: dict  # name -> {"shape", "size", ...} from metadata.json


def recording_inputs(recording, width: int, height: int, side: str = "right",
                     grasp_distance_m: float = DEFAULT_GRASP_DISTANCE_M) -> RecordingInputs:
    """Inputs of :func:`estimate_object_states` from a :class:`humanego_sim.aria_recording.Recording`."""
    rectifier = Rectifier(recording.camera_model(), width, height, rotate_cw90=True)
    frames = [rectifier(f) for f in recording.read_frames()]
    t = recording.frame_timestamps_ns
    T_world_device = recording.trajectory.at(t)
    hands = recording.hand_tracking
    seen = hands.seen(side)
    landmarks = geometry.transform_points(T_world_device, hands.landmarks[side])
    T_world_hand = geometry.identity((len(t),))
    T_world_hand[seen] = hand_frame(landmarks[seen])
    grasp = (seen & (pinch_distance(landmarks) < grasp_distance_m)).astype(np.float64)
    gt = recording.gt(masks=False)
    names = gt["episode"]["object_names"]
    label_masks = []
    for i in range(recording.num_frames):
        labels = rectifier(recording.gt_mask("object_labels", i), "nearest")
        label_masks.append({name: labels == k + 1 for k, name in enumerate(names)})
    return RecordingInputs(frames, rectifier.target, T_world_device @ rectifier.target.T_device_camera,
                           T_world_hand, seen, grasp, label_masks, gt, recording.metadata["task"]["objects"])


def raycast_object(origins: np.ndarray, directions: np.ndarray, shape: str, size) -> np.ndarray:
    """First hits (N, 3) of rays (object frame) on a box (full extents x y z, base at z = 0) or a cylinder
    (radius, height, base at z = 0); NaN rows for misses."""
    o, d = np.asarray(origins, float), np.asarray(directions, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        if shape == "box":
            lo = np.array([-size[0] / 2, -size[1] / 2, 0.0])
            hi = np.array([size[0] / 2, size[1] / 2, size[2]])
            t1, t2 = (lo - o) / d, (hi - o) / d
            near, far = np.nanmax(np.minimum(t1, t2), axis=-1), np.nanmin(np.maximum(t1, t2), axis=-1)
            t = np.where((near <= far) & (near > 0), near, np.nan)
        elif shape == "cylinder":
            r, h = size[0], size[1]
            a = d[:, 0] ** 2 + d[:, 1] ** 2
            b = 2 * (o[:, 0] * d[:, 0] + o[:, 1] * d[:, 1])
            c = o[:, 0] ** 2 + o[:, 1] ** 2 - r * r
            disc = b * b - 4 * a * c
            side = (-b - np.sqrt(np.where(disc >= 0, disc, np.nan))) / (2 * a)
            z = o[:, 2] + side * d[:, 2]
            side = np.where((z >= 0) & (z <= h) & (side > 0), side, np.nan)
            top = (h - o[:, 2]) / d[:, 2]
            p = o + top[:, None] * d
            top = np.where((p[:, 0] ** 2 + p[:, 1] ** 2 <= r * r) & (top > 0), top, np.nan)
            t = np.fmin(side, top)
        else:
            raise ValueError(f"no ground-truth geometry for shape {shape!r}")
    return o + t[:, None] * d


@dataclass
class TrackErrors:
    position_m: np.ndarray  # (V,) over the valid frames with truth
    yaw_deg: np.ndarray  # (V,) |yaw error| modulo 180 deg (the x axis is a line's direction)
    frames: np.ndarray  # (V,) frame indices
    surface_points: int  # keypoints whose ray hit the object


def position_errors(track: ObjectTrack, inputs: RecordingInputs) -> TrackErrors | None:
    """Errors of a track's origin (and yaw) against the truth of the same surface points; None if no frame is
    valid or no keypoint's ray hits the object."""
    valid = np.flatnonzero(track.valid)
    if len(valid) == 0 or len(track.keypoints_world) == 0:
        return None
    spec = inputs.task_objects[track.name]
    T_gt = inputs.gt[f"T_world_{track.name}"]
    first = valid[0]
    K = np.array([[inputs.camera.params[0], 0, inputs.camera.params[2]],
                  [0, inputs.camera.params[1], inputs.camera.params[3]], [0, 0, 1.0]])
    uv = track.keypoints_uv[first][track.keypoints_visible[first]]
    T_obj_cam = geometry.relative(T_gt[first], inputs.T_world_camera[first])
    rays = np.c_[uv, np.ones(len(uv))] @ np.linalg.inv(K).T @ T_obj_cam[:3, :3].T
    hits = raycast_object(np.broadcast_to(T_obj_cam[:3, 3], rays.shape), rays, spec["shape"], spec["size"])
    hits = hits[np.all(np.isfinite(hits), axis=1)]
    if len(hits) == 0:
        return None
    truth = geometry.transform_points(T_gt[valid], hits.mean(axis=0)[None])[:, 0]
    position = np.linalg.norm(track.T_world_obj[valid, :3, 3] - truth, axis=1)
    x_est, x_gt = track.T_world_obj[valid, :3, 0], T_gt[valid, :3, 0]
    yaw = np.degrees(np.arctan2(x_est[:, 1], x_est[:, 0]) - np.arctan2(x_gt[:, 1], x_gt[:, 0]))
    yaw = np.abs((yaw + 90.0) % 180.0 - 90.0)
    return TrackErrors(position, yaw, valid, len(hits))
