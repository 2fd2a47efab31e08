"""DINOv3 Vision Transformer: ``[cls, storage tokens, patches]``, RoPE on patches, pre-norm blocks.

State-dict keys follow the official ``DinoVisionTransformer`` so official ``.pth`` files load
as they are. Variants are data (``variants.DINOV3_VIT``); any size can be built with overrides.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from dinobench.backbones.layers import LayerScale, PatchEmbed, RopePositionEmbedding, SelfAttentionBlock
from dinobench.backbones.variants import DINOV3_VIT, IMAGENET_MEAN, IMAGENET_STD

logger = logging.getLogger("dinobench")

NORM_LAYERS = {
    "layernorm": partial(nn.LayerNorm, eps=1e-6),
    "layernormbf16": partial(nn.LayerNorm, eps=1e-5),  # the released DINOv3 models use eps 1e-5
}


class DinoVisionTransformer(nn.Module):
    """The DINOv3 ViT backbone (constructor arguments use the official names)."""

    def __init__(
        self,
        *,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        pos_embed_rope_base: float | None = 100.0,
        pos_embed_rope_min_period: float | None = None,
        pos_embed_rope_max_period: float | None = None,
        pos_embed_rope_normalize_coords: str = "separate",
        pos_embed_rope_shift_coords: float | None = None,
        pos_embed_rope_jitter_coords: float | None = None,
        pos_embed_rope_rescale_coords: float | None = None,
        pos_embed_rope_dtype: str = "fp32",
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        ffn_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        layerscale_init: float | None = None,
        norm_layer: str = "layernorm",
        ffn_layer: str = "mlp",
        ffn_bias: bool = True,
        proj_bias: bool = True,
        n_storage_tokens: int = 0,
        mask_k_bias: bool = False,
        untie_cls_and_patch_norms: bool = False,
        untie_global_and_local_cls_norm: bool = False,
        device: Any = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if norm_layer not in NORM_LAYERS:
            raise ValueError(f"unknown norm_layer {norm_layer!r}; expected one of {sorted(NORM_LAYERS)}")
        norm = NORM_LAYERS[norm_layer]
        self.embed_dim = self.num_features = embed_dim
        self.patch_size = patch_size
        self.n_blocks = depth
        self.num_heads = num_heads
        self.n_storage_tokens = n_storage_tokens
        self.img_size = img_size
        self.image_mean, self.image_std = tuple(mean), tuple(std)
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, device=device)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim, device=device))
        if n_storage_tokens > 0:
            self.storage_tokens = nn.Parameter(torch.zeros(1, n_storage_tokens, embed_dim, device=device))
        self.rope_embed = RopePositionEmbedding(
            embed_dim, num_heads=num_heads, base=pos_embed_rope_base,
            min_period=pos_embed_rope_min_period, max_period=pos_embed_rope_max_period,
            normalize_coords=pos_embed_rope_normalize_coords, shift_coords=pos_embed_rope_shift_coords,
            jitter_coords=pos_embed_rope_jitter_coords, rescale_coords=pos_embed_rope_rescale_coords,
            dtype={"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[pos_embed_rope_dtype],
            device=device,
        )
        self.blocks = nn.ModuleList(
            SelfAttentionBlock(
                embed_dim, num_heads, ffn_ratio=ffn_ratio, ffn_layer=ffn_layer, qkv_bias=qkv_bias,
                proj_bias=proj_bias, ffn_bias=ffn_bias, mask_k_bias=mask_k_bias,
                layerscale_init=layerscale_init, drop_path_rate=drop_path_rate, norm_layer=norm, device=device,
            )
            for _ in range(depth)
        )
        self.norm = norm(embed_dim, device=device)
        self.untie_cls_and_patch_norms = untie_cls_and_patch_norms
        self.cls_norm = norm(embed_dim, device=device) if untie_cls_and_patch_norms else None
        self.untie_global_and_local_cls_norm = untie_global_and_local_cls_norm
        # used only in training, for local crops; kept so that official checkpoints load strictly
        self.local_cls_norm = norm(embed_dim, device=device) if untie_global_and_local_cls_norm else None
        self.head = nn.Identity()
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim, device=device))

    # ----------------------------------------------------------------- initialisation
    def init_weights(self) -> None:
        """Official random init: trunc-normal(0.02) linears, N(0, 0.02) cls/storage, zero mask."""
        self.rope_embed.reset_parameters()
        nn.init.normal_(self.cls_token, std=0.02)
        if self.n_storage_tokens > 0:
            nn.init.normal_(self.storage_tokens, std=0.02)
        nn.init.zeros_(self.mask_token)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.LayerNorm, LayerScale, PatchEmbed)):
                module.reset_parameters()

    # ----------------------------------------------------------------- tokens
    def _crop_to_patch_multiple(self, x: Tensor) -> Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected an image batch [B, C, H, W], got a tensor of shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        p = self.patch_size
        if height < p or width < p:
            raise ValueError(f"image {height}x{width} is smaller than one {p}x{p} patch")
        if height % p or width % p:
            logger.debug("cropping input %dx%d to %dx%d (multiple of patch size %d)",
                         height, width, height - height % p, width - width % p, p)
            x = x[..., : height - height % p, : width - width % p]
        return x

    def prepare_tokens_with_masks(self, x: Tensor, masks: Tensor | None = None) -> tuple[Tensor, tuple[int, int]]:
        """Patch-embed, replace masked patches by ``mask_token``, prepend cls + storage tokens."""
        x = self.patch_embed(self._crop_to_patch_multiple(x))
        batch, grid_h, grid_w, _ = x.shape
        x = x.flatten(1, 2)
        if masks is not None:
            x = torch.where(masks.unsqueeze(-1), self.mask_token.to(x.dtype).unsqueeze(0), x)
            cls_token = self.cls_token
        else:
            cls_token = self.cls_token + 0 * self.mask_token  # keeps mask_token in the autograd graph
        prefix = [cls_token.expand(batch, -1, -1)]
        if self.n_storage_tokens > 0:
            prefix.append(self.storage_tokens.expand(batch, -1, -1))
        return torch.cat([*prefix, x], dim=1), (grid_h, grid_w)

    def _norm_prefix_and_patches(self, x: Tensor, local_crops: bool = False) -> tuple[Tensor, Tensor]:
        n_prefix = self.n_storage_tokens + 1
        if local_crops and self.local_cls_norm is not None and self.training:
            return self.local_cls_norm(x[:, :n_prefix]), self.norm(x[:, n_prefix:])
        if self.cls_norm is not None:
            return self.cls_norm(x[:, :n_prefix]), self.norm(x[:, n_prefix:])
        x_norm = self.norm(x)
        return x_norm[:, :n_prefix], x_norm[:, n_prefix:]

    # ----------------------------------------------------------------- forward
    def forward_features_list(self, x_list: list[Tensor], masks_list: list[Tensor | None]) -> list[dict[str, Tensor]]:
        """Run several crops sets (e.g. global, local) through the blocks; one dict per set."""
        tokens, grids = zip(*(self.prepare_tokens_with_masks(x, m) for x, m in zip(x_list, masks_list)))
        tokens = list(tokens)
        for block in self.blocks:
            tokens = [block(t, rope=self.rope_embed(H=h, W=w)) for t, (h, w) in zip(tokens, grids)]
        outputs = []
        for idx, (x, masks) in enumerate(zip(tokens, masks_list)):
            prefix, patches = self._norm_prefix_and_patches(x, local_crops=idx == 1)
            outputs.append({
                "x_norm_clstoken": prefix[:, 0],
                "x_storage_tokens": prefix[:, 1:],
                "x_norm_patchtokens": patches,
                "x_prenorm": x,
                "masks": masks,
            })
        return outputs

    def forward_features(self, x: Tensor | list[Tensor], masks: Tensor | list | None = None):
        """Dict with ``x_norm_clstoken [B,D]``, ``x_storage_tokens [B,R,D]``,
        ``x_norm_patchtokens [B,N,D]``, ``x_prenorm [B,1+R+N,D]`` (a list of dicts for a list)."""
        if isinstance(x, Tensor):
            return self.forward_features_list([x], [masks])[0]
        return self.forward_features_list(list(x), list(masks) if masks is not None else [None] * len(x))

    def _block_outputs(self, x: Tensor, n: int | Sequence[int]) -> list[Tensor]:
        tokens, (grid_h, grid_w) = self.prepare_tokens_with_masks(x)
        total = len(self.blocks)
        wanted = range(total - n, total) if isinstance(n, int) else [i % total for i in n]
        outputs = []
        rope = self.rope_embed(H=grid_h, W=grid_w)
        for i, block in enumerate(self.blocks[: max(wanted) + 1]):
            tokens = block(tokens, rope=rope)
            if i in wanted:
                outputs.append(tokens)
        if len(outputs) != len(wanted):
            raise ValueError(f"only {len(outputs)} of the {len(wanted)} requested blocks exist (depth {total})")
        return outputs

    def get_intermediate_layers(
        self,
        x: Tensor,
        n: int | Sequence[int] = 1,
        reshape: bool = False,
        return_class_token: bool = False,
        return_extra_tokens: bool = False,
        norm: bool = True,
    ) -> tuple:
        """Outputs of the last ``n`` blocks (or of the block indices in ``n``), official semantics.

        Patch tokens ``[B, N, D]`` (``[B, D, h, w]`` with ``reshape``), optionally zipped with the
        class token ``[B, D]`` and the storage tokens ``[B, R, D]``.
        """
        x = self._crop_to_patch_multiple(x)
        outputs = self._block_outputs(x, n)
        if norm:
            outputs = [torch.cat(self._norm_prefix_and_patches(out), dim=1) for out in outputs]
        n_prefix = self.n_storage_tokens + 1
        class_tokens = [out[:, 0] for out in outputs]
        extra_tokens = [out[:, 1:n_prefix] for out in outputs]
        patches = [out[:, n_prefix:] for out in outputs]
        if reshape:
            batch, _, height, width = x.shape
            grid = (height // self.patch_size, width // self.patch_size)
            patches = [p.reshape(batch, *grid, -1).permute(0, 3, 1, 2).contiguous() for p in patches]
        parts = [patches]
        if return_class_token:
            parts.append(class_tokens)
        if return_extra_tokens:
            parts.append(extra_tokens)
        return tuple(patches) if len(parts) == 1 else tuple(zip(*parts))

    def forward(self, x: Tensor, is_training: bool = False, **kwargs: Any):
        """Normalised class token (``is_training=True``: the full feature dict)."""
        out = self.forward_features(x, **kwargs)
        return out if is_training else self.head(out["x_norm_clstoken"])


def build(variant: str, **overrides: Any) -> DinoVisionTransformer:
    """Build ``variant`` with official-name ``overrides`` (random init, seeded by the caller)."""
    kwargs, meta = DINOV3_VIT[variant]
    config = {**kwargs, **{k: v for k, v in meta.items() if k in ("mean", "std")}, **overrides}
    model = DinoVisionTransformer(**config)
    if not any(p.is_meta for p in model.parameters()):
        model.init_weights()
    model.variant_config = config  # what was built, recorded in results and exports
    return model


def __getattr__(name: str):
    """``dinov3_vit.vits16(**overrides)`` etc.: one builder per variant, resolved lazily."""
    if name in DINOV3_VIT:
        return partial(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
