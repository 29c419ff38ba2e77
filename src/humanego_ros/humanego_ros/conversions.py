"""ROS messages <-> numpy, with humanego_core doing the math.

Arrays follow humanego_core's conventions: 4x4 float64 transforms, [x, y, z, w] quaternions,
integer-nanosecond times. Decoders check sizes and raise ValueError saying what does not fit,
because a malformed message must be rejected (and counted) by the node, never half-used.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, Quaternion, Transform, TransformStamped, Vector3
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from humanego_core import geometry, timeutil
from humanego_core.camera_models import FISHEYE624, LINEAR, CameraModel
from humanego_interfaces.msg import ActionChunk, InteractionTokens

# encoding -> (numpy dtype, channels)
IMAGE_ENCODINGS = {
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1), "8UC1": (np.uint8, 1), "8UC3": (np.uint8, 3),
    "mono16": (np.uint16, 1), "16UC1": (np.uint16, 1), "32FC1": (np.float32, 1),
}


# --- time ------------------------------------------------------------------------------------------
def time_to_ns(stamp: Time) -> int:
    return timeutil.stamp_to_ns(stamp.sec, stamp.nanosec)


def ns_to_time(ns: int) -> Time:
    sec, nanosec = timeutil.ns_to_stamp(ns)
    return Time(sec=sec, nanosec=nanosec)


def make_header(stamp_ns: int, frame_id: str) -> Header:
    return Header(stamp=ns_to_time(stamp_ns), frame_id=frame_id)


# --- poses and transforms --------------------------------------------------------------------------
def pose_to_matrix(pose: Pose) -> np.ndarray:
    p, q = pose.position, pose.orientation
    return geometry.transform_from_pos_quat([p.x, p.y, p.z], [q.x, q.y, q.z, q.w])


def matrix_to_pose(T) -> Pose:
    p, q = geometry.pos_quat_from_transform(T)
    return Pose(position=Point(x=float(p[0]), y=float(p[1]), z=float(p[2])),
                orientation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))


def transform_to_matrix(transform: Transform) -> np.ndarray:
    t, q = transform.translation, transform.rotation
    return geometry.transform_from_pos_quat([t.x, t.y, t.z], [q.x, q.y, q.z, q.w])


def matrix_to_transform_stamped(T, parent_frame: str, child_frame: str, stamp_ns: int) -> TransformStamped:
    """T maps child-frame points into the parent frame (T_parent_child), as tf2 expects."""
    p, q = geometry.pos_quat_from_transform(T)
    return TransformStamped(
        header=make_header(stamp_ns, parent_frame), child_frame_id=child_frame,
        transform=Transform(translation=Vector3(x=float(p[0]), y=float(p[1]), z=float(p[2])),
                            rotation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))))


# --- images ------------------------------------------------------------------------------------------
def numpy_to_image(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Image:
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported image encoding {encoding!r}; supported: {', '.join(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[encoding]
    arr = np.ascontiguousarray(array)
    expected_ndim = 2 if channels == 1 else 3
    if arr.dtype != dtype or arr.ndim not in (expected_ndim, 3) or (arr.ndim == 3 and arr.shape[2] != channels):
        shape = "(H, W)" if channels == 1 else f"(H, W, {channels})"
        raise ValueError(f"{encoding} needs a {dtype.__name__} array of shape {shape}, got {arr.dtype} {arr.shape}")
    height, width = arr.shape[:2]
    return Image(header=make_header(stamp_ns, frame_id), height=height, width=width, encoding=encoding,
                 is_bigendian=0, step=width * channels * arr.itemsize, data=arr.tobytes())


def image_to_numpy(msg: Image) -> np.ndarray:
    """(H, W) or (H, W, C) array viewing the message data; row padding (step) is handled."""
    if msg.encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported image encoding {msg.encoding!r}; supported: {', '.join(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[msg.encoding]
    itemsize = np.dtype(dtype).itemsize
    row_bytes = msg.width * channels * itemsize
    if msg.step < row_bytes or len(msg.data) < msg.step * msg.height:
        raise ValueError(f"{msg.encoding} image {msg.width}x{msg.height}: step {msg.step} and "
                         f"{len(msg.data)} data bytes are too small")
    buf = np.frombuffer(msg.data, dtype=np.uint8, count=msg.step * msg.height).reshape(msg.height, msg.step)
    arr = buf[:, :row_bytes].view(np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<"))
    return arr.reshape(msg.height, msg.width, channels) if channels > 1 else arr.reshape(msg.height, msg.width)


def make_camera_info(K, width: int, height: int, stamp_ns: int, frame_id: str,
                     distortion=(), distortion_model: str = "plumb_bob") -> CameraInfo:
    """CameraInfo of a pinhole camera (P = [K | 0], R = I); distortion empty means rectified."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)):
        raise ValueError(f"K must be a finite 3x3 matrix, got shape {K.shape}")
    P = np.zeros((3, 4))
    P[:, :3] = K
    return CameraInfo(header=make_header(stamp_ns, frame_id), width=int(width), height=int(height),
                      distortion_model=distortion_model, d=[float(v) for v in distortion],
                      k=K.ravel().tolist(), r=np.eye(3).ravel().tolist(), p=P.ravel().tolist())


