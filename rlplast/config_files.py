"""Where the YAML configs live, and how a task, method or experiment name finds its file.

The configs (``tasks/``, ``methods/``, ``experiments/``) ship inside the package as
``rlplast/configs`` (package data, see setup.py), so an installed rlplast finds them wherever it
runs; in a source checkout they are the checkout's ``configs/`` folder. A name is looked up
there; a path to a YAML file of the user's is read as it is.
"""

from __future__ import annotations

from pathlib import Path

KINDS = ("tasks", "methods", "experiments")
_PACKAGE = Path(__file__).resolve().parent


def config_dir() -> Path:
    """The folder holding ``tasks/``, ``methods/`` and ``experiments/``: the installed package's
    copy if there is one, else the source checkout's ``configs/``."""
    installed = _PACKAGE / "configs"
    return installed if installed.is_dir() else _PACKAGE.parent / "configs"


CONFIG_DIR = config_dir()


class UnknownConfigError(ValueError):
    """A name that is neither a YAML file nor a config of its kind; the message lists the names."""


def available(kind: str) -> list[str]:
    """Names of the config files of ``kind`` ("tasks", "methods" or "experiments")."""
    return sorted(p.stem for p in (CONFIG_DIR / kind).glob("*.yaml"))


def resolve(name: str | Path, kind: str) -> Path:
    """The YAML file of ``name``: an existing ``.yaml``/``.yml`` path, else ``<kind>/<name>.yaml``
    of the shipped configs. A path such as ``configs/experiments/demo.yaml`` that does not exist
    where rlplast runs (outside the checkout) falls back to the shipped file of the same name.

    Raises:
        UnknownConfigError: neither exists (the message lists the available names).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown config kind {kind!r}; allowed: {', '.join(KINDS)}")
    path = Path(name)
    is_yaml = path.suffix in (".yaml", ".yml")
    if is_yaml and path.is_file():
        return path
    shipped = CONFIG_DIR / kind / f"{path.stem if is_yaml else name}.yaml"
    bare_name = not is_yaml and path.name == str(name)
    if (bare_name or (is_yaml and path.parent.name == kind)) and shipped.is_file():
        return shipped
    what = f"{kind[:-1]} file {str(name)!r} does not exist" if is_yaml else f"unknown {kind[:-1]} {str(name)!r}"
    raise UnknownConfigError(f"{what}; available: {', '.join(available(kind)) or 'none'}")
