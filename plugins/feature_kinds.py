"""First-party feature kinds (registration only): ``cls``, ``cls4_avgpool``, ``cls_multiscale``, ``patch_tokens``.

The implementations live in :mod:`dinobench.features.kinds`; they are named lazily so that
``dinobench list`` imports no torch.
"""

from __future__ import annotations

from dinobench.hookspecs import hookimpl
from dinobench.registry import FeatureKindRegistry

_KINDS = "dinobench.features.kinds"


@hookimpl
def dinobench_register_feature_kinds(registry: FeatureKindRegistry) -> None:
    """Register the built-in kinds; ``cls`` can be cut from a cached ``cls4_avgpool`` entry."""
    registry.add("cls", f"{_KINDS}:cls_token", cut_from={"cls4_avgpool": f"{_KINDS}:cut_cls_from_cls4_avgpool"},
                 description="normalised CLS token x_norm_clstoken [D] (kNN, logistic regression)")
    registry.add("cls4_avgpool", f"{_KINDS}:cls4_avgpool",
                 description="CLS tokens of the last 4 blocks, then the last block's mean patch token [5D] "
                             "(linear probe)")
    registry.add("cls_multiscale", f"{_KINDS}:cls_multiscale",
                 description="L2-normalised mean of the CLS tokens at scales 1, 1/sqrt(2), sqrt(2) [D] "
                             "(instance retrieval)")
    registry.add("frame_patch_tokens", f"{_KINDS}:frame_patch_tokens",
                 description="per-frame normalised last-block patch tokens of video clips [T, h, w, D]")
    registry.add("patch_tokens", f"{_KINDS}:patch_tokens",
                 description="normalised last-block patch tokens [h, w, D] (channels-last)")
