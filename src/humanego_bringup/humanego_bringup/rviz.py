"""The RViz configuration of the robot graph (``config/rviz/robot.rviz``) resolved for one launch.

The installed file names graph topics relative to the robot namespace (``camera/image_clean``,
``viz/predicted_path``, ...) and leaves the RobotModel's URDF empty. :func:`render_config` writes a copy
with every relative topic made absolute under the launch's namespace and the robot's shipped URDF filled
in, which rviz2 is then started with (``-d``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml

from humanego_core.ament_index import resource_path

TEMPLATE = ("config", "rviz", "robot.rviz")


def resolve_topic(topic: str, namespace: str) -> str:
    """A relative topic name under ``namespace`` ('' or '/ns'); absolute names stay as they are."""
    return topic if topic.startswith("/") else f"{namespace}/{topic}"


def resolved_config(template: dict, namespace: str, urdf: Path) -> dict:
    """The template with relative topics resolved and the RobotModel reading ``urdf``."""
    displays = template["Visualization Manager"]["Displays"]
    for display in displays:
        for key in ("Topic", "Description Topic"):
            if isinstance(display.get(key), dict) and display[key].get("Value"):
                display[key]["Value"] = resolve_topic(display[key]["Value"], namespace)
        if display.get("Class") == "rviz_default_plugins/RobotModel":
            display["Description File"] = str(urdf)
    return template


def render_config(namespace: str, robot: str) -> Path:
    """Write the resolved configuration for ``namespace`` and ``robot`` and return its path.

    The file goes to a per-user folder in the temporary directory, one per namespace, overwritten at each
    launch (rviz2 reads it once at start).
    """
    template = yaml.safe_load(resource_path(*TEMPLATE).read_text(encoding="utf-8"))
    config = resolved_config(template, namespace, resource_path("urdf", f"{robot}.urdf"))
    folder = Path(tempfile.gettempdir()) / f"humanego_rviz_{os.getuid()}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"robot{namespace.replace('/', '_')}.rviz"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
