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
from dinobench.backbones.layers.init import init_vit_weights_
from dinobench.backbones.family import build_variant, split_vit_layers, variant_getattr, vit_feature_info
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
        #: one entry per level get_intermediate_layers returns (each block: embed_dim at patch stride)
        self.feature_info = vit_feature_info(depth, embed_dim, patch_size)
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
        init_vit_weights_(self, (nn.LayerNorm, LayerScale, PatchEmbed))

    # ----------------------------------------------------------------- tokens
    def _crop_to_patch_multiple(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.patch_embed.in_chans:
            raise ValueError(f"expected an image batch [B, {self.patch_embed.in_chans}, H, W], "
                             f"got a tensor of shape {tuple(x.shape)}")
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
        for block in self.blocks:  # fresh RoPE coordinate augmentations per block in training, as the official code
            ropes = [self.rope_embed(H=h, W=w) for h, w in grids]  # draws; else cached tables (no work)
            tokens = [block(t, rope=rope) for t, rope in zip(tokens, ropes)]
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
        return split_vit_layers(outputs, self.n_storage_tokens + 1, tuple(x.shape[-2:]), self.patch_size, reshape,
                                return_class_token, return_extra_tokens)

    def forward(self, x: Tensor, is_training: bool = False, **kwargs: Any):
        """Normalised class token (``is_training=True``: the full feature dict)."""
        out = self.forward_features(x, **kwargs)
        return out if is_training else self.head(out["x_norm_clstoken"])


def build(variant: str | None, **overrides: Any) -> DinoVisionTransformer:
    """Build ``variant`` with official-name ``overrides`` (random init, seeded by the caller).

    ``variant=None`` builds from ``overrides`` alone (e.g. kwargs read from a config.json).
    """
    return build_variant(DinoVisionTransformer, DINOV3_VIT, variant, overrides)


__getattr__ = variant_getattr(__name__, DINOV3_VIT, build)  # ``module.<variant>(**overrides)``

#: overrides that make any variant tiny (contract tests over the registry; RoPE needs dim % 4*heads == 0)
TINY_OVERRIDES: dict[str, Any] = {"embed_dim": 32, "depth": 2, "num_heads": 2}


# --------------------------------------------------------------------------- checkpoint formats
HF_MODEL_TYPES = ("dinov3_vit",)
_NORM_EPS = {"layernorm": 1e-6, "layernormbf16": 1e-5}


def detect_format(state: dict[str, Tensor]) -> str | None:
    """``official`` (also dinobench), ``hf`` (transformers DINOv3ViT) or ``timm`` (``vit_*_dinov3``)."""
    if "embeddings.cls_token" in state or any(k.startswith(("layer.", "model.layer.")) for k in state):
        return "hf"
    if "reg_token" in state or "blocks.0.gamma_1" in state or "blocks.0.attn.q_bias" in state:
        return "timm"
    if "cls_token" in state and any(k.startswith("blocks.") for k in state):
        return "official"
    return None


def _derived_buffers(config: dict[str, Any], out: dict[str, Tensor], qkv_dim: int) -> None:
    """Buffers that official checkpoints carry but HF/timm ones do not (RoPE periods, K-bias mask)."""
    rope = RopePositionEmbedding(config.get("embed_dim", 768), num_heads=config.get("num_heads", 12),
                                 base=config.get("pos_embed_rope_base", 100.0),
                                 min_period=config.get("pos_embed_rope_min_period"),
                                 max_period=config.get("pos_embed_rope_max_period"), device="cpu")
    out["rope_embed.periods"] = rope.periods
    for i in range(config.get("depth", 12)):
        if config.get("mask_k_bias") and f"blocks.{i}.attn.qkv.bias" in out:
            mask = torch.ones(qkv_dim)
            mask[qkv_dim // 3: 2 * qkv_dim // 3] = 0
            out[f"blocks.{i}.attn.qkv.bias_mask"] = mask
    if config.get("untie_global_and_local_cls_norm") and "local_cls_norm.weight" not in out:
        # training-only norm (local crops); eval never uses it, so the global norm stands in
        out["local_cls_norm.weight"], out["local_cls_norm.bias"] = out["norm.weight"], out["norm.bias"]
    if "mask_token" not in out:
        out["mask_token"] = torch.zeros(1, out["cls_token"].shape[-1])


def convert_state_dict(state: dict[str, Tensor], fmt: str, config: dict[str, Any] | None = None) -> dict[str, Tensor]:
    """HF- or timm-named tensors -> official names (consumes ``state`` to keep one copy in memory)."""
    if fmt == "official":
        return state
    config = config or {}
    # transformers files say "layer.N."; its in-memory modules say "model.layer.N."
    state = {(k[len("model."):] if k.startswith("model.layer.") else k): v for k, v in state.items()}
    pop = state.pop
    out: dict[str, Tensor] = {}
    hf = fmt == "hf"
    out["cls_token"] = pop("embeddings.cls_token" if hf else "cls_token")
    storage = pop("embeddings.register_tokens" if hf else "reg_token", None)
    if storage is not None and storage.shape[1] > 0:
        out["storage_tokens"] = storage
    if hf:
        out["mask_token"] = pop("embeddings.mask_token").reshape(1, -1)
    for p in ("weight", "bias"):
        out[f"patch_embed.proj.{p}"] = pop(("embeddings.patch_embeddings." if hf else "patch_embed.proj.") + p)
        out[f"norm.{p}"] = pop(f"norm.{p}")
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("layer." if hf else "blocks."))
    dim = out["cls_token"].shape[-1]
    for i in range(depth):
        src, dst = (f"layer.{i}." if hf else f"blocks.{i}."), f"blocks.{i}."
        names = {"norm1": "norm1", "norm2": "norm2", "attn.proj": "attention.o_proj" if hf else "attn.proj"}
        for ours, theirs in names.items():
            for p in ("weight", "bias"):
                if src + f"{theirs}.{p}" in state:
                    out[dst + f"{ours}.{p}"] = pop(src + f"{theirs}.{p}")
        out[dst + "ls1.gamma"] = pop(src + ("layer_scale1.lambda1" if hf else "gamma_1"))
        out[dst + "ls2.gamma"] = pop(src + ("layer_scale2.lambda1" if hf else "gamma_2"))
        if hf:
            out[dst + "attn.qkv.weight"] = torch.cat([pop(src + f"attention.{x}_proj.weight") for x in "qkv"])
            biases = [pop(src + f"attention.{x}_proj.bias", None) for x in "qkv"]
        else:
            out[dst + "attn.qkv.weight"] = pop(src + "attn.qkv.weight")
            biases = [pop(src + "attn.q_bias", None), None, pop(src + "attn.v_bias", None)]
        if config.get("qkv_bias", True) and any(b is not None for b in biases):
            out[dst + "attn.qkv.bias"] = torch.cat([b if b is not None else torch.zeros(dim) for b in biases])
        elif config.get("qkv_bias", True):
            out[dst + "attn.qkv.bias"] = torch.zeros(3 * dim)  # timm drops all-zero qkv biases
        mlp_map = ({"w1": "gate_proj", "w2": "up_proj", "w3": "down_proj", "fc1": "up_proj", "fc2": "down_proj"} if hf
                   else {"w1": "fc1_g", "w2": "fc1_x", "w3": "fc2", "fc1": "fc1", "fc2": "fc2"})
        gated = src + ("mlp.gate_proj.weight" if hf else "mlp.fc1_g.weight") in state
        for ours in (("w1", "w2", "w3") if gated else ("fc1", "fc2")):
            for p in ("weight", "bias"):
                if src + f"mlp.{mlp_map[ours]}.{p}" in state:
                    out[dst + f"mlp.{ours}.{p}"] = pop(src + f"mlp.{mlp_map[ours]}.{p}")
    if state:
        logger.debug("ignored %d %s tensors: %s", len(state), fmt, sorted(state)[:5])
    _derived_buffers({**config, "depth": depth}, out, 3 * dim)
    return out


def kwargs_from_hf_config(config: dict[str, Any]) -> dict[str, Any]:
    """transformers ``DINOv3ViTConfig`` (config.json) -> constructor kwargs."""
    dim, eps = config["hidden_size"], config.get("layer_norm_eps", 1e-5)
    gated = config.get("use_gated_mlp", False)
    width = config["intermediate_size"]
    norm = next((n for n, e in _NORM_EPS.items() if abs(e - eps) < 1e-12), None)
    if norm is None:
        raise ValueError(f"unsupported layer_norm_eps {eps}; expected 1e-5 or 1e-6")
    qkv_bias = any(config.get(k, True) for k in ("query_bias", "key_bias", "value_bias"))
    return dict(
        patch_size=config.get("patch_size", 16), embed_dim=dim, depth=config["num_hidden_layers"],
        num_heads=config["num_attention_heads"], ffn_layer="swiglu" if gated else "mlp",
        ffn_ratio=(1.5 * width if gated else width) / dim, qkv_bias=qkv_bias,
        mask_k_bias=qkv_bias and not config.get("key_bias", False), proj_bias=config.get("proj_bias", True),
        ffn_bias=config.get("mlp_bias", True), layerscale_init=config.get("layerscale_value", 1.0),
        norm_layer=norm, n_storage_tokens=config.get("num_register_tokens", 0),
        pos_embed_rope_base=config.get("rope_theta", 100.0),
        pos_embed_rope_rescale_coords=config.get("pos_embed_rescale"),
        pos_embed_rope_jitter_coords=config.get("pos_embed_jitter"),
        pos_embed_rope_shift_coords=config.get("pos_embed_shift"),
    )


def export_hf(model: DinoVisionTransformer) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(config.json, state dict) in transformers' DINOv3ViT layout."""
    cfg = model.variant_config
    dim = model.embed_dim
    if cfg.get("pos_embed_rope_base") is None or cfg.get("pos_embed_rope_normalize_coords", "separate") != "separate":
        raise ValueError("transformers' DINOv3ViT supports only base-parametrised RoPE with 'separate' coords")
    block = model.blocks[0]
    gated = hasattr(block.mlp, "w1")
    qkv_bias = block.attn.qkv.bias is not None
    config = {
        "model_type": "dinov3_vit", "architectures": ["DINOv3ViTModel"], "hidden_size": dim,
        "num_hidden_layers": len(model.blocks), "num_attention_heads": model.num_heads,
        "intermediate_size": (block.mlp.w1 if gated else block.mlp.fc1).out_features,
        "use_gated_mlp": gated, "hidden_act": "silu" if gated else "gelu", "patch_size": model.patch_size,
        "image_size": model.img_size, "num_channels": model.patch_embed.in_chans,
        "layer_norm_eps": model.norm.eps, "layerscale_value": cfg.get("layerscale_init") or 1.0,
        "num_register_tokens": model.n_storage_tokens, "rope_theta": cfg["pos_embed_rope_base"],
        "query_bias": qkv_bias, "value_bias": qkv_bias, "key_bias": qkv_bias and not cfg.get("mask_k_bias", False),
        "proj_bias": block.attn.proj.bias is not None, "mlp_bias": (block.mlp.w1 if gated else block.mlp.fc1).bias is not None,
        "pos_embed_rescale": cfg.get("pos_embed_rope_rescale_coords"),
        "pos_embed_jitter": cfg.get("pos_embed_rope_jitter_coords"),
        "pos_embed_shift": cfg.get("pos_embed_rope_shift_coords"),
    }
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    out = {"embeddings.cls_token": sd["cls_token"], "embeddings.mask_token": sd["mask_token"].reshape(1, 1, -1),
           "embeddings.register_tokens": sd.get("storage_tokens", torch.zeros(1, 0, dim)),
           "embeddings.patch_embeddings.weight": sd["patch_embed.proj.weight"],
           "embeddings.patch_embeddings.bias": sd["patch_embed.proj.bias"],
           "norm.weight": sd["norm.weight"], "norm.bias": sd["norm.bias"]}
    mlp_map = {"w1": "gate_proj", "w2": "up_proj", "w3": "down_proj"} if gated else {"fc1": "up_proj", "fc2": "down_proj"}
    for i in range(len(model.blocks)):
        src, dst = f"blocks.{i}.", f"layer.{i}."
        for ours, theirs in {"norm1": "norm1", "norm2": "norm2", "attn.proj": "attention.o_proj",
                             **{f"mlp.{a}": f"mlp.{b}" for a, b in mlp_map.items()}}.items():
            for p in ("weight", "bias"):
                if src + f"{ours}.{p}" in sd:
                    out[dst + f"{theirs}.{p}"] = sd[src + f"{ours}.{p}"]
        for name, w in zip("qkv", sd[src + "attn.qkv.weight"].chunk(3)):
            out[dst + f"attention.{name}_proj.weight"] = w
        if qkv_bias:
            bias = sd[src + "attn.qkv.bias"] * sd.get(src + "attn.qkv.bias_mask", torch.ones(3 * dim))
            for name, b in zip("qkv", bias.chunk(3)):
                if name != "k" or config["key_bias"]:
                    out[dst + f"attention.{name}_proj.bias"] = b
        for j in (1, 2):
            out[dst + f"layer_scale{j}.lambda1"] = sd.get(src + f"ls{j}.gamma", torch.ones(dim))
    return config, {k: v.contiguous() for k, v in out.items()}
