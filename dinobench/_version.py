"""The installed dinobench version, in a module of its own so that low layers (results, feature keys) can read it
without importing the package (whose ``__init__`` reaches the runner: an import cycle)."""

from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("dinobench")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
