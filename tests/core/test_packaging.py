"""Packaging: the root-level folders import as dinobench.<name> from a checkout, an editable
install and a wheel installed into a fresh virtualenv."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO

MAPPED = {"dinobench": "dinobench", "backbones": "dinobench.backbones", "heads": "dinobench.heads",
          "plugins": "dinobench.plugins"}
IMPORT_CHECK = ("import dinobench, dinobench.backbones, dinobench.heads, dinobench.plugins, dinobench.configs; "
                "print(dinobench.__file__); print(dinobench.backbones.__file__); "
                "print(list(dinobench.configs.__path__)[0])")


def test_every_package_directory_ships_without_a_hand_kept_list():
    """setup.py computes the package list from the tree; pyproject.toml keeps no list to forget a family in."""
    import runpy

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "packages" not in pyproject["tool"]["setuptools"] and "package-dir" not in pyproject["tool"]["setuptools"]
    build = runpy.run_path(str(REPO / "setup.py"), run_name="setup")
    listed = set(build["find_packages"]())
    found = set()
    for folder, dotted in MAPPED.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            found.add(".".join([dotted, *rel.parts]))
    assert found <= listed and {"dinobench.heads.mask2former", "dinobench.configs"} <= listed
    assert set(build["PACKAGE_DIR"]) == {*MAPPED.values(), "dinobench.configs"}


def test_source_checkout_without_install_imports_siblings(tmp_path):
    """A bare interpreter (no dinobench installed) run from the repo root."""
    base_python = getattr(sys, "_base_executable", sys.executable)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([base_python, "-c", IMPORT_CHECK], cwd=REPO, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    pkg, backbones, configs = proc.stdout.split()
    assert Path(pkg) == REPO / "dinobench" / "__init__.py"
    assert Path(backbones) == REPO / "backbones" / "__init__.py"
    assert Path(configs) == REPO / "configs"


def test_installed_environment_imports_siblings_from_elsewhere(tmp_path):
    """The test venv's install (editable in development) used from an unrelated cwd."""
    proc = subprocess.run([sys.executable, "-c", IMPORT_CHECK], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "backbones" in proc.stdout.split()[1]


def _site_packages(python: Path | str) -> str:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def _source_copy(dest: Path) -> Path:
    """The checkout's source files (tracked, or new and not ignored) copied to ``dest``: no build/ leftovers."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True)
    if listed.returncode != 0:  # not a git checkout (an sdist): copy everything but build products
        shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns("build", "dist", ".venv", "*.egg-info", ".git"))
        return dest
    for name in filter(None, listed.stdout.splitlines()):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.mark.slow
def test_wheel_in_a_fresh_venv(tmp_path):
    """`pip install <wheel>` into a new venv, then list and run from another cwd.

    By default the new venv sees the test venv's third-party packages through a ``.pth`` line
    (plain path, so the checkout's editable finder is *not* activated): pip resolves the wheel's
    requirements against them and installs nothing else, and ``pip check`` proves they are met.
    That spares a second 5.5 GB torch in the temp folder. ``DINOBENCH_WHEEL_TEST_FULL=1`` installs
    every dependency from the package index instead.
    """
    dist = tmp_path / "dist"
    # built from a copy of the source files: setuptools reuses a checkout's build/ folder, where a module deleted
    # from the source (a renamed plugin) would survive and ship in the wheel
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist),
                    str(_source_copy(tmp_path / "src"))], check=True, capture_output=True, text=True)
    (wheel,) = dist.glob("dinobench-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    stale = [n for n in names if n.startswith("dinobench/plugins/") and n.endswith(".py")
             and not (REPO / "plugins" / n.removeprefix("dinobench/plugins/")).is_file()]
    assert not stale, f"the wheel ships plugin modules the source no longer has: {stale}"
    for expected in ("dinobench/backbones/dinov3_vit.py", "dinobench/plugins/knn.py", "dinobench/heads/__init__.py",
                     "dinobench/configs/tasks/digits-knn.py", "dinobench/configs/_base_/protocols/knn.py"):
        assert expected in names, expected
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip_args = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    if os.environ.get("DINOBENCH_WHEEL_TEST_FULL") != "1":
        Path(_site_packages(venv / "bin" / "python"), "_outer_site_packages.pth").write_text(
            _site_packages(sys.executable) + "\n")
        pip_args += ["--force-reinstall", "--no-deps"]  # the test venv's (editable) dinobench is another install
    pip = subprocess.run([*pip_args, str(wheel)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-3000:]
    checked = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True)
    unmet = [line for line in checked.stdout.splitlines() if line.lower().startswith("dinobench ")]
    assert not unmet, unmet  # (the fresh venv's own old setuptools may upset torch's metadata: not ours)
    env = {**os.environ, "TQDM_DISABLE": "1"}
    env.pop("PYTHONPATH", None)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    listed = subprocess.run([str(venv / "bin" / "dinobench"), "list", "tasks"], cwd=workdir, capture_output=True,
                            text=True, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "digits-knn" in listed.stdout
    ran = subprocess.run([str(venv / "bin" / "dinobench"), "run", "--backbone", "vit_tiny", "--task", "digits-knn",
                          "--output", str(workdir / "out"), "--cfg-options", "backbone.embed_dim=64",
                          "backbone.depth=2", "backbone.num_heads=2"], cwd=workdir, capture_output=True, text=True,
                         env=env)
    assert ran.returncode == 0, ran.stderr
    assert len(list((workdir / "out").rglob("result.json"))) == 1
    where = subprocess.run([str(venv / "bin" / "python"), "-c", IMPORT_CHECK], cwd=workdir, capture_output=True,
                           text=True, env=env)
    assert where.returncode == 0, where.stderr
    assert str(venv) in where.stdout.split()[1]  # the wheel's copy, not the checkout
