"""humanego_core must never import rclpy: it runs offline, in training, on machines without ROS."""

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import humanego_core

CORE_DIR = Path(humanego_core.__file__).resolve().parent
FORBIDDEN = ("rclpy", "rosidl", "humanego_ros", "humanego_interfaces")


def test_no_forbidden_import_statement():
    offenders = []
    for path in CORE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert not offenders, offenders


def test_every_module_imports_with_rclpy_unavailable():
    modules = [m.name for m in pkgutil.walk_packages([str(CORE_DIR)], "humanego_core.")]
    assert modules, "no humanego_core modules found"
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {FORBIDDEN!r}: raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for m in {modules!r}: __import__(m)\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr
