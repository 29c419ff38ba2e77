"""Project Aria recordings as a camera source (``aria_source``; the glasses live: :mod:`aria_live_node`).

``humanego run humanego_drivers aria_source --ros-args -p vrs:=recording.vrs [-p mps:=mps_folder]`` replays
the recording's RGB camera (and with ``slam:=true`` its SLAM cameras), its MPS trajectory on TF and MPS
hand tracking, at the recorded speed, faster or step by step; see :mod:`humanego_drivers.replay_node` for
topics, services and the shared parameters.
"""

from __future__ import annotations

import sys

from humanego_drivers.aria import open_vrs_replay
from humanego_drivers.replay_node import ReplayNode, replay_parameters
from humanego_ros.parameters import ParameterError, ParamSpec
from humanego_ros.runner import run_node

NODE_NAME = "aria_source"
SLAM_PARAMETER = ParamSpec("slam", False, "Also publish the two SLAM cameras (slam_left/, slam_right/).")


def parameters() -> list[ParamSpec]:
    """Everything aria_source declares: the recording, and how it is replayed and published."""
    return [
        ParamSpec("vrs", "", "Aria recording (.vrs) to replay."),
        ParamSpec("mps", "", "MPS output folder of the same recording (slam/ or trajectory/, hand_tracking/); "
                  "empty = images only."),
        SLAM_PARAMETER,
        ParamSpec("allow_truncated", False, "Replay the complete frames of a truncated .vrs instead of refusing it."),
    ] + replay_parameters()


def open_replay(p: dict):
    if not p["vrs"]:
        raise ParameterError(f"parameter 'vrs' of node '{NODE_NAME}' is empty: give a .vrs recording to replay "
                             f"(vrs:=/path/to/recording.vrs), or run aria_live to stream from the glasses")
    return open_vrs_replay(p["vrs"], p["mps"] or None, slam=p["slam"], allow_truncated=p["allow_truncated"])


def main(args=None):
    sys.exit(run_node(lambda: ReplayNode(NODE_NAME, parameters(), open_replay), args))
