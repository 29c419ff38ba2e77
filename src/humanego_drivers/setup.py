from setuptools import find_packages, setup

package_name = "humanego_drivers"

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
    description="Camera source nodes: Aria, RealSense, recordings.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "realsense_source = humanego_drivers.realsense_node:main",
            "aria_source = humanego_drivers.aria_node:main",
            "aria_live = humanego_drivers.aria_live_node:main",
            "recording_source = humanego_drivers.recording_node:main",
        ],
    },
)
