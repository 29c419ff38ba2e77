#!/usr/bin/env bash
# Run the whole suite (tests/ and every package's test/) in the workspace environment.
# Extra arguments go to pytest. pytest's exit code is kept: "no tests collected" (5) fails too.
set -euo pipefail
WS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=env.sh
set +u  # colcon's setup files read unset variables
source "$WS/scripts/env.sh"
set -u
cd "$WS"
exec python -m pytest "$@"
