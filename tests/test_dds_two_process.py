"""Real DDS between real processes: project messages cross unchanged, discovery is waited for."""

import json
import os
from pathlib import Path

import pytest

PEER = Path(__file__).parent / "peers" / "message_peer.py"


@pytest.mark.parametrize("kind, type_name", [
    ("ict", "humanego_interfaces/InteractionTokens"),
    ("chunk", "humanego_interfaces/ActionChunk"),
    ("tf", "tf2_msgs/TFMessage"),
])
def test_message_crosses_processes_unchanged(processes, kind, type_name):
    topic = f"/dds_test_{kind}_{os.getpid()}"
    receiver = processes.python(PEER, "receive", kind, topic)
    publisher = processes.python(PEER, "publish", kind, topic)
    receiver.wait(timeout=120)
    assert receiver.returncode == 0, f"nothing received on {topic}: {receiver.stderr.read()}"
    received = json.loads(receiver.stdout.read().strip().splitlines()[-1])
    sent = json.loads(publisher.stdout.readline())
    assert received["digest"] == sent["digest"], "a field changed on the way"
    assert received["type"] == type_name
    if kind == "ict":
        assert received["shape"] == [8, 20] and received["n_valid"] == 3
        assert received["ids"] == ["hand_right", "plate", "bread"]
        assert received["frame_mode"] == "anchor_frame"
        assert received["stamp_ns"] == 1_700_000_000_123_456_789
