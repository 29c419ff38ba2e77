"""Interaction-centric tokens (ICT): the policy's 6-DoF view of hands and objects (DESIGN.md section 5).

One function, :func:`build_tokens`, builds them for training (from ``training_data.json``) and on the
robot (``state_estimator``, where the gripper is the hand), so both see the same numbers.

Token row (single hand: 20 floats; dual hand: 29)::

    [type_id | pose_in_ref: xyz(3) rot6d(6) | hand_in_entity: xyz(3) rot6d(6) (dual: left, then right) | flag]

- ``type_id``: 0 PAD, 1 HAND_L, 2 HAND_R, 3 OBJ_ANCHOR, 4 OBJ_OTHER;
- ``pose_in_ref = inv(T_world_ref) @ T_world_entity``;
- ``hand_in_entity = inv(T_world_entity) @ T_world_hand`` for each used hand (identity on that hand's own
  token; on the left hand's token of a dual-hand layout, the right slot holds the right hand in the left
  hand's frame, and vice versa);
- ``flag``: hands ``1`` when grasp > 0.5 else ``0``; objects ``-1``; padding ``0``;
- rot6d: first two columns of R as ``[R00, R01, R10, R11, R20, R21]``.

Rows are ordered hand(s) (left before right), the anchor object, then the other objects in the order
given (callers pass a fixed order: the dataset's object order, the state estimator's configured list),
then padding rows (all zeros, mask False, entity id ``""``) up to ``max_tokens``.

Points DESIGN leaves open, decided here:

- **Normalisation.** ``pose_in_ref`` xyz is a position in the reference frame, like the actions, and is
  z-scored with the dataset ``pos`` mean/std. ``hand_in_entity`` xyz is a displacement (hand relative to
  the entity), so it is only scaled by ``1 / pos_std`` - subtracting a mean position would make "the hand
  is at the entity" a non-zero vector that depends on where the table was. rot6d values are not scaled.
- **Missing hand.** A hand that is not given (not tracked on a human frame; a dual-hand layout on a
  one-arm robot) has no token, and its ``hand_in_entity`` slot on every other token is all zeros: a
  real pose never encodes to zeros (rot6d columns are unit vectors), so the slot is unambiguous.
- **Single-hand layout.** Only the hand of ``config.hand_side`` is used; the other side's hand, if given
  (human recordings track both), is ignored. Its token type still says which side it is.
- **Anchor.** At most one object may be the anchor. ``anchor_frame`` mode requires exactly one (the
  reference frame is its pose); ``camera_frame`` mode works with or without one.
- **Too many entities** for ``max_tokens`` raise rather than being dropped silently.

Bad input (NaN/inf, non-rigid transforms, wrong shapes, grasp outside [0, 1], duplicate or empty names,
unknown frame mode or side) raises ``ValueError`` naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from humanego_core import geometry
from humanego_core.actions import NormStats, normalise_positions

FRAME_MODES = ("camera_frame", "anchor_frame")
HAND_SIDES = ("left", "right")
TYPE_PAD = 0
TYPE_HAND_LEFT = 1
TYPE_HAND_RIGHT = 2
TYPE_OBJECT_ANCHOR = 3
TYPE_OBJECT_OTHER = 4
MAX_TOKENS = 8
GRASP_THRESHOLD = 0.5
OBJECT_FLAG = -1.0

# Column layout of a token row.
TYPE_INDEX = 0
POSE_SLICE = slice(1, 10)
POSE_DIM = 9  # xyz(3) + rot6d(6)

_HAND_TYPES = {"left": TYPE_HAND_LEFT, "right": TYPE_HAND_RIGHT}
_RIGID_TOLERANCE = 1e-4


def token_dim(dual_hand: bool) -> int:
    """Floats per token: 1 type + 9 pose_in_ref + 9 per hand slot + 1 flag (20 single, 29 dual)."""
    return 1 + POSE_DIM + POSE_DIM * (2 if dual_hand else 1) + 1


def hand_slot(dual_hand: bool, side: str) -> slice:
    """Columns of the hand_in_entity block of ``side`` (single-hand layouts have one slot)."""
    start = 1 + POSE_DIM + (POSE_DIM if dual_hand and side == "right" else 0)
    return slice(start, start + POSE_DIM)


def _check_pose(T, name: str) -> np.ndarray:
    try:
        return geometry.check_transform(T, name, tol=_RIGID_TOLERANCE)
    except geometry.GeometryError as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class HandState:
    """A hand (or the robot's gripper mapped to the hand frame) in the world: side, pose, grasp in [0, 1]."""

    side: str
    T_world_hand: np.ndarray
    grasp: float

    def __post_init__(self):
        if self.side not in HAND_SIDES:
            raise ValueError(f"HandState.side must be 'left' or 'right', got {self.side!r}")
        object.__setattr__(self, "T_world_hand", _check_pose(self.T_world_hand, f"hand {self.side}: T_world_hand"))
        if self.T_world_hand.shape != (4, 4):
            raise ValueError(f"hand {self.side}: T_world_hand must be one 4x4 transform, got {self.T_world_hand.shape}")
        g = float(self.grasp)
        if not (np.isfinite(g) and 0.0 <= g <= 1.0):
            raise ValueError(f"hand {self.side}: grasp must be finite and lie in [0, 1], got {self.grasp}")
        object.__setattr__(self, "grasp", g)

    @property
    def entity_id(self) -> str:
        return f"hand_{self.side}"


@dataclass(frozen=True)
class ObjectState:
    """An object's pose in the world; ``is_anchor`` marks the (static) anchor object."""

    name: str
    T_world_object: np.ndarray
    is_anchor: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"ObjectState.name must be a non-empty string, got {self.name!r}")
        T = _check_pose(self.T_world_object, f"object {self.name}: T_world_object")
        if T.shape != (4, 4):
            raise ValueError(f"object {self.name}: T_world_object must be one 4x4 transform, got {T.shape}")
        object.__setattr__(self, "T_world_object", T)
        object.__setattr__(self, "is_anchor", bool(self.is_anchor))


