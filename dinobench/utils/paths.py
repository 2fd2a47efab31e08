"""Where shipped data files live, in a source checkout and in an installed wheel alike."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the dinobench package folder


def configs_dir() -> Path:
    """The ``configs/`` folder (``dinobench/configs`` when installed, ``<repo>/configs`` in a checkout)."""
    for candidate in (PACKAGE_DIR / "configs", PACKAGE_DIR.parent / "configs"):
        if (candidate / "tasks").is_dir():
            return candidate
    raise FileNotFoundError(f"dinobench configs not found next to {PACKAGE_DIR}; reinstall dinobench")


def repo_root() -> Path | None:
    """The source checkout root when running from one (for the git commit in provenance)."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() and (root / "configs").is_dir() else None


#: results folder when neither ``--output`` nor ``$DINOBENCH_OUTPUT`` says
DEFAULT_OUTPUT = "outputs"


def output_root(chosen: str | Path | None = None) -> Path:
    """The results folder: ``chosen``, else ``$DINOBENCH_OUTPUT``, else ``outputs``."""
    import os

    return Path(chosen or os.environ.get("DINOBENCH_OUTPUT", DEFAULT_OUTPUT))


def check_writable(folder: str | Path, what: str, fix: str) -> Path:
    """Create ``folder`` if needed and prove it takes a file, before any compute; else one-line DataError.

    ``what`` names the folder's role (``results folder``), ``fix`` says what to pass instead.
    """
    import tempfile

    from dinobench.errors import DataError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise DataError(f"{folder}: {what} is not writable ({exc.strerror or exc}); {fix}") from None
    return folder


def default_results() -> list[str]:
    """Where ``report`` and ``check`` look for results when given none: ``$DINOBENCH_OUTPUT`` or ``./outputs``."""
    return [os.environ.get("DINOBENCH_OUTPUT", DEFAULT_OUTPUT)]
