from setuptools import find_packages, setup

package_name = "humanego_perception"

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
    description="Arm masking, inpainting, virtual gripper, hand/object state estimation.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "state_estimator = humanego_perception.state_estimator_node:main",
            "clean_view = humanego_perception.clean_view_node:main",
        ],
    },
)
