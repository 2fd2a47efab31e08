"""dino.txt: a text tower aligned to a frozen DINOv3 vision backbone, with the official parameter names.

Vision side: the backbone's last-layer ``[cls, storage, patch]`` tokens -> trainable transformer blocks
(SwiGLU FFN aligned to 64, LayerScale 1e-5, drop path) -> LayerNorm -> image embedding = concat(CLS, mean of
patch tokens) (a linear projection when the sizes need one). Text side: a causal transformer over CLIP tokens
(pre-norm, GELU MLP, no qkv bias) -> LayerNorm -> the end-of-text token's features (argmax pooling) -> linear
projection. ``logit_scale`` starts at log(1/0.07).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dinobench.backbones.layers.block import SelfAttentionBlock
from dinobench.backbones.layers.init import init_vit_weights_


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention, causal by default (``qkv`` without bias, ``proj`` with)."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, is_causal: bool = True) -> Tensor:  # noqa: D102
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).unbind(2)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             dropout_p=self.dropout if self.training else 0.0, is_causal=is_causal)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, n, c)))


class FeedForward(nn.Module):
    """``fc2(dropout(gelu(fc1 x)))`` (official name ``feed_forward``)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1, self.fc2, self.drop = nn.Linear(dim, hidden), nn.Linear(hidden, dim), nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class CausalBlock(nn.Module):
    """Pre-norm block ``x + attention(attention_norm x)``, then ``+ feed_forward(ffn_norm x)``."""

    def __init__(self, dim: int, num_heads: int, ffn_ratio: float = 4.0, is_causal: bool = True,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.dim, self.is_causal = dim, is_causal
        self.ls1, self.ls2 = nn.Identity(), nn.Identity()
        self.attention_norm, self.attention = nn.LayerNorm(dim), CausalSelfAttention(dim, num_heads, dropout)
        self.ffn_norm, self.feed_forward = nn.LayerNorm(dim), FeedForward(dim, int(dim * ffn_ratio), dropout)

    def init_weights(self, attn_std: float, proj_std: float, fc_std: float) -> None:
        """Normal weights with the given standard deviations, zero biases, unit norms (the official scheme)."""
        nn.init.normal_(self.attention.qkv.weight, std=attn_std)
        nn.init.normal_(self.attention.proj.weight, std=proj_std)
        nn.init.zeros_(self.attention.proj.bias)
        nn.init.normal_(self.feed_forward.fc1.weight, std=fc_std)
        nn.init.normal_(self.feed_forward.fc2.weight, std=proj_std)
        self.attention_norm.reset_parameters()
        self.ffn_norm.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        x = x + self.ls1(self.attention(self.attention_norm(x), self.is_causal))
        return x + self.ls2(self.feed_forward(self.ffn_norm(x)))


class TextTransformer(nn.Module):
    """Token + learned position embeddings -> causal blocks -> final LayerNorm: ``[B, N, dim]``."""

    def __init__(self, context_length: int = 77, vocab_size: int = 49408, dim: int = 1280, num_heads: int = 20,
                 num_layers: int = 24, ffn_ratio: float = 4.0, is_causal: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.embed_dim, self.num_heads, self.num_layers = dim, num_heads, num_layers
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, dim))
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([CausalBlock(dim, num_heads, ffn_ratio, is_causal, dropout)
                                     for _ in range(num_layers)])
        self.ln_final = nn.LayerNorm(dim)

    def init_weights(self) -> None:
        """CLIP's text-tower initialisation."""
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        attn = self.embed_dim ** -0.5
        for block in self.blocks:
            block.init_weights(attn, attn * (2 * self.num_layers) ** -0.5, (2 * self.embed_dim) ** -0.5)
        self.ln_final.reset_parameters()

    def forward(self, tokens: Tensor) -> Tensor:  # noqa: D102
        x = self.dropout(self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[1]])
        for block in self.blocks:
            x = block(x)
        return self.ln_final(x)


