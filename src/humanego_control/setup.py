from setuptools import find_packages, setup

package_name = "humanego_control"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="HumanEgo maintainers",
    maintainer_email="humanego@example.org",
    description="IK/retargeting, safe trajectory controller, operator heartbeat, visualisation.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "ik_retarget = humanego_control.ik_retarget_node:main",
            "trajectory_controller = humanego_control.trajectory_controller_node:main",
            "heartbeat = humanego_control.heartbeat_node:main",
            "extrinsics_check = humanego_control.extrinsics_check_node:main",
            "draw_extrinsics = humanego_control.extrinsics_check:main",
            "hand_eye = humanego_control.hand_eye:main",
        ],
    },
)
