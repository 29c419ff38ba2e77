"""Suite-wide test set-up: DDS traffic of this run stays in its own domain."""

import os

# Always overridden, never inherited: a test must not talk to a real robot on the user's domain, and
# concurrent suites (a developer's and CI's) on one machine must not see each other's topics.
os.environ["ROS_DOMAIN_ID"] = str(10 + os.getpid() % 90)
# The users' default discovery range. LOCALHOST would be tighter, but with it Fast DDS carries data over UDP
# loopback whatever FASTDDS_BUILTIN_TRANSPORTS says, and loses most large best-effort images (measured:
# 2-5 of 8 480x480 frames): tests must see the transport users get.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET"
