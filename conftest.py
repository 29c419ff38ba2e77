"""Suite-wide test set-up: DDS traffic of this run stays on this machine and in its own domain."""

import os

# Always overridden, never inherited: a test must not talk to a real robot on the user's domain, and
# concurrent suites (a developer's and CI's) on one machine must not see each other's topics.
os.environ["ROS_DOMAIN_ID"] = str(10 + os.getpid() % 90)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
