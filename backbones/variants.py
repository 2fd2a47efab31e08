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


#: DINOv3 ConvNeXt variants (official sizes, ``dinov3/models/convnext.py:convnext_sizes``); patch
#: size 32 is the total stride of the four stages, the CLS token is the average-pooled last map.
DINOV3_CONVNEXT: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    name: ({"depths": depths, "dims": dims, "layer_scale_init_value": 1e-6},
           {"patch_size": 32, "embed_dim": dims[-1], "description": f"DINOv3 ConvNeXt-{size} (LVD-1689M)"})
    for name, size, depths, dims in (
        ("convnext_tiny", "Tiny", [3, 3, 9, 3], [96, 192, 384, 768]),
        ("convnext_small", "Small", [3, 3, 27, 3], [96, 192, 384, 768]),
        ("convnext_base", "Base", [3, 3, 27, 3], [128, 256, 512, 1024]),
        ("convnext_large", "Large", [3, 3, 27, 3], [192, 384, 768, 1536]),
    )
}

#: DINOv2 ViT variants (patch 14, learned position embedding, optional registers): the official
#: torch-hub models. The position embedding covers the 518 px (37x37) pre-training grid; the
#: register models resize it with antialias and no offset (official hub settings).
DINOV2_VIT: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    f"dinov2_vit{size}14{suffix}": (
        {"img_size": 518, "patch_size": 14, "embed_dim": dim, "depth": depth, "num_heads": heads,
         "mlp_ratio": 4.0, "init_values": 1e-5, "ffn_layer": ffn, "num_register_tokens": registers,
         "interpolate_antialias": registers > 0, "interpolate_offset": 0.0 if registers else 0.1},
        {"patch_size": 14, "embed_dim": dim,
         "description": f"DINOv2 ViT-{size.upper() if size != 'g' else 'g'}/14 ({params} params, LVD-142M)"
                        + (" with 4 registers" if registers else "")},
    )
    for size, dim, depth, heads, ffn, params in (
        ("s", 384, 12, 6, "mlp", "21M"), ("b", 768, 12, 12, "mlp", "86M"),
        ("l", 1024, 24, 16, "mlp", "300M"), ("g", 1536, 40, 24, "swiglufused", "1.1B"),
    )
    for suffix, registers in (("", 0), ("_reg", 4))
}

#: parameter count of every variant at its registered size, so that ``dinobench list`` needs no torch;
#: ``tests/backbones/test_backbone_registry.py`` checks each against the model built on the meta device.
PARAMETER_COUNTS: dict[str, int] = {
    "vits16": 21_601_152, "vits16plus": 28_697_472, "vitb16": 85_669_632, "vitl16": 303_154_176,
    "vitl16plus": 403_915_776, "vith16plus": 840_633_600, "vit7b16": 6_716_043_264,
    "vitl16_sat493m": 303_156_224, "vit7b16_sat493m": 6_716_043_264, "vit_tiny": 818_816,
    "convnext_tiny": 27_820_128, "convnext_small": 49_454_688, "convnext_base": 87_566_464,
    "convnext_large": 196_230_336,
    "dinov2_vits14": 22_056_576, "dinov2_vits14_reg": 22_058_112, "dinov2_vitb14": 86_580_480,
    "dinov2_vitb14_reg": 86_583_552, "dinov2_vitl14": 304_368_640, "dinov2_vitl14_reg": 304_372_736,
    "dinov2_vitg14": 1_136_480_768, "dinov2_vitg14_reg": 1_136_486_912,
}

#: family name -> (variant table, module that builds it). The registration plugin and the
#: checkpoint loader iterate over this.
FAMILIES: dict[str, tuple[dict[str, tuple[dict[str, Any], dict[str, Any]]], str]] = {
    "dinov3_vit": (DINOV3_VIT, "dinobench.backbones.dinov3_vit"),
    "dinov3_convnext": (DINOV3_CONVNEXT, "dinobench.backbones.dinov3_convnext"),
    "dinov2_vit": (DINOV2_VIT, "dinobench.backbones.dinov2_vit"),
}
