"""The wheel: it ships every YAML config, and an install of it trains from outside the checkout.

The wheel is built from a copy of the source (the checkout's build/ stays untouched) with the
setuptools already installed (no network), and installed with ``--no-deps --no-index`` into a
fresh venv that sees this environment's packages through a ``.pth`` line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ("pyproject.toml", "setup.py", "README.md", "LICENSE", "rlplast", "configs")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rlplast wheel built from a copy of the checkout."""
    src = tmp_path_factory.mktemp("src")
    for name in SOURCE:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-q",
        "-w",
        out,
        src,
    ]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    (whl,) = out.glob("rlplast-*.whl")
    return whl


def test_wheel_holds_every_config_and_the_license(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted(p.relative_to(ROOT / "configs").as_posix() for p in (ROOT / "configs").glob("*/*.yaml"))
    assert {"tasks/ant.yaml", "methods/ppo.yaml", "experiments/demo.yaml"} <= set(configs)
    missing = [c for c in configs if f"rlplast/configs/{c}" not in names]
    assert not missing, f"configs missing from the wheel: {missing}"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "rlplast/envs/vec.py" in names and not any(n.startswith("tests/") for n in names)


def test_installed_wheel_trains_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    (site,) = (venv / "lib").glob("python*/site-packages")
    # the dependencies (torch, mujoco, ...) from this environment, after the venv's own packages
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = venv / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel]
    subprocess.run(install, check=True, capture_output=True, text=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run(
        [python, "-c", "import rlplast, rlplast.config_files as c; print(rlplast.__file__); print(c.CONFIG_DIR)"],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where
    train = [venv / "bin" / "rlplast", "train", "--task", "slippery_ant", "--steps", "2048", "--backend", "cpu"]
    done = subprocess.run(train, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (work / "results" / "slippery_ant" / "ppo" / "seed0" / "done.json").is_file()