@dataclass(frozen=True)
class ICTConfig:
    """Token layout: reference frame mode, one or two hand slots, which hand a one-hand layout uses, rows."""

    frame_mode: str = "camera_frame"
    dual_hand: bool = False
    hand_side: str = "right"
    max_tokens: int = MAX_TOKENS

    def __post_init__(self):
        if self.frame_mode not in FRAME_MODES:
            raise ValueError(f"ICT frame_mode must be one of {', '.join(FRAME_MODES)}, got {self.frame_mode!r}")
        if self.hand_side not in HAND_SIDES:
            raise ValueError(f"ICT hand_side must be 'left' or 'right', got {self.hand_side!r}")
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, (int, np.integer)) \
                or self.max_tokens < 1:
            raise ValueError(f"ICT max_tokens must be a positive integer, got {self.max_tokens!r}")

    @property
    def token_dim(self) -> int:
        return token_dim(self.dual_hand)

    @property
    def sides(self) -> tuple[str, ...]:
        """Hand sides the layout has slots for, in slot order."""
        return HAND_SIDES if self.dual_hand else (self.hand_side,)


@dataclass
class Tokens:
    """``tokens`` (max_tokens, dim) float32, ``mask`` (max_tokens,) bool, ``entity_ids`` ("" for padding)."""

    tokens: np.ndarray
    mask: np.ndarray
    entity_ids: list[str]


def _anchor(objects: Sequence[ObjectState]) -> ObjectState | None:
    anchors = [o for o in objects if o.is_anchor]
    if len(anchors) > 1:
        raise ValueError(f"more than one anchor object: {', '.join(o.name for o in anchors)}")
    return anchors[0] if anchors else None


