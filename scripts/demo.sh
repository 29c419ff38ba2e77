#!/usr/bin/env bash
# `make demo`: the main job on the embedded default.
set -euo pipefail
WS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=env.sh
set +u  # colcon's setup files read unset variables
source "$WS/scripts/env.sh"
set -u
exec python "$WS/scripts/demo.py" "$@"
