"""The ``replay`` policy: a recorded demonstration's hand trajectory played as action chunks.

It reads a preprocessed recording (``<recording>/preprocess/all_data/<idx>/training_data.json``, validated by
humanego_core.training_data): per kept frame the hand pose ``T_hand_to_world``, its grasp, the time ``ts``
and ``is_finished``. A chunk at playback time ``t`` holds the hand at ``t + (k + 1) * dt``, k = 0..H-1, with
``dt = 1 / fps`` as the policy's actions; poses between kept frames are interpolated (SLERP + linear; dropped
frames leave gaps), the grasp is the last recorded one, and past the end the hand holds its last pose with
done probability 1.

A robot cannot play a human hand's timing as it is: the hand closes and opens instantly and moves at up to
0.7 m/s (the synthetic demos), and the arm starts wherever it stands. Nor the hand's first reach: it starts at
the person's body, which for an arm standing where the person stood is beside or behind its base, a pose the
arm reaches only folded against its joint limits. :meth:`DemoReplay.retimed` plays the same poses on a
robot's timing (:class:`ReplayTiming`): from shortly before the first grasp, the first pose held while the
arm travels there from wherever it stands, the hand's speed capped, and the hand held still around each
grasp change while the fingers close or open.

Poses are in the recording's world. For the synthetic recordings (humanego_sim.generate_demos) that world is
the simulator's ``world`` frame, the parent of the robot's ``base_link`` in the sim's TF, so retargeting can take
the chunks as they are; for a real Aria recording it is the MPS world, which a robot only knows through a
calibrated transform.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from humanego_core import geometry, training_data


@dataclass(frozen=True)
class ReplayTiming:
    speed: float = 1.0            # playback speed of the recorded motion (1 = as recorded)
    max_speed_m_s: float = 0.0    # the hand never moves faster than this (slower stretches stay); 0 = no cap
    max_turn_rad_s: float = 0.0   # ... nor turns faster than this; 0 = no cap
    lead_in_s: float = 0.0        # the first pose is held this long before the motion starts
    settle_s: float = 0.0         # at a grasp change, the hand waits this long before the fingers move ...
    grasp_dwell_s: float = 0.0    # ... and this long after, before it moves on
    approach_m: float = 0.0       # start this far along the hand's path before its first grasp; 0 = at the start

    def __post_init__(self):
        for name in PARAMETERS:
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0) or (name == "speed" and value == 0):
                raise ValueError(f"replay timing {name} must be {'positive' if name == 'speed' else '>= 0'}, "
                                 f"got {value}")

    @classmethod
    def from_parameters(cls, parameters: dict) -> ReplayTiming:
        """The timing of the policy node's ``replay_*`` parameters (config/policy.yaml)."""
        return cls(**{field: parameters[name] for field, name in PARAMETERS.items()})


# ReplayTiming's fields and the policy node's parameters that set them.
PARAMETERS = {"speed": "replay_speed", "max_speed_m_s": "replay_max_speed", "max_turn_rad_s": "replay_max_turn",
              "lead_in_s": "replay_lead_in_s", "settle_s": "replay_settle_s",
              "grasp_dwell_s": "replay_grasp_dwell_s", "approach_m": "replay_approach_m"}


