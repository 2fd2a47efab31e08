"""Transformer building blocks shared by the ViT backbone families."""

from dinobench.backbones.layers.attention import SelfAttention
from dinobench.backbones.layers.block import SelfAttentionBlock
from dinobench.backbones.layers.ffn import Mlp, SwiGLUFFN, make_ffn
from dinobench.backbones.layers.layerscale import LayerScale
from dinobench.backbones.layers.patch_embed import PatchEmbed
from dinobench.backbones.layers.rope import RopePositionEmbedding, apply_rope

__all__ = [
    "LayerScale",
    "Mlp",
    "PatchEmbed",
    "RopePositionEmbedding",
    "SelfAttention",
    "SelfAttentionBlock",
    "SwiGLUFFN",
    "apply_rope",
    "make_ffn",
]