def camera_info_from_model(model: CameraModel, stamp_ns: int, frame_id: str) -> CameraInfo:
    """CameraInfo of a humanego_core camera: a pinhole is rectified (empty distortion); an unrectified Aria
    fisheye keeps its model under the name ``fisheye624`` with D = [k0..k5, p0, p1, s0..s3] (no ROS
    distortion model describes it, so image_geometry-based consumers must not rectify it themselves)."""
    K = model.intrinsic_matrix()
    if model.model == FISHEYE624:
        return make_camera_info(K, model.width, model.height, stamp_ns, frame_id, model.params[3:], FISHEYE624)
    return make_camera_info(K, model.width, model.height, stamp_ns, frame_id)


def camera_model_from_info(msg: CameraInfo) -> CameraModel:
    """The camera of a CameraInfo, the inverse of :func:`camera_info_from_model`: a pinhole (LINEAR) when the
    distortion is empty or zero (rectified images), Aria's Fisheye624 when ``distortion_model`` is
    ``fisheye624``. Other distortions, binning and ROIs raise: the pipeline works on rectified full images."""
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    where = f"camera_info of frame {msg.header.frame_id!r}"
    if msg.width == 0 or msg.height == 0 or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{where} is not calibrated: size {msg.width}x{msg.height}, K {K.ravel().tolist()}")
    if msg.binning_x > 1 or msg.binning_y > 1 or msg.roi.width or msg.roi.height:
        raise ValueError(f"{where} uses binning or an ROI; publish full-resolution images")
    d = np.asarray(msg.d, dtype=np.float64)
    (fx, _, cx), (_, fy, cy) = K[0], K[1]
    if msg.distortion_model == FISHEYE624:
        if d.shape != (12,) or not np.isclose(fx, fy, rtol=1e-9):
            raise ValueError(f"{where}: fisheye624 needs 12 coefficients and fx == fy, got {d.size} and {fx}, {fy}")
        return CameraModel(FISHEYE624, np.r_[fx, cx, cy, d], msg.width, msg.height)
    if np.any(d != 0):
        raise ValueError(f"{where} has {msg.distortion_model} distortion {d.tolist()}: rectify the images first "
                         "(e.g. image_proc), the pipeline expects rectified ones")
    return CameraModel(LINEAR, [fx, fy, cx, cy], msg.width, msg.height)


