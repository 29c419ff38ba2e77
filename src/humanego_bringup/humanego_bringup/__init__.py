"""humanego_bringup: how the stack is started and driven.

Room for: the single launch description of the robot graph (used by ``robot.launch.py`` on a ROS
machine and by ``humanego launch robot`` without one), the configs, URDFs and models installed
from the workspace root into this package's share folder, rosbag recording, and the ``humanego``
command line (``humanego run`` works like ``ros2 run`` where ROS 2 is not installed).
"""
