"""Source-checkout support: import the root-level folders as ``dinobench.<name>``.

The repository keeps ``backbones/``, ``heads/``, ``plugins/`` and ``configs/`` beside the
``dinobench/`` package. Installed distributions (wheel or editable) map them into the package
with setuptools' ``package-dir``. Code run from the repository root (``pytest``, ``python -m``)
imports ``./dinobench`` directly, whose ``__path__`` does not contain those folders; this finder
maps exactly those names to the sibling folders, and only when the package itself lacks them.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

SIBLING_PACKAGES = ("backbones", "heads", "plugins", "configs")


class _SiblingFolderFinder(importlib.abc.MetaPathFinder):
    """Resolve ``dinobench.<sibling>[.sub...]`` to ``<repo>/<sibling>/...``."""

    def __init__(self, package_dir: Path) -> None:
        self.package_dir = package_dir
        self.repo_root = package_dir.parent

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102 - importlib protocol
        parts = fullname.split(".")
        if len(parts) != 2 or parts[0] != "dinobench" or parts[1] not in SIBLING_PACKAGES:
            return None  # deeper modules are found through the package's own __path__
        if (self.package_dir / parts[1]).exists():
            return None  # an installed layout: the normal machinery finds it
        folder = self.repo_root / parts[1]
        init = folder / "__init__.py"
        if init.is_file():
            return importlib.util.spec_from_file_location(
                fullname, init, submodule_search_locations=[str(folder)]
            )
        if folder.is_dir():  # data-only folder (configs/): a namespace package
            spec = importlib.machinery.ModuleSpec(fullname, None, is_package=True)
            spec.submodule_search_locations = [str(folder)]
            return spec
        return None


def install(package_dir: Path) -> None:
    """Register the finder once, if this is a source checkout (siblings exist, not installed)."""
    repo_root = package_dir.parent
    is_checkout = (repo_root / "pyproject.toml").is_file() and (repo_root / "backbones").is_dir()
    if not is_checkout or (package_dir / "backbones").exists():
        return
    if any(isinstance(f, _SiblingFolderFinder) for f in sys.meta_path):
        return
    sys.meta_path.append(_SiblingFolderFinder(package_dir))
