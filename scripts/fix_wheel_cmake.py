"""Point the ROS wheels' exported CMake files at this venv's Python and numpy headers.

The PyPI ROS 2 wheels were built in a manylinux image; their ``share/*/cmake/*.cmake`` files keep
that image's include paths (``/opt/python/cp311-cp311/...``) and CMake's generate step fails with
"includes non-existent path" when a package (our interfaces) links against them. Idempotent.
Usage: python fix_wheel_cmake.py VENV
"""

import glob
import os
import re
import sys
import sysconfig

import numpy


def main(venv: str) -> int:
    replacements = {
        re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_core/include"):
            numpy.get_include(),
        re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+"): sysconfig.get_paths()["include"],
    }
    changed = 0
    for path in glob.glob(os.path.join(venv, "share", "*", "cmake", "*.cmake")):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        fixed = text
        for pattern, target in replacements.items():
            fixed = pattern.sub(target, fixed)
        if fixed != text:
            with open(path, "w", encoding="utf-8") as f:
                f.write(fixed)
            changed += 1
    print(f"[setup] wheel CMake files fixed: {changed}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