class TextTower(nn.Module):
    """Text backbone -> projection to ``embed_dim`` -> the end-of-text token's vector (argmax of the ids)."""

    def __init__(self, backbone: TextTransformer, embed_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = _Projection(backbone.embed_dim, embed_dim)

    def forward(self, tokens: Tensor) -> Tensor:  # noqa: D102
        features = self.head(self.backbone(tokens))
        return features[torch.arange(features.shape[0], device=features.device), tokens.argmax(dim=-1)]


class _Projection(nn.Module):
    """The official text head without blocks: ``blocks = [Identity]``, ``ln_final = Identity``, linear projection."""

    def __init__(self, dim: int, embed_dim: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([nn.Identity()])
        self.ln_final = nn.Identity()
        self.linear_projection = nn.Linear(dim, embed_dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return self.linear_projection(x)


class VisionHead(nn.Module):
    """Trainable blocks over the frozen backbone's tokens, LayerNorm, and - when ``2 * dim != embed_dim`` - a
    linear projection to ``embed_dim / 2`` (CLS and the patch mean are concatenated after it)."""

    def __init__(self, dim: int, embed_dim: int, num_heads: int, num_blocks: int = 2, drop_path: float = 0.3) -> None:
        super().__init__()
        self.num_blocks = num_blocks
        self.ln_final: nn.Module = nn.LayerNorm(dim) if num_blocks > 0 else nn.Identity()  # registered first (key order)
        self.blocks = nn.ModuleList([SelfAttentionBlock(dim, num_heads, ffn_layer="swiglu64", qkv_bias=False,
                                                        layerscale_init=1e-5, drop_path_rate=drop_path)
                                     for _ in range(num_blocks)] or [nn.Identity()])
        if embed_dim % 2:
            raise ValueError(f"embed_dim={embed_dim} must be even: it is CLS features + mean patch features")
        self.linear_projection: nn.Module = nn.Identity() if 2 * dim == embed_dim \
            else nn.Linear(dim, embed_dim // 2, bias=False)

    def init_weights(self) -> None:
        """Truncated-normal (0.02) linear weights, zero biases, unit norms, LayerScale 1e-5; projection N(0, 1/d)."""
        for block in self.blocks:
            init_vit_weights_(block)  # LayerScale back to its 1e-5
        if isinstance(self.ln_final, nn.LayerNorm):
            self.ln_final.reset_parameters()
        if isinstance(self.linear_projection, nn.Linear):
            nn.init.normal_(self.linear_projection.weight, std=self.linear_projection.in_features ** -0.5)

    def forward(self, tokens: Tensor) -> Tensor:  # noqa: D102
        for block in self.blocks:
            tokens = block(tokens)
        return self.linear_projection(self.ln_final(tokens))


class VisionTower(nn.Module):
    """Frozen backbone (last layer, normed) -> :class:`VisionHead` over ``[cls, storage, patch]`` tokens."""

    def __init__(self, backbone: nn.Module, embed_dim: int, num_blocks: int = 2, drop_path: float = 0.3) -> None:
        super().__init__()
        self.backbone = backbone
        for param in backbone.parameters():
            param.requires_grad_(False)
        self.num_register_tokens = int(getattr(backbone, "n_storage_tokens", getattr(backbone, "num_register_tokens", 0)))
        self.head = VisionHead(int(backbone.embed_dim), embed_dim, int(backbone.num_heads), num_blocks, drop_path)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(image embedding, head patch tokens, backbone patch tokens)."""
        ((patch, cls, extra),) = self.backbone.get_intermediate_layers(images, n=1, return_class_token=True,
                                                                       return_extra_tokens=True)
        tokens = self.head(torch.cat([cls[:, None], extra, patch], dim=1))
        head_cls, head_patch = tokens[:, 0], tokens[:, self.num_register_tokens + 1:]
        return torch.cat([head_cls, head_patch.mean(dim=1)], dim=-1), head_patch, patch


class DINOTxt(nn.Module):
    """``visual_model`` + ``text_model`` + ``logit_scale`` (official layout and method names)."""

    def __init__(self, visual_model: VisionTower, text_model: TextTower,
                 init_logit_scale: float = math.log(1 / 0.07)) -> None:
        super().__init__()
        self.visual_model, self.text_model = visual_model, text_model
        self.logit_scale = nn.Parameter(torch.full((1,), float(init_logit_scale)))
        self.init_logit_scale = float(init_logit_scale)

    def init_weights(self) -> None:
        """Fresh trainable weights (the frozen backbone is left as it is)."""
        nn.init.constant_(self.logit_scale, self.init_logit_scale)
        self.visual_model.head.init_weights()
        self.text_model.backbone.init_weights()
        proj = self.text_model.head.linear_projection
        nn.init.normal_(proj.weight, std=proj.in_features ** -0.5)

    def fsdp_units(self) -> list[nn.Module]:
        """What FSDP2 shards one by one (``train.parallel=fsdp``): the text blocks and the vision head blocks."""
        return [*self.text_model.backbone.blocks, *[b for b in self.visual_model.head.blocks
                                                    if not isinstance(b, nn.Identity)]]

    @property
    def frozen_backbone(self) -> nn.Module:
        """The frozen vision backbone (not part of a trained-head checkpoint)."""
        return self.visual_model.backbone

    def param_groups(self) -> list[dict]:
        """AdamW groups as the official training: no weight decay on gains, biases and ``logit_scale`` (tensors
        of fewer than 2 dimensions), decay on the rest; the frozen backbone left out."""
        params = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        return [{"params": [p for n, p in params if p.ndim < 2 or "logit_scale" in n], "lr_multiplier": 1.0,
                 "wd_multiplier": 0.0},
                {"params": [p for n, p in params if p.ndim >= 2 and "logit_scale" not in n], "lr_multiplier": 1.0,
                 "wd_multiplier": 1.0}]

    #: the largest ``logit_scale`` (ln 100: logits scaled by at most 100), as CLIP and the official training clamp it
    MAX_LOGIT_SCALE = math.log(100)

    @torch.no_grad()
    def after_step(self) -> None:
        """After every optimizer step: ``logit_scale`` clamped to [0, ln 100] (official
        ``dinov3/eval/text/train_dinotxt.py``, lines 205-208: OpenCLIP's clamp from the CLIP paper)."""
        self.logit_scale.clamp_(0.0, self.MAX_LOGIT_SCALE)

    def train(self, mode: bool = True) -> "DINOTxt":  # noqa: D102 - the frozen backbone stays in eval mode
        super().train(mode)
        self.visual_model.backbone.eval()
        return self

    def encode_image_with_patch_tokens(self, images: Tensor, normalize: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """(image embedding - L2-normalised with ``normalize`` -, head patch tokens, backbone patch tokens)."""
        features, patch, backbone_patch = self.visual_model(images)
        return (F.normalize(features, dim=-1) if normalize else features), patch, backbone_patch

    def encode_image(self, images: Tensor, normalize: bool = False) -> Tensor:
        """Image embeddings ``[B, embed_dim]``."""
        return self.encode_image_with_patch_tokens(images, normalize)[0]

    def encode_text(self, tokens: Tensor, normalize: bool = False) -> Tensor:
        """Text embeddings ``[B, embed_dim]`` of CLIP token ids."""
        features = self.text_model(tokens)
        return F.normalize(features, dim=-1) if normalize else features

    def get_logits(self, images: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """(image -> text, text -> image) similarity logits scaled by ``exp(logit_scale)``."""
        logits = self.logit_scale.exp() * self.encode_image(images, True) @ self.encode_text(tokens, True).T
        return logits, logits.T

    def forward(self, images: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(normalised image and text embeddings, ``exp(logit_scale)``, head and backbone patch tokens)."""
        text = self.encode_text(tokens, normalize=True)
        image, patch, backbone_patch = self.encode_image_with_patch_tokens(images, normalize=True)
        return image, text, self.logit_scale.exp(), patch, backbone_patch


def build_dinotxt(vision_backbone: nn.Module, *, embed_dim: int = 2048, text_dim: int = 1280, text_heads: int = 20,
                  text_layers: int = 24, context_length: int = 77, vocab_size: int = 49408,
                  vision_head_blocks: int = 2) -> DINOTxt:
    """dino.txt configured as the released ``dinov3_vitl16_dinotxt_tet1280d20h24l`` (sizes as arguments): vision
    head blocks with drop path 0.3 on the frozen ``vision_backbone``, causal text transformer with FFN ratio 4,
    argmax pooling, linear text projection; fresh initialisation."""
    text = TextTransformer(context_length, vocab_size, text_dim, text_heads, text_layers)
    model = DINOTxt(VisionTower(vision_backbone, embed_dim, vision_head_blocks, 0.3), TextTower(text, embed_dim))
    model.init_weights()
    return model
