"""The ``replay`` policy: a recorded demonstration's hand trajectory played as action chunks.

It reads a preprocessed recording (``<recording>/preprocess/all_data/<idx>/training_data.json``, validated by
humanego_core.training_data): per kept frame the hand pose ``T_hand_to_world``, its grasp, the time ``ts``
and ``is_finished``. A chunk at playback time ``t`` holds the hand at ``t + (k + 1) * dt``, k = 0..H-1, with
``dt = 1 / fps`` as the policy's actions; poses between kept frames are interpolated (SLERP + linear; dropped
frames leave gaps), the grasp is the last recorded one, and past the end the hand holds its last pose with
done probability 1.

Poses are in the recording's world. For the synthetic recordings (humanego_sim.generate_demos) that world is
the simulator's ``world`` frame, the parent of the robot's ``base_link`` in the sim's TF, so retargeting can take
the chunks as they are; for a real Aria recording it is the MPS world, which a robot only knows through a
calibrated transform.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from humanego_core import geometry, training_data


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
