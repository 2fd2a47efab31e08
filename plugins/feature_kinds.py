"""First-party feature kinds (registration only): ``cls``, ``cls4_avgpool``, ``cls_multiscale``, ``patch_tokens``,
``frame_patch_tokens``.

Their entries are :data:`dinobench.features.builtin.BUILTIN_FEATURE_KINDS`; the implementations live in
:mod:`dinobench.features.kinds`, named lazily so that ``dinobench list`` imports no torch.
"""

from __future__ import annotations

from dinobench.features.builtin import BUILTIN_FEATURE_KINDS
from dinobench.hookspecs import hookimpl
from dinobench.registry import FeatureKindRegistry


@hookimpl
def dinobench_register_feature_kinds(registry: FeatureKindRegistry) -> None:
    """Register the built-in kinds; ``cls`` can be cut from a cached ``cls4_avgpool`` entry."""
    for spec in BUILTIN_FEATURE_KINDS:
        registry.register(spec)
