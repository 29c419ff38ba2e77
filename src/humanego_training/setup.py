from setuptools import find_packages, setup

package_name = "humanego_training"

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
    description="Offline preprocessing, training, evaluation and export of policies.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "train = humanego_training.train:main",
            "evaluate = humanego_training.evaluate:main",
            "export = humanego_training.export:main",
            "preprocess = humanego_training.preprocess:main",
            "hand_alignment = humanego_training.hand_alignment:main",
            "robot_episodes = humanego_training.robot_episodes:main",
        ],
    },
)