# --- interaction tokens ---------------------------------------------------------------------------
def tokens_to_msg(tokens: np.ndarray, mask, entity_ids, frame_mode: str, stamp_ns: int,
                  frame_id: str) -> InteractionTokens:
    tokens = np.asarray(tokens, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    if tokens.ndim != 2 or mask.shape != (tokens.shape[0],) or len(entity_ids) != tokens.shape[0]:
        raise ValueError(f"tokens (N, D), mask (N,) and N entity ids expected, got {tokens.shape}, "
                         f"{mask.shape}, {len(entity_ids)}")
    if frame_mode not in (InteractionTokens.FRAME_MODE_CAMERA, InteractionTokens.FRAME_MODE_ANCHOR):
        raise ValueError(f"frame_mode must be camera_frame or anchor_frame, got {frame_mode!r}")
    if not np.all(np.isfinite(tokens)):
        raise ValueError("tokens contain NaN or inf")
    return InteractionTokens(header=make_header(stamp_ns, frame_id), frame_mode=frame_mode,
                             token_dim=tokens.shape[1], tokens=tokens.ravel(), mask=mask.tolist(),
                             entity_ids=list(entity_ids))


def msg_to_tokens(msg: InteractionTokens) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(tokens (N, D) float32, mask (N,) bool, entity ids); inconsistent sizes or NaN raise."""
    n = len(msg.mask)
    tokens = np.asarray(msg.tokens, dtype=np.float32)
    if msg.token_dim == 0 or tokens.size != n * msg.token_dim or len(msg.entity_ids) != n:
        raise ValueError(f"InteractionTokens sizes disagree: {tokens.size} floats, token_dim {msg.token_dim}, "
                         f"{n} mask entries, {len(msg.entity_ids)} entity ids")
    if not np.all(np.isfinite(tokens)):
        raise ValueError("InteractionTokens contain NaN or inf")
    return tokens.reshape(n, msg.token_dim), np.asarray(msg.mask, dtype=bool), list(msg.entity_ids)


# --- action chunks ---------------------------------------------------------------------------------
def chunk_to_msg(poses: np.ndarray, grasp: np.ndarray, arms, dt: float, done_prob: float, stamp_ns: int,
                 frame_id: str, policy_id: str) -> ActionChunk:
    """poses (H, A, 4, 4) and grasp (H, A) for A = len(arms) arms, laid out step-major."""
    poses = np.asarray(poses, dtype=np.float64)
    grasp = np.asarray(grasp, dtype=np.float32)
    arms = list(arms)
    if poses.ndim != 4 or poses.shape[1:] != (len(arms), 4, 4) or grasp.shape != poses.shape[:2]:
        raise ValueError(f"poses (H, {len(arms)}, 4, 4) and grasp (H, {len(arms)}) expected, "
                         f"got {poses.shape} and {grasp.shape}")
    if not (np.all(np.isfinite(poses)) and np.all(np.isfinite(grasp)) and np.isfinite(dt) and dt > 0):
        raise ValueError("chunk contains NaN/inf or a non-positive dt")
    return ActionChunk(header=make_header(stamp_ns, frame_id), dt=float(dt), arms=arms,
                       poses=[matrix_to_pose(T) for T in poses.reshape(-1, 4, 4)],
                       grasp=grasp.ravel(), done_prob=float(done_prob), policy_id=policy_id)


def msg_to_chunk(msg: ActionChunk) -> tuple[np.ndarray, np.ndarray]:
    """(poses (H, A, 4, 4), grasp (H, A)); inconsistent sizes, NaN/inf or bad dt raise."""
    n_arms = len(msg.arms)
    if n_arms == 0 or len(msg.poses) == 0 or len(msg.poses) % n_arms or len(msg.grasp) != len(msg.poses):
        raise ValueError(f"ActionChunk sizes disagree: {len(msg.poses)} poses, {len(msg.grasp)} grasp values, "
                         f"{n_arms} arms")
    if not (np.isfinite(msg.dt) and msg.dt > 0):
        raise ValueError(f"ActionChunk dt must be positive and finite, got {msg.dt}")
    horizon = len(msg.poses) // n_arms
    try:
        poses = np.stack([pose_to_matrix(p) for p in msg.poses]).reshape(horizon, n_arms, 4, 4)
    except geometry.GeometryError as exc:
        raise ValueError(f"ActionChunk pose invalid: {exc}") from None
    grasp = np.asarray(msg.grasp, dtype=np.float32).reshape(horizon, n_arms)
    if not np.all(np.isfinite(grasp)):
        raise ValueError("ActionChunk grasp contains NaN or inf")
    return poses, grasp
