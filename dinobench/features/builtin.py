"""The built-in feature kinds as registry entries (names and lazy ``"module:attr"`` targets only, no torch):
registered by :mod:`dinobench.plugins.feature_kinds`, and what the cache layer resolves a kind *name* against
when its caller passes no registry (tests, scripts). A run passes the registry it resolved, plugins' kinds
included (:attr:`dinobench.context.RunContext.feature_kinds`)."""

from __future__ import annotations

from dinobench.registry import FeatureKindSpec

_KINDS = "dinobench.features.kinds"

BUILTIN_FEATURE_KINDS: tuple[FeatureKindSpec, ...] = (
    FeatureKindSpec("cls", f"{_KINDS}:cls_token", cut_from={"cls4_avgpool": f"{_KINDS}:cut_cls_from_cls4_avgpool"},
                    description="normalised CLS token x_norm_clstoken [D] (kNN, logistic regression)"),
    FeatureKindSpec("cls4_avgpool", f"{_KINDS}:cls4_avgpool",
                    description="CLS tokens of the last 4 blocks, then the last block's mean patch token [5D] "
                                "(linear probe)"),
    FeatureKindSpec("cls_multiscale", f"{_KINDS}:cls_multiscale",
                    description="L2-normalised mean of the CLS tokens at scales 1, 1/sqrt(2), sqrt(2) [D] "
                                "(instance retrieval)"),
    FeatureKindSpec("frame_patch_tokens", f"{_KINDS}:frame_patch_tokens",
                    description="per-frame normalised last-block patch tokens of video clips [T, h, w, D]"),
    FeatureKindSpec("patch_tokens", f"{_KINDS}:patch_tokens",
                    description="normalised last-block patch tokens [h, w, D] (channels-last)"),
)


def descriptor_kind(multiscale: bool) -> str:
    """The feature kind of a global retrieval descriptor: the multi-scale CLS (official revisited retrieval) or
    the CLS token."""
    return "cls_multiscale" if multiscale else "cls"
