"""Object-state inputs from a synthetic recording, and errors of :class:`ObjectTrack` against its ground truth.

Used by ``benchmarks/object_state.py`` and the tests; never by preprocessing (it reads ``gt/``).

- :func:`recording_inputs`: what the preprocessing pipeline hands to :func:`estimate_object_states`, made the
  way it makes it from what a real recording has: rectified frames (:class:`Rectifier`, rotated upright),
  camera poses from the MPS trajectory, the hand's pose and grasp from the pipeline's hand-state stage
  (:func:`humanego_perception.hand_state.estimate_hand_states` on the MPS hand tracking). The simulator's
  object label masks, rectified the same way, come along for ablations and detector scoring.
- :func:`position_errors`: a track's origin, yaw and size against the simulator's body poses and the task
  config's sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from humanego_core.image_warp import Rectifier
from humanego_perception.hand_state import HandStateConfig, estimate_hand_states
from humanego_perception.objects import ObjectTrack


@dataclass
class RecordingInputs:
    frames: list[np.ndarray]  # rectified RGB
    camera: object  # LINEAR CameraModel of the frames
    T_world_camera: np.ndarray  # (F, 4, 4) from the MPS trajectory
    T_world_hand: np.ndarray  # (F, 4, 4) the hand from the hand-state stage (identity where not valid)
    hand_valid: np.ndarray  # (F,)
    grasp: np.ndarray  # (F,) 0/1 from the hand-state stage
    label_masks: list[dict[str, np.ndarray]]  # simulator masks by object name, rectified
    gt: dict  # the recording's ground truth (without masks)
    task_objects: dict  # name -> {"shape", "size", ...} from metadata.json


def recording_inputs(recording, width: int, height: int, side: str = "right",
                     hand_config: HandStateConfig | None = None) -> RecordingInputs:
    """Inputs of :func:`estimate_object_states` from a :class:`humanego_sim.aria_recording.Recording`."""
    rectifier = Rectifier(recording.camera_model(), width, height, rotate_cw90=True)
    frames = [rectifier(f) for f in recording.read_frames()]
    t = recording.frame_timestamps_ns
    T_world_device = recording.trajectory.at(t)
    hands = estimate_hand_states(recording.hand_tracking, recording.trajectory, t, side,
                                 hand_config or HandStateConfig())
    gt = recording.gt(masks=False)
    names = gt["episode"]["object_names"]
    label_masks = []
    for i in range(recording.num_frames):
        labels = rectifier(recording.gt_mask("object_labels", i), "nearest")
        label_masks.append({name: labels == k + 1 for k, name in enumerate(names)})
    return RecordingInputs(frames, rectifier.target, T_world_device @ rectifier.target.T_device_camera,
                           hands.T_world_hand, hands.valid, hands.grasp, label_masks, gt,
                           recording.metadata["task"]["objects"])


@dataclass
class TrackErrors:
    position_m: np.ndarray  # (V,) origin error over the valid frames
    yaw_deg: np.ndarray  # (V,) |yaw error| modulo the shape's symmetry (box: 180 deg); empty for a cylinder
    frames: np.ndarray  # (V,) frame indices
    size_error_m: np.ndarray  # fitted minus true size (box: L, W, H; cylinder: radius, height)


def position_errors(track: ObjectTrack, inputs: RecordingInputs) -> TrackErrors | None:
    """Errors of a track against the simulator's object poses (None if no frame is valid).

    The estimated frame is the simulator's (origin at the base centre, z up), so the truth is the body pose;
    the yaw of a box's longer side (the estimate's x) is compared modulo the box's 180 degree symmetry; a
    cylinder has no yaw to compare.
    """
    valid = np.flatnonzero(track.valid)
    if len(valid) == 0:
        return None
    spec = inputs.task_objects[track.name]
    T_gt = inputs.gt[f"T_world_{track.name}"][valid]
    T = track.T_world_obj[valid]
    position = np.linalg.norm(T[:, :3, 3] - T_gt[:, :3, 3], axis=1)
    yaw = np.zeros(0)
    if spec["shape"] == "box":
        long_axis = T_gt[:, :3, 0] if spec["size"][0] >= spec["size"][1] else T_gt[:, :3, 1]
        yaw = np.degrees(np.arctan2(T[:, 1, 0], T[:, 0, 0]) - np.arctan2(long_axis[:, 1], long_axis[:, 0]))
        yaw = np.abs((yaw + 90.0) % 180.0 - 90.0)
    true_size = np.asarray(sorted(spec["size"][:2], reverse=True) + spec["size"][2:3] if spec["shape"] == "box"
                           else spec["size"][:2], dtype=np.float64)
    size = track.size - true_size if len(track.size) == len(true_size) else np.full(len(true_size), np.nan)
    return TrackErrors(position, yaw, valid, size)