@dataclass
class DemoReplay:
    times: np.ndarray  # (N,) s since the first kept frame, increasing
    T_world_hand: np.ndarray  # (N, 4, 4)
    grasp: np.ndarray  # (N,)
    finished: np.ndarray  # (N,) bool
    dt: float
    source: str = ""

    @property
    def duration(self) -> float:
        return float(self.times[-1])

    @classmethod
    def load(cls, recording: str | Path, hand: str = "right") -> DemoReplay:
        recording = Path(recording)
        files = sorted((recording / training_data.ALL_DATA).glob(f"*/{training_data.FILE_NAME}"))
        if not files:
            raise FileNotFoundError(f"{recording / training_data.ALL_DATA} holds no {training_data.FILE_NAME} "
                                    "(preprocess the recording first: humanego run humanego_training preprocess)")
        frames = [training_data.load(path, recording) for path in files]
        missing = [str(p) for p, f in zip(files, frames, strict=True) if hand not in f["entities"]["hands"]]
        if missing:
            raise ValueError(f"no {hand} hand in {missing[0]} ({len(missing)} of {len(files)} frames lack it)")
        order = np.argsort([f["metadata"]["ts"] for f in frames], kind="stable")
        frames = [frames[i] for i in order]
        times = np.array([f["metadata"]["ts"] for f in frames], dtype=np.float64)
        if np.any(np.diff(times) <= 0):
            raise ValueError(f"{recording}: two kept frames share a time stamp (metadata.ts)")
        fps = {f["metadata"]["fps"] for f in frames}
        if len(fps) != 1 or not min(fps) > 0:
            raise ValueError(f"{recording}: frames disagree on metadata.fps or it is not positive: {sorted(fps)}")
        return cls(times - times[0],
                   np.array([f["entities"]["hands"][hand]["T_hand_to_world"] for f in frames], dtype=np.float64),
                   np.array([f["entities"]["hands"][hand]["grasp"] for f in frames], dtype=np.float64),
                   np.array([f["metadata"]["is_finished"] for f in frames], dtype=bool),
                   1.0 / fps.pop(), str(recording))

    def retimed(self, timing: ReplayTiming) -> DemoReplay:
        """The same poses on ``timing``: from the first frame within ``approach_m`` of hand path before the
        first grasp (all frames when that is 0 or the hand never grasps); intervals divided by the speed, then
        stretched where the hand would move faster than ``max_speed_m_s`` or turn faster than
        ``max_turn_rad_s``; the first pose repeated after ``lead_in_s``; at each grasp change (across 0.5)
        between frames i-1 and i, pose i-1 repeated with grasp i at ``settle_s`` and again at ``settle_s +
        grasp_dwell_s`` after it, so the fingers move while the hand stands still."""
        demo = self._from_approach(timing.approach_m)
        intervals = np.diff(demo.times) / timing.speed
        if timing.max_speed_m_s > 0:
            travel = np.linalg.norm(np.diff(demo.T_world_hand[:, :3, 3], axis=0), axis=1)
            intervals = np.maximum(intervals, travel / timing.max_speed_m_s)
        if timing.max_turn_rad_s > 0:
            R = demo.T_world_hand[:, :3, :3]
            turn = Rotation.from_matrix(np.swapaxes(R[:-1], 1, 2) @ R[1:]).magnitude()
            intervals = np.maximum(intervals, turn / timing.max_turn_rad_s)
        index, grasp, gaps = [0], [demo.grasp[0]], [0.0]
        if timing.lead_in_s > 0:
            index, grasp, gaps = [0, 0], [demo.grasp[0]] * 2, [0.0, timing.lead_in_s]
        waits = timing.settle_s + timing.grasp_dwell_s > 0
        for i in range(1, len(demo.times)):
            if waits and (demo.grasp[i] >= 0.5) != (demo.grasp[i - 1] >= 0.5):
                index += [i - 1, i - 1]
                grasp += [demo.grasp[i]] * 2
                gaps += [max(timing.settle_s, 1e-3), max(timing.grasp_dwell_s, 1e-3)]
            index.append(i)
            grasp.append(demo.grasp[i])
            gaps.append(intervals[i - 1])
        index = np.array(index)
        return replace(demo, times=np.cumsum(gaps), T_world_hand=demo.T_world_hand[index], grasp=np.array(grasp),
                       finished=demo.finished[index])

    def _from_approach(self, approach_m: float) -> DemoReplay:
        grasps = np.flatnonzero(self.grasp >= 0.5)
        if approach_m <= 0 or len(grasps) == 0:
            return self
        travel = np.linalg.norm(np.diff(self.T_world_hand[:grasps[0] + 1, :3, 3], axis=0), axis=1)
        to_grasp = np.r_[np.cumsum(travel[::-1])[::-1], 0.0]  # hand path from each frame to the first grasp
        start = int(np.argmax(to_grasp <= approach_m))
        return replace(self, times=self.times[start:] - self.times[start], T_world_hand=self.T_world_hand[start:],
                       grasp=self.grasp[start:], finished=self.finished[start:])

    def chunk(self, t: float, horizon: int) -> tuple[np.ndarray, np.ndarray, float]:
        """(T_world_hand (H, 4, 4), grasp (H,), done probability) of the chunk at playback time ``t`` (s)."""
        query = np.clip(t + self.dt * np.arange(1, horizon + 1), 0.0, self.duration)
        if len(self.times) == 1:
            poses = np.repeat(self.T_world_hand, horizon, axis=0)
        else:
            poses = geometry.interpolate_trajectory(self.times, self.T_world_hand, query)
        last = np.searchsorted(self.times, query, side="right") - 1
        now = max(int(np.searchsorted(self.times, t, side="right")) - 1, 0)
        done = 1.0 if t >= self.duration or self.finished[now] else 0.0
        return poses, self.grasp[last], done
