"""Package lookup in the ament index without ament_index_python's ROS install assumptions.

The same search ``ros2 run`` does: the first prefix in AMENT_PREFIX_PATH that registers the
package under share/ament_index/resource_index/packages is the package's prefix.
"""

from __future__ import annotations

import os
from pathlib import Path


class PackageNotFoundError(LookupError):
    pass


def prefixes() -> list[Path]:
    return [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]


def package_names() -> list[str]:
    names = set()
    for prefix in prefixes():
        index = prefix / "share" / "ament_index" / "resource_index" / "packages"
        if index.is_dir():
            names.update(p.name for p in index.iterdir())
    return sorted(names)


def package_prefix(package: str) -> Path:
    for prefix in prefixes():
        if (prefix / "share" / "ament_index" / "resource_index" / "packages" / package).is_file():
            return prefix
    if not prefixes():
        raise PackageNotFoundError(f"package '{package}' not found: AMENT_PREFIX_PATH is empty "
                                   "(run 'source scripts/env.sh')")
    raise PackageNotFoundError(f"package '{package}' not found (is it built? run 'make setup')")


def package_share(package: str) -> Path:
    return package_prefix(package) / "share" / package


def executables(package: str) -> list[str]:
    lib = package_prefix(package) / "lib" / package
    if not lib.is_dir():
        return []
    return sorted(p.name for p in lib.iterdir() if p.is_file() and os.access(p, os.X_OK))


def executable_path(package: str, executable: str) -> Path:
    path = package_prefix(package) / "lib" / package / executable
    if not (path.is_file() and os.access(path, os.X_OK)):
        available = ", ".join(executables(package)) or "none"
        raise PackageNotFoundError(f"no executable '{executable}' in package '{package}' "
                                   f"(available: {available})")
    return path


RESOURCE_PACKAGE = "humanego_bringup"


def resource_path(*parts: str) -> Path:
    """A file under the workspace's installed resources (``launch config urdf models``).

    They live in the share folder of humanego_bringup (DESIGN.md section 2), so ``ros2 launch`` and
    every package find the same single copy.
    """
    path = package_share(RESOURCE_PACKAGE).joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (a resource missing from the install? run 'make setup')")
    return path
