# Source me: `source scripts/env.sh` gives a shell with the workspace sourced and `humanego` on PATH.
# Works with the PyPI ROS 2 wheels (no ROS installed) and on top of a system ROS 2 (Jazzy/Kilted).

_he_ws="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
if [[ ! -x "$_he_ws/.venv/bin/python" ]]; then
  echo "humanego: $_he_ws/.venv does not exist; run 'make setup' first" >&2
  return 1 2>/dev/null || exit 1
fi
_he_mode="$(cat "$_he_ws/.venv/.humanego/mode" 2>/dev/null || echo wheels)"

if [[ "$_he_mode" == ros-* && -z "${AMENT_PREFIX_PATH:-}" ]]; then
  # shellcheck disable=SC1090
  source "/opt/ros/${_he_mode#ros-}/setup.bash"
fi
# shellcheck disable=SC1091
VIRTUAL_ENV_DISABLE_PROMPT=${VIRTUAL_ENV_DISABLE_PROMPT:-} source "$_he_ws/.venv/bin/activate"

if [[ "$_he_mode" == "wheels" ]]; then
  # The wheels' ament index and shared libraries live in the venv. Setting the library path here
  # (instead of ros_wheels_bootstrapper re-executing every Python start) also keeps child
  # processes, which inherit _ROS_WHEELS_BOOTSTRAP_COMPLETE, able to import rclpy.
  case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;; esac
  case ":${CMAKE_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *) export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" ;; esac
  _he_libs="$VIRTUAL_ENV/lib"
  for _he_d in "$VIRTUAL_ENV"/lib/python3.*/site-packages/ros_*.libs; do
    [[ -d "$_he_d" ]] && _he_libs="$_he_libs:$_he_d"
  done
  case ":${LD_LIBRARY_PATH:-}:" in *":$VIRTUAL_ENV/lib:"*) ;; *) export LD_LIBRARY_PATH="$_he_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac
  export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
fi

if [[ -f "$_he_ws/install/local_setup.bash" ]]; then
  # shellcheck disable=SC1091
  source "$_he_ws/install/local_setup.bash"
elif [[ -z "${HUMANEGO_SETUP:-}" ]]; then
  echo "humanego: the workspace is not built; run 'make setup'" >&2
fi

case ":$PATH:" in *":$_he_ws/scripts/bin:"*) ;; *) export PATH="$_he_ws/scripts/bin:$PATH" ;; esac
export HUMANEGO_WS="$_he_ws"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# Images cross processes: Fast DDS's large-data transport (TCP + SHM) delivers them reliably at rate.
export FASTDDS_BUILTIN_TRANSPORTS="${FASTDDS_BUILTIN_TRANSPORTS:-LARGE_DATA}"
# Headless rendering for MuJoCo unless the user chose a backend (egl on a GPU machine).
export MUJOCO_GL="${MUJOCO_GL:-osmesa}"
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-$MUJOCO_GL}"
unset _he_ws _he_mode _he_libs _he_d
