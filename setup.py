"""Build script for what pyproject.toml cannot say: the package list, computed from the source tree.

The design card keeps backbones/, heads/, plugins/ and configs/ at the repository root but they import as
dinobench.backbones, dinobench.heads, dinobench.plugins and dinobench.configs (README, "Development notes:
package layout"). Every folder with an ``__init__.py`` under those roots is a package, so a new family's
subpackage ships without editing a list.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
#: import name -> folder of the package roots (subpackages map to their subfolders)
PACKAGE_DIR = {"dinobench": "dinobench", "dinobench.backbones": "backbones", "dinobench.heads": "heads",
               "dinobench.plugins": "plugins", "dinobench.configs": "configs"}


def find_packages() -> list[str]:
    """Every package under the roots (``dinobench.configs`` is a data-only namespace package)."""
    found = {"dinobench.configs"}
    for dotted, folder in PACKAGE_DIR.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([dotted, *rel.parts]))
    return sorted(found)


if __name__ == "__main__":
    from setuptools import setup

    setup(package_dir=PACKAGE_DIR, packages=find_packages())