def reference_transform(config: ICTConfig, T_world_camera, objects: Sequence[ObjectState]) -> np.ndarray:
    """T_world_ref: the camera pose (the clip's first camera / the robot's fixed camera) in ``camera_frame``
    mode, the anchor object's pose in ``anchor_frame`` mode (no anchor -> ValueError)."""
    if config.frame_mode == "camera_frame":
        T = _check_pose(T_world_camera, "T_world_camera")
        if T.shape != (4, 4):
            raise ValueError(f"T_world_camera must be one 4x4 transform, got {T.shape}")
        return T
    anchor = _anchor(objects)
    if anchor is None:
        raise ValueError("anchor_frame mode needs an anchor object (ObjectState.is_anchor=True); none was given")
    return anchor.T_world_object


def _pose_features(T: np.ndarray) -> np.ndarray:
    """[xyz, rot6d] of a transform (xyz not yet normalised)."""
    return np.concatenate([T[:3, 3], geometry.rot6d_from_matrix(T[:3, :3])])


def build_tokens(config: ICTConfig, T_world_ref, hands: Sequence[HandState], objects: Sequence[ObjectState],
                 stats: NormStats) -> Tokens:
    """The ICT of one observation (see the module docstring for the exact layout and rules)."""
    T_world_ref = _check_pose(T_world_ref, "T_world_ref")
    if T_world_ref.shape != (4, 4):
        raise ValueError(f"T_world_ref must be one 4x4 transform, got {T_world_ref.shape}")
    for h in hands:
        if not isinstance(h, HandState):
            raise ValueError(f"hands must be HandState objects, got {type(h).__name__}")
    for o in objects:
        if not isinstance(o, ObjectState):
            raise ValueError(f"objects must be ObjectState objects, got {type(o).__name__}")
    by_side = {}
    for h in hands:
        if h.side in by_side:
            raise ValueError(f"two hands with side {h.side!r}")
        by_side[h.side] = h
    names = [o.name for o in objects]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"object names must be unique; repeated: {', '.join(duplicates)}")
    if any(n in ("hand_left", "hand_right") for n in names):
        raise ValueError("object names 'hand_left'/'hand_right' are reserved for the hand tokens")
    anchor = _anchor(objects)
    if config.frame_mode == "anchor_frame" and anchor is None:
        raise ValueError("anchor_frame mode needs an anchor object (ObjectState.is_anchor=True); none was given")

    used_hands = [by_side[s] for s in HAND_SIDES if s in by_side and s in config.sides]
    ordered_objects = ([anchor] if anchor is not None else []) + [o for o in objects if not o.is_anchor]
    n_entities = len(used_hands) + len(ordered_objects)
    if n_entities > config.max_tokens:
        raise ValueError(f"{n_entities} entities ({len(used_hands)} hands, {len(ordered_objects)} objects) "
                         f"do not fit in max_tokens={config.max_tokens}")

    dim = config.token_dim
    tokens = np.zeros((config.max_tokens, dim), dtype=np.float64)
    mask = np.zeros(config.max_tokens, dtype=bool)
    entity_ids = [""] * config.max_tokens
    T_ref_world = geometry.invert(T_world_ref)
    entities = [(h.entity_id, _HAND_TYPES[h.side], h.T_world_hand, 1.0 if h.grasp > GRASP_THRESHOLD else 0.0)
                for h in used_hands]
    entities += [(o.name, TYPE_OBJECT_ANCHOR if o.is_anchor else TYPE_OBJECT_OTHER, o.T_world_object, OBJECT_FLAG)
                 for o in ordered_objects]
    for row, (entity_id, type_id, T_world_entity, flag) in enumerate(entities):
        pose = _pose_features(T_ref_world @ T_world_entity)
        pose[:3] = normalise_positions(pose[:3], stats)
        tokens[row, TYPE_INDEX] = type_id
        tokens[row, POSE_SLICE] = pose
        T_entity_world = geometry.invert(T_world_entity)
        for hand in used_hands:
            rel = _pose_features(T_entity_world @ hand.T_world_hand)
            rel[:3] /= stats.pos_std
            tokens[row, hand_slot(config.dual_hand, hand.side)] = rel
        tokens[row, -1] = flag
        mask[row] = True
        entity_ids[row] = entity_id
    out = tokens.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise ValueError("ICT tokens overflow float32 (positions far outside the dataset statistics?)")
    return Tokens(out, mask, entity_ids)
