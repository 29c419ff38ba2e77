#!/usr/bin/env bash
# `make setup`: idempotent set-up of the workspace on Debian 12 / Ubuntu.
#
#   1. apt prerequisites (installed when root, otherwise a message says what to install);
#   2. .venv with the pinned dependencies of requirements/ (skipped when they have not changed);
#      - without ROS 2: the ROS 2 Kilted wheels from PyPI, plus the fixes they need to build messages;
#      - with ROS 2 sourced (ROS_DISTRO set): a venv on top of the system ROS, no ROS wheels;
#      - HUMANEGO_GPU=1: onnxruntime-gpu (requirements/gpu.txt) instead of onnxruntime;
#   3. colcon build of src/ (and compat/tf2_msgs where the ROS runtime lacks tf2_msgs), skipped when
#      nothing under src/ compat/ launch/ config/ urdf/ models/ changed since the last build.
set -euo pipefail

WS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$WS/.venv"
STAMPS="$VENV/.humanego"
PYTHON="${PYTHON:-python3}"
APT_PACKAGES=(cmake g++ make git libosmesa6 libusb-1.0-0)
start=$(date +%s)

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# --- 1. system prerequisites -------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing apt packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || die "apt-get install ${missing[*]} failed"
  else
    die "missing system packages; install them with: sudo apt-get install ${missing[*]}"
  fi
fi
command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python 3 (sudo apt-get install python3 python3-venv)"

if [[ -n "${ROS_DISTRO:-}" ]]; then
  mode="ros-$ROS_DISTRO"
  [[ -n "${AMENT_PREFIX_PATH:-}" ]] || die "ROS_DISTRO=$ROS_DISTRO is set but no ROS is sourced: run 'source /opt/ros/$ROS_DISTRO/setup.bash' first"
  "$PYTHON" -c "import rclpy" 2>/dev/null || die "ROS_DISTRO=$ROS_DISTRO but rclpy does not import with $PYTHON; is /opt/ros/$ROS_DISTRO sourced?"
  command -v colcon >/dev/null || die "colcon not found; install it with: sudo apt-get install python3-colcon-common-extensions"
  requirements=("$WS/requirements/python.txt")
else
  mode="wheels"
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "the ROS 2 wheels need Python 3.11, $PYTHON is $("$PYTHON" -V 2>&1); set PYTHON=/path/to/python3.11 or install ROS 2 and source it"
  "$PYTHON" -c "import venv, ensurepip" 2>/dev/null || die "Python venv support missing: sudo apt-get install python3-venv"
  requirements=("$WS/requirements/base.txt" "$WS/requirements/python.txt")
fi

# --- 2. virtual environment --------------------------------------------------------------------
gpu="${HUMANEGO_GPU:-0}"
pip_key=$( { echo "$mode gpu=$gpu"; "$PYTHON" -VV; cat "$WS/requirements/gpu.txt"; cat "${requirements[@]}" "$WS/requirements/no-deps.txt" "$WS/scripts/fix_wheel_cmake.py"; } | sha256sum | cut -d' ' -f1)
if [[ -f "$STAMPS/pip" && "$(cat "$STAMPS/pip")" == "$pip_key" ]]; then
  log "python dependencies up to date ($mode)"
else
  if [[ -d "$VENV" && "$(cat "$STAMPS/mode" 2>/dev/null)" != "$mode" ]]; then
    log "recreating .venv for $mode"
    rm -rf "$VENV"
  fi
  if [[ ! -x "$VENV/bin/python" ]]; then
    venv_args=()
    [[ "$mode" == ros-* ]] && venv_args=(--system-site-packages)
    "$PYTHON" -m venv "${venv_args[@]}" "$VENV" || die "could not create $VENV"
  fi
  mkdir -p "$STAMPS"
  # colcon (on a ROS machine, run from the workspace root) must not crawl the venv's share/ folders.
  touch "$VENV/COLCON_IGNORE"
  log "installing pinned python dependencies ($mode); the first time takes a few minutes"
  pip_args=(--disable-pip-version-check --progress-bar off -q)
  "$VENV/bin/pip" install "${pip_args[@]}" "${requirements[@]/#/-r}" || die "pip install failed (see above)"
  "$VENV/bin/pip" install "${pip_args[@]}" --no-deps -r "$WS/requirements/no-deps.txt" || die "pip install --no-deps failed"
  if [[ "$gpu" == "1" ]]; then
    # onnxruntime and onnxruntime-gpu install the same module: keep only the GPU build.
    "$VENV/bin/pip" uninstall -y -q onnxruntime
    "$VENV/bin/pip" install "${pip_args[@]}" -r "$WS/requirements/gpu.txt" || die "pip install onnxruntime-gpu failed"
  fi
  if [[ "$mode" == "wheels" ]]; then
    "$VENV/bin/python" "$WS/scripts/fix_wheel_cmake.py" "$VENV"
  fi
  echo "$mode" > "$STAMPS/mode"
  echo "$pip_key" > "$STAMPS/pip"
  rm -f "$STAMPS/build"
fi

# --- 3. colcon build ---------------------------------------------------------------------------
# Build against the environment env.sh gives users, so what is built is what runs.
export HUMANEGO_SETUP=1
# shellcheck source=env.sh
set +u  # colcon's setup files read unset variables
source "$WS/scripts/env.sh"
set -u

base_paths=("$WS/src")
tf2_in_underlay=0
IFS=: read -r -a prefixes <<< "${AMENT_PREFIX_PATH:-}"
for prefix in "${prefixes[@]}"; do
  [[ "$prefix" == "$WS/install"* ]] && continue
  [[ -e "$prefix/share/ament_index/resource_index/packages/tf2_msgs" ]] && tf2_in_underlay=1
done
((tf2_in_underlay)) || base_paths+=("$WS/compat/tf2_msgs")

build_key=$( { cat "$STAMPS/pip"; echo "${base_paths[*]}";
  cd "$WS" && find src compat launch config urdf models -type f -not -path '*/__pycache__/*' -print0 2>/dev/null \
    | sort -z | xargs -0 sha256sum; } | sha256sum | cut -d' ' -f1)
if [[ -f "$STAMPS/build" && "$(cat "$STAMPS/build")" == "$build_key" && -f "$WS/install/local_setup.bash" ]]; then
  log "workspace build up to date"
else
  log "colcon build (${base_paths[*]#"$WS/"})"
  (cd "$WS" && colcon build --symlink-install --base-paths "${base_paths[@]}" \
      --event-handlers console_cohesion- summary+ \
      --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF) \
    || die "colcon build failed; the log is in $WS/log/latest_build"
  echo "$build_key" > "$STAMPS/build"
fi
log "done in $(( $(date +%s) - start )) s ($mode). Next: source scripts/env.sh"
