"""Style is checked like everything else: ruff over all Python of the workspace."""

import subprocess


def test_ruff_clean(workspace):
    out = subprocess.run(["ruff", "check", "--no-cache", "."], cwd=workspace, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
