"""Backbone variants as data (timm's "pretrained configs as data"); no torch import here.

Each family maps a variant name to ``(constructor kwargs, metadata)``; constructor kwargs use
the official argument names so they double as the override vocabulary of ``create_backbone``.
"""

from __future__ import annotations

from typing import Any

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SAT493M_MEAN, SAT493M_STD = (0.430, 0.411, 0.296), (0.213, 0.156, 0.143)

_RELEASED_VIT = dict(  # shared by every released DINOv3 ViT (official hub definitions)
    patch_size=16, pos_embed_rope_base=100.0, pos_embed_rope_normalize_coords="separate",
    pos_embed_rope_rescale_coords=2.0, qkv_bias=True, layerscale_init=1e-5, norm_layer="layernormbf16",
    ffn_layer="mlp", n_storage_tokens=4, mask_k_bias=True,
)
_SAT = {"mean": SAT493M_MEAN, "std": SAT493M_STD, "description": "satellite imagery (SAT-493M) normalisation"}


def _vit(embed_dim: int, depth: int, num_heads: int, ffn_ratio: float, **extra: Any) -> dict[str, Any]:
    return {**_RELEASED_VIT, "embed_dim": embed_dim, "depth": depth, "num_heads": num_heads,
            "ffn_ratio": ffn_ratio, **extra}


#: DINOv3 ViT variants: official sizes of the DINOv3 release, plus a toy model for CPU work.
DINOV3_VIT: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "vits16": (_vit(384, 12, 6, 4.0), {}),
    "vits16plus": (_vit(384, 12, 6, 6.0, ffn_layer="swiglu"), {}),
    "vitb16": (_vit(768, 12, 12, 4.0), {}),
    "vitl16": (_vit(1024, 24, 16, 4.0), {}),
    "vitl16plus": (_vit(1024, 24, 16, 6.0, ffn_layer="swiglu"), {}),
    "vith16plus": (_vit(1280, 32, 20, 6.0, ffn_layer="swiglu"), {}),
    "vit7b16": (_vit(4096, 40, 32, 3.0, ffn_layer="swiglu64", qkv_bias=False,
                     untie_global_and_local_cls_norm=True), {}),
    "vitl16_sat493m": (_vit(1024, 24, 16, 4.0, untie_global_and_local_cls_norm=True), _SAT),
    "vit7b16_sat493m": (_vit(4096, 40, 32, 3.0, ffn_layer="swiglu64", qkv_bias=False,
                             untie_global_and_local_cls_norm=True), _SAT),
    # no LayerScale: with gamma=1e-5 a random-init CLS token ignores the image (degenerate baseline)
    "vit_tiny": (_vit(128, 4, 4, 4.0, patch_size=8, layerscale_init=None),
                 {"description": "toy ViT for CPU tests, the demo and toy SSL; any size via overrides"}),
}


#: DINOv3 ConvNeXt variants (filled by backbones/dinov3_convnext.py's family; official sizes).
DINOV3_CONVNEXT: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

#: DINOv2 ViT variants (patch 14, learned position embedding, optional registers).
DINOV2_VIT: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

#: family name -> (variant table, module that builds it). The registration plugin and the
#: checkpoint loader iterate over this.
FAMILIES: dict[str, tuple[dict[str, tuple[dict[str, Any], dict[str, Any]]], str]] = {
    "dinov3_vit": (DINOV3_VIT, "dinobench.backbones.dinov3_vit"),
    "dinov3_convnext": (DINOV3_CONVNEXT, "dinobench.backbones.dinov3_convnext"),
    "dinov2_vit": (DINOV2_VIT, "dinobench.backbones.dinov2_vit"),
}
