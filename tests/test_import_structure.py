"""The modules that issue-era import circles tied together load apart (each in a fresh process)."""

import subprocess
import sys

import pytest

PAIRS = [
    ("rlplast.sb3.trainer", "rlplast.runner"),  # both trainers share rlplast.run_support instead
    ("rlplast.runner", "rlplast.sb3.trainer"),
    ("rlplast.envs.vec", "rlplast.envs.cpu_mujoco"),  # backends come through rlplast.envs.factory
]


@pytest.mark.parametrize(("module", "absent"), PAIRS)
def test_importing_a_module_does_not_load_the_other(module, absent):
    code = f"import sys, {module}; print({absent!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
