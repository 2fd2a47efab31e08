"""Registers the first-party backbone families (variants from ``backbones/variants.py``)."""

from __future__ import annotations

from dinobench.backbones.variants import FAMILIES, PARAMETER_COUNTS
from dinobench.hookspecs import hookimpl
from dinobench.registry import BackboneRegistry


@hookimpl
def dinobench_register_backbones(registry: BackboneRegistry) -> None:
    """Every variant of every first-party family (DINOv3 ViT/ConvNeXt, DINOv2 ViT)."""
    for family, (variants, module) in FAMILIES.items():
        for name, (kwargs, meta) in variants.items():
            registry.add(
                name,
                f"{module}:{name}",
                family=family,
                patch_size=meta.get("patch_size", kwargs.get("patch_size")),
                embed_dim=meta.get("embed_dim", kwargs.get("embed_dim")),
                description=meta.get("description", ""),
                defaults=kwargs,
                params=PARAMETER_COUNTS[name],
            )
    registry.add("hf", "dinobench.backbones.factory:requires_weights", family="auto",
                 description="architecture read from a Hugging Face config.json: --weights DIR or repo id")
