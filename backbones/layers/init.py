"""The ViT weight initialisation shared by the backbones and the transformer heads built from these layers."""

from __future__ import annotations

from torch import nn

from dinobench.backbones.layers.layerscale import LayerScale


def init_vit_weights_(module: nn.Module, resettable: tuple[type, ...] = (nn.LayerNorm, LayerScale)) -> None:
    """Over ``module.modules()`` in order: truncated-normal (std 0.02) linear weights and zero biases; the
    ``reset_parameters()`` of the ``resettable`` types (unit LayerNorms, LayerScale at its initial value)."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.trunc_normal_(sub.weight, std=0.02)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, resettable):
            sub.reset_parameters()
