"""The package list, which pyproject.toml cannot express: rlplast's modules plus the checkout's
configs/ folder (tasks/, methods/, experiments/), shipped inside the package as ``rlplast/configs``
so that an installed rlplast finds its YAMLs (``rlplast.config_files`` looks there first)."""

from pathlib import Path

from setuptools import find_packages, setup

# each configs/ subfolder is a data-only package (setuptools warns about data folders it is not told of)
CONFIG_KINDS = sorted(d.name for d in Path("configs").iterdir() if d.is_dir())
CONFIG_PACKAGES = ["rlplast.configs", *(f"rlplast.configs.{kind}" for kind in CONFIG_KINDS)]

setup(
    packages=[*find_packages(include=["rlplast", "rlplast.*"]), *CONFIG_PACKAGES],
    package_dir={"rlplast.configs": "configs"},
    package_data={name: ["*.yaml"] for name in CONFIG_PACKAGES},
)
