"""A real ROS 2 process for the cross-process tests: publishes or receives one known message.

  message_peer.py publish TYPE TOPIC   publish the sample message of TYPE (after a subscriber
                                       matched) until terminated; print its digest
  message_peer.py receive TYPE TOPIC   print the digest and fields of the first message, exit 0
                                       (exit 1 if none arrives within 60 s)

TYPE is one of: ict, chunk, tf. The digest is the sha256 of every field, walked recursively (not of
the CDR bytes, whose alignment padding is not zeroed), so equal digests mean every field arrived equal.
"""

import array
import hashlib
import json
import sys
import time

import numpy as np
import rclpy
from tf2_msgs.msg import TFMessage

from humanego_core import geometry
from humanego_interfaces.msg import ActionChunk, InteractionTokens
from humanego_ros import conversions as conv
from humanego_ros import qos

TIMEOUT_S = 60.0


def sample(kind: str):
    rng = np.random.default_rng(7)
    stamp = 1_700_000_000_123_456_789
    if kind == "ict":
        tokens = rng.normal(size=(8, 20)).astype(np.float32)
        mask = [True, True, True] + [False] * 5
        ids = ["hand_right", "plate", "bread"] + [""] * 5
        return conv.tokens_to_msg(tokens, mask, ids, "anchor_frame", stamp, "plate")
    poses = geometry.make_transform(np.broadcast_to(np.eye(3), (50, 1, 3, 3)), rng.normal(size=(50, 1, 3)))
    if kind == "chunk":
        return conv.chunk_to_msg(poses, rng.uniform(size=(50, 1)), ["right"], 1 / 30, 0.25, stamp,
                                 "camera_optical_frame", "test")
    if kind == "tf":
        return TFMessage(transforms=[conv.matrix_to_transform_stamped(poses[0, 0], "world", "base_link", stamp),
                                     conv.matrix_to_transform_stamped(poses[1, 0], "base_link", "ee", stamp)])
    raise SystemExit(f"unknown message kind {kind!r}; use ict, chunk or tf")


TYPES = {"ict": InteractionTokens, "chunk": ActionChunk, "tf": TFMessage}


def plain(value):
    """Message -> nested lists/dicts of Python scalars, with floats kept exact (repr)."""
    if hasattr(value, "get_fields_and_field_types"):
        return {name: plain(getattr(value, name)) for name in value.get_fields_and_field_types()}
    if isinstance(value, (list, tuple, array.array, np.ndarray)):
        return [plain(v) for v in value]
    return repr(float(value)) if isinstance(value, float) else value


def digest(msg) -> str:
    return hashlib.sha256(json.dumps(plain(msg)).encode()).hexdigest()


def publish(kind: str, topic: str) -> int:
    node = rclpy.create_node("message_peer_publisher")
    msg = sample(kind)
    pub = node.create_publisher(TYPES[kind], topic, qos.COMMAND)
    print(json.dumps({"digest": digest(msg)}), flush=True)
    deadline = time.monotonic() + TIMEOUT_S
    while pub.get_subscription_count() == 0:  # discovery first; never a fixed sleep
        if time.monotonic() > deadline:
            return 1
        rclpy.spin_once(node, timeout_sec=0.05)
    while rclpy.ok():
        pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.1)
    return 0


def receive(kind: str, topic: str) -> int:
    node = rclpy.create_node("message_peer_receiver")
    got = []
    node.create_subscription(TYPES[kind], topic, got.append, qos.COMMAND)
    deadline = time.monotonic() + TIMEOUT_S
    while not got and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    if not got:
        return 1
    msg = got[0]
    fields = {"type": type(msg).__module__.split(".")[0] + "/" + type(msg).__name__}
    if kind == "ict":
        tokens, mask, ids = conv.msg_to_tokens(msg)
        fields.update(shape=list(tokens.shape), n_valid=int(mask.sum()), ids=ids[:3], frame_mode=msg.frame_mode,
                      stamp_ns=conv.time_to_ns(msg.header.stamp))
    print(json.dumps({"digest": digest(msg), **fields}), flush=True)
    return 0


def main() -> int:
    mode, kind, topic = sys.argv[1:4]
    rclpy.init()
    try:
        return publish(kind, topic) if mode == "publish" else receive(kind, topic)
    except KeyboardInterrupt:
        return 0
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
