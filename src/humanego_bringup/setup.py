import os

from setuptools import find_packages, setup

package_name = "humanego_bringup"
# launch/, config/, urdf/ and models/ live once at the workspace root and are installed into this
# package's share folder, where `ros2 launch humanego_bringup ...` and the nodes look them up.
WORKSPACE_DIRS = ["launch", "config", "urdf", "models"]
here = os.path.dirname(os.path.abspath(__file__))
root = os.path.relpath(os.path.join(here, "..", ".."), here)


def share_files(top: str) -> list[tuple[str, list[str]]]:
    entries = []
    for dirpath, _, filenames in os.walk(os.path.join(root, top)):
        files = [os.path.join(dirpath, f) for f in sorted(filenames)]
        if files:
            rel = os.path.relpath(dirpath, root)
            entries.append((os.path.join("share", package_name, rel), files))
    return entries


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ] + [entry for top in WORKSPACE_DIRS for entry in share_files(top)],
    install_requires=["setuptools"],
    entry_points={
        "console_scripts": [
            "camera_extrinsics = humanego_bringup.camera_extrinsics_node:main",
        ],
    },
    zip_safe=True,
    maintainer="HumanEgo maintainers",
    maintainer_email="humanego@example.org",
    description="Launch description, configuration, robot descriptions, shipped models, humanego CLI.",
    license="Apache-2.0",
)
