"""humanego_ros: the node side of humanego_core, shared by every HumanEgo node.

What belongs here and not in humanego_core, because it touches ROS types or rclpy:

- ``conversions``: ROS messages <-> numpy (time, poses, transforms, images, camera info,
  interaction tokens, action chunks), using humanego_core for the math;
- ``qos``: the QoS profiles of the topic contract (sensor data, commands, TF, latched data);
- ``parameters``: declared, described and validated node parameters (ros2_controllers style).
"""
