"""humanego_core: the robot-independent algorithms of the HumanEgo stack, in plain Python.

Never imports rclpy (enforced by a test): everything here is usable offline, in training, and
from node code alike. Modules:

- ``geometry``: SE(3) batches (compose, invert, interpolate), rot6d, quaternion conversions;
- ``timeutil``: integer-nanosecond timestamps, ROS stamp conversion, interpolation brackets;
- ``config``: YAML configuration with schema validation that names the bad key and file.
"""
