"""The workspace is a real ROS 2 workspace: package types, conventions, installed share files, pins."""

import os
import re
import subprocess
import xml.etree.ElementTree as ET

import pytest
from catkin_pkg import package as catkin_package

PACKAGE_DIRS = ["src/humanego_interfaces", "src/humanego_core", "src/humanego_ros", "src/humanego_sim",
                "src/humanego_drivers", "src/humanego_perception", "src/humanego_policy",
                "src/humanego_control", "src/humanego_training", "src/humanego_bringup"]


def colcon_list(workspace, *args):
    out = subprocess.run(["colcon", "list", *args], cwd=workspace, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return {line.split("\t")[0]: (line.split("\t")[1], line.split("\t")[2]) for line in out.stdout.splitlines()}


def test_colcon_sees_every_package_with_a_ros_build_type(workspace):
    found = colcon_list(workspace, "--base-paths", "src", "compat/tf2_msgs")
    on_disk = sorted(str(p.parent.relative_to(workspace)) for p in (workspace / "src").glob("*/package.xml"))
    assert on_disk == sorted(PACKAGE_DIRS)
    assert {path for path, _ in found.values()} == set(PACKAGE_DIRS) | {"compat/tf2_msgs"}
    for name, (path, build_type) in found.items():
        expected = "(ros.ament_cmake)" if (workspace / path / "CMakeLists.txt").exists() else "(ros.ament_python)"
        assert build_type == expected, f"{name}: {build_type} (a rejected package.xml makes colcon say 'python')"


def test_plain_colcon_in_the_root_skips_compat_and_venv(workspace):
    found = colcon_list(workspace)
    assert "tf2_msgs" not in found, "compat/tf2_msgs must never shadow a real tf2_msgs on a ROS machine"
    assert set(found) == {os.path.basename(p) for p in PACKAGE_DIRS}


@pytest.mark.parametrize("pkg_dir", PACKAGE_DIRS)
def test_package_conventions(workspace, pkg_dir):
    root = workspace / pkg_dir
    name = root.name
    catkin_package.parse_package(root / "package.xml").validate()  # what colcon-ros needs to see a ROS package
    xml = ET.parse(root / "package.xml").getroot()
    assert xml.get("format") == "3" and xml.findtext("name") == name
    assert xml.findtext("description").strip() and xml.findtext("license")
    build_type = xml.find("export/build_type").text
    if build_type == "ament_python":
        assert (root / "resource" / name).is_file()
        cfg = (root / "setup.cfg").read_text()
        assert f"script_dir=$base/lib/{name}" in cfg and f"install_scripts=$base/lib/{name}" in cfg
        init = (root / name / "__init__.py").read_text()
        assert init.startswith('"""'), f"{name}/__init__.py must describe the package's room in its docstring"
    else:
        assert build_type == "ament_cmake" and (root / "CMakeLists.txt").is_file()


@pytest.mark.parametrize("folder", ["launch", "config", "urdf", "models"])
def test_root_folders_are_installed_into_bringup_share(workspace, folder):
    share = subprocess.run(["humanego", "pkg", "prefix", "humanego_bringup"], capture_output=True, text=True,
                           timeout=60).stdout.strip()
    installed = os.path.join(share, "share", "humanego_bringup", folder)
    for src in (workspace / folder).rglob("*"):
        if src.is_file():
            dst = os.path.join(installed, str(src.relative_to(workspace / folder)))
            assert os.path.isfile(dst), f"{src} is not installed at {dst}"
            assert open(dst, "rb").read() == src.read_bytes()


def test_compat_tf2_msgs_refuses_to_shadow_a_real_one(workspace, tmp_path):
    fake = tmp_path / "ros" / "share" / "ament_index" / "resource_index" / "packages"
    fake.mkdir(parents=True)
    (fake / "tf2_msgs").write_text("")
    env = dict(os.environ, AMENT_PREFIX_PATH=f"{tmp_path / 'ros'}:{os.environ['AMENT_PREFIX_PATH']}")
    out = subprocess.run(["cmake", "-S", str(workspace / "compat" / "tf2_msgs"), "-B", str(tmp_path / "build")],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert f"A real tf2_msgs is installed in {tmp_path / 'ros'}" in " ".join(out.stderr.split())


def test_dependencies_are_pinned_in_one_place(workspace):
    req_dir = workspace / "requirements"
    for path in req_dir.glob("*.txt"):
        for line in path.read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][\w.+\-]*", line), f"{path.name}: unpinned '{line}'"
    dockerfile = (workspace / "docker" / "Dockerfile").read_text()
    assert "requirements/" in dockerfile and "make setup" in dockerfile, \
        "docker/ must install through make setup and requirements/ so versions cannot drift"
    assert not re.search(r"pip install[^\n]*==", dockerfile), "versions belong in requirements/, not the Dockerfile"


def declared_dependencies(workspace) -> dict[str, set[str]]:
    """package -> the workspace packages its package.xml names (any kind of dependency)."""
    names = {os.path.basename(p) for p in PACKAGE_DIRS}
    return {os.path.basename(d): {e.text for e in ET.parse(workspace / d / "package.xml").getroot()
                                  if e.tag.endswith("depend") and e.text in names}
            for d in PACKAGE_DIRS}


def test_package_imports_follow_the_declared_dependencies_without_cycles(workspace):
    """A package (its modules and tests) imports only itself and what its package.xml reaches: colcon orders
    builds and tests by those declarations, and a cycle leaves it no order."""
    declared = declared_dependencies(workspace)

    def reach(name, path=()):
        assert name not in path, f"package dependency cycle: {' -> '.join((*path, name))}"
        return {name}.union(*(reach(dep, (*path, name)) for dep in declared[name]))

    imported = re.compile(r"^\s*(?:from|import)\s+(humanego_\w+)", re.MULTILINE)
    for name in declared:
        allowed = reach(name)
        for source in (workspace / "src" / name).rglob("*.py"):
            stray = set(imported.findall(source.read_text())) - allowed
            assert not stray, (f"{source.relative_to(workspace)} imports {sorted(stray)}, "
                               f"which the package.xml of {name} does not reach")
