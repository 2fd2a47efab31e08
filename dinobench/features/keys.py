"""Feature-cache keys and locations: what identifies an entry, where it lives, how a split is chunked."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from dinobench._version import __version__
from dinobench.errors import ConfigError
from dinobench.utils.hashing import payload_sha256

#: bump when a change in :mod:`dinobench.features` or in a backbone's forward changes the features produced
FEATURE_CODE_VERSION = "2"  # 2: the classification eval transform resizes uint8 tensors, as the official one
#: rows per cache chunk: the unit of streaming, resume and distributed sharding
DEFAULT_CHUNK_SIZE = 4096
#: storage dtypes of an entry; float32 is the default and stays out of the key (the keys of entries
#: written before fp16 storage existed are unchanged)
FEATURE_DTYPES = ("float32", "float16")


def chunk_plan(num_rows: int, chunk_size: int) -> list[tuple[int, int]]:
    """Row ranges ``[start, end)`` covering ``num_rows`` rows, ``chunk_size`` rows each (last may be shorter)."""
    if chunk_size < 1:
        raise ConfigError(f"features.chunk_size must be a positive integer, got {chunk_size}")
    return [(start, min(start + chunk_size, num_rows)) for start in range(0, num_rows, chunk_size)]


def check_dtype(dtype: str) -> str:
    """``dtype`` if it is a storage dtype the cache supports, else a one-line :class:`ConfigError`."""
    if dtype not in FEATURE_DTYPES:
        raise ConfigError(f"features dtype {dtype!r} is not supported; use one of {', '.join(FEATURE_DTYPES)}")
    return dtype


def cache_root(features_cfg: dict[str, Any] | None = None) -> Path:
    """Cache folder: ``features.cache_dir``, else ``$DINOBENCH_CACHE``, else
    ``${XDG_CACHE_HOME:-~/.cache}/dinobench/features``."""
    configured = (features_cfg or {}).get("cache_dir") or os.environ.get("DINOBENCH_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dinobench" / "features"


def backbone_key_payload(backbone: str, weights_sha256: str | None, seed: int, overrides: dict[str, Any],
                         transform: dict[str, Any], mean: Any, std: Any, precision: str,
                         identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run-wide part of a feature-cache key: what produced the model and what the images go through.

    ``identity``: the registered backbone's factory, default arguments and providing plugin/package.
    """
    if weights_sha256:
        weights: dict[str, Any] = {"sha256": weights_sha256}
    else:  # random init: the seed and the init code (torch version) make the weights
        weights = {"random_init_seed": int(seed), "torch": torch.__version__}
    return {"feature_code_version": FEATURE_CODE_VERSION, "dinobench_version": __version__,
            "backbone": {"name": backbone, "overrides": dict(overrides), "weights": weights,
                         "identity": dict(identity or {})},
            "transform": {**dict(transform), "mean": [float(m) for m in mean], "std": [float(s) for s in std]},
            "precision": precision}


def entry_payload(payload: dict[str, Any], kind: str, dtype: str = "float32") -> dict[str, Any]:
    """The key payload of one entry: ``payload`` plus the kind, plus the dtype unless float32."""
    entry = {**payload, "kind": kind}
    if check_dtype(dtype) != "float32":
        entry["dtype"] = dtype
    return entry


def cache_key(payload: dict[str, Any]) -> str:
    """Hex sha256 of the canonical JSON of ``payload``."""
    return payload_sha256(payload)


def canonical(payload: Any) -> Any:
    """``payload`` as it reads back from JSON (tuples become lists, keys strings)."""
    return json.loads(json.dumps(payload, sort_keys=True, default=str))
