#!/usr/bin/env bash
# Every command in the container runs with ROS 2 and the workspace sourced.
set -e
# shellcheck disable=SC1091
source /opt/ros/jazzy/setup.bash
# shellcheck disable=SC1091
source /ws/scripts/env.sh
exec "$@"
