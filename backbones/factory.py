"""``create_backbone``: registry lookup, construction with official-name overrides, weight loading."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dinobench.errors import ConfigError
from dinobench.registry import resolve_object

logger = logging.getLogger("dinobench")

CONTRACT_ATTRIBUTES = ("embed_dim", "patch_size", "n_storage_tokens", "forward_features", "get_intermediate_layers")


def check_contract(model: nn.Module, name: str) -> nn.Module:
    """Raise if ``model`` lacks an attribute of the backbone contract (catches plugin bugs early)."""
    missing = [a for a in CONTRACT_ATTRIBUTES if not hasattr(model, a)]
    if missing:
        raise TypeError(f"backbone {name!r} does not honour the backbone contract: missing {missing}")
    return model


def create_backbone(name: str, weights: str | Path | None = None, strict: bool = True,
                    **overrides: Any) -> nn.Module:
    """Build backbone ``name``; load ``weights`` (a checkpoint path) if given, else random init.

    With weights, the model is built on the meta device and the checkpoint tensors are assigned
    (memory-mapped), so peak memory holds one copy of the weights.
    """
    from dinobench.plugin_manager import get_registries

    spec = get_registries().backbones.get(name)
    factory = resolve_object(spec.factory)
    if weights is not None:
        from dinobench.backbones.loading import load_into, read_state_dict

        state = read_state_dict(weights)  # fails fast (missing/corrupt file) before building
        try:
            with torch.device("meta"):
                model = factory(**overrides)
        except TypeError as exc:
            raise ConfigError(f"backbone {name!r}: invalid override: {exc}") from exc
        model = load_into(model, state, path=weights, strict=strict)
        model.weights_path = str(weights)
    else:
        try:
            model = factory(**overrides)
        except TypeError as exc:
            raise ConfigError(f"backbone {name!r}: invalid override: {exc}") from exc
        model.weights_path = None
    model.backbone_name = name
    return check_contract(model.eval(), name)


def count_parameters(name: str) -> int:
    """Parameter count of backbone ``name``, computed on the meta device (no memory used)."""
    from dinobench.plugin_manager import get_registries

    factory = resolve_object(get_registries().backbones.get(name).factory)
    with torch.device("meta"):
        model = factory()
    return sum(p.numel() for p in model.parameters())
