"""Features: registered kinds, extraction and the on-disk cache; one place for every feature protocol.

- :mod:`~dinobench.features.kinds`: the built-in kinds (``cls``, ``cls4_avgpool``, ``patch_tokens``);
  kinds are a registry filled through the ``dinobench_register_feature_kinds`` hook, so a plugin adds
  its own (``compute(model, images) -> Tensor [B, *shape]``, optionally cut from another kind);
- :mod:`~dinobench.features.extract`: :func:`load_or_extract` / :func:`extract_features` (batched,
  ``inference_mode``, torchrun-sharded, resumable);
- :mod:`~dinobench.features.cache`: one entry (chunks, ``[N, *shape]`` arrays read back memory-mapped,
  float32 or float16, per-sample targets, manifest with sha256, flock, derivation);
- :mod:`~dinobench.features.keys` and :mod:`~dinobench.features.targets`: keys, locations, targets.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: name -> submodule; resolved on first use, so that ``dinobench.features.builtin`` (the built-in kinds' table,
#: read by the plugin that registers them) imports no torch and ``dinobench list`` stays fast
_EXPORTS = {
    "FeatureCache": "cache", "compute_features": "extract", "extract_features": "extract",
    "feature_kind": "extract", "load_or_extract": "extract", "DEFAULT_CHUNK_SIZE": "keys",
    "FEATURE_CODE_VERSION": "keys", "FEATURE_DTYPES": "keys", "backbone_key_payload": "keys", "cache_key": "keys",
    "cache_root": "keys", "chunk_plan": "keys", "entry_payload": "keys", "FeatureCut": "kinds",
    "FeatureSet": "targets",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from dinobench.features.cache import FeatureCache
    from dinobench.features.extract import compute_features, extract_features, feature_kind, load_or_extract
    from dinobench.features.keys import (DEFAULT_CHUNK_SIZE, FEATURE_CODE_VERSION, FEATURE_DTYPES,
                                         backbone_key_payload, cache_key, cache_root, chunk_plan, entry_payload)
    from dinobench.features.kinds import FeatureCut
    from dinobench.features.targets import FeatureSet


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dinobench.features' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"dinobench.features.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
