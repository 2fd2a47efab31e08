"""Registers the first-party backbone families (variants from ``backbones/variants.py``)."""

from __future__ import annotations

from dinobench.backbones.variants import DINOV3_VIT
from dinobench.hookspecs import hookimpl
from dinobench.registry import BackboneRegistry


@hookimpl
def dinobench_register_backbones(registry: BackboneRegistry) -> None:
    """DINOv3 ViT variants (official sizes) and the toy ``vit_tiny``."""
    for name, (kwargs, meta) in DINOV3_VIT.items():
        registry.add(
            name,
            f"dinobench.backbones.dinov3_vit:{name}",
            family="dinov3_vit",
            patch_size=kwargs["patch_size"],
            embed_dim=kwargs["embed_dim"],
            description=meta.get("description", ""),
            defaults=kwargs,
        )
