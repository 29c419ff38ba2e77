from setuptools import find_packages, setup

package_name = "humanego_policy"

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
    description="Policies (flow matching, ACT), runtimes and the policy node.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "policy = humanego_policy.policy_node:main",
        ],
    },
)
