"""QoS profiles of the HumanEgo topic contract (DESIGN.md section 3)."""

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

# Camera images and other high-rate sensor streams: best effort, keep the latest few.
SENSOR = qos_profile_sensor_data

# Commands, chunks, tokens: every message matters, only the freshest few are useful.
COMMAND = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)

# Static data (robot description, static TF, calibration): late joiners get the last value.
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST)

# The QoS of tf2_ros' broadcasters, so RViz and tf2 listeners on a ROS machine match ours.
TF = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
TF_STATIC = LATCHED

# /clock of a simulator or a replay: the latest time is all that matters, and it must arrive.
CLOCK = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
