"""Shared fixtures: offline, quiet, tiny models."""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# the same numbers on every CPU kind: bf16 autocast only where a test asks for it (auto picks it on AMX CPUs)
os.environ.setdefault("DINOBENCH_PRECISION", "float32")

import atexit  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

#: the repository root and the shared golden fixtures (tests live in tests/<family>/)
REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"

# never ~/.cache in tests: a forward-counting test must not see a hit left by an earlier session;
# removed at exit so that repeated runs do not fill the disk
os.environ["DINOBENCH_CACHE"] = tempfile.mkdtemp(prefix="dinobench-test-cache-")
atexit.register(shutil.rmtree, os.environ["DINOBENCH_CACHE"], ignore_errors=True)

import pytest  # noqa: E402

#: depth-2, dim-64 ViT used throughout the tests (as --cfg-options and as create_backbone kwargs)
TINY = {"embed_dim": 64, "depth": 2, "num_heads": 2}
TINY_OPTIONS = [f"backbone.{k}={v}" for k, v in TINY.items()]


@pytest.fixture
def tiny_kwargs() -> dict:
    return dict(TINY)


@pytest.fixture
def output(tmp_path, monkeypatch):
    """A run output folder; head-training run folders go under ``<output>/.runs`` (``DINOBENCH_OUTPUT``)."""
    out = tmp_path / "out"
    monkeypatch.setenv("DINOBENCH_OUTPUT", str(out))
    return out


@pytest.fixture
def run_cli(capsys):
    """Call ``dinobench`` in-process; returns (exit code, stdout, stderr)."""
    from dinobench.cli import main

    def _run(*argv: str):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse usage errors and --help/--version
            code = exc.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run


@contextmanager
def registered(plugin, name: str):
    """Put a plugin object on the live plugin manager (registries rebuilt) for the ``with`` block: the same
    hooks an installed entry point uses; unregistered afterwards."""
    from dinobench.plugin_manager import get_plugin_manager, get_registries

    pm = get_plugin_manager()
    pm.register(plugin, name=name)
    get_registries.cache_clear()
    try:
        yield plugin
    finally:
        pm.unregister(plugin)
        get_registries.cache_clear()
