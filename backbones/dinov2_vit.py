"""DINOv2 Vision Transformer: ``[cls, registers, patches]``, learned absolute position embedding.

State-dict keys follow the official ``dinov2`` ``DinoVisionTransformer`` as built by its torch-hub
entry points (``block_chunks=0``), so official ``*_pretrain.pth`` files load strictly. The
position embedding of the pre-training grid (518 px, 37x37) is resized to the input grid
exactly as the official code does (bicubic; scale factor with a 0.1 offset and no antialias
for the original models, output size with antialias for the register models). transformers'
``Dinov2Model`` and timm's non-register ``vit_*_dinov2`` resize differently, so they agree with
the official model only at 518x518 (see ``interpolate_pos_encoding``).
"""

from __future__ import annotations

import logging
import math
import re
from functools import partial
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dinobench.backbones.layers import LayerScale, PatchEmbed, SelfAttentionBlock
from dinobench.backbones.layers.init import init_vit_weights_
from dinobench.backbones.family import build_variant, split_vit_layers, variant_getattr, vit_feature_info
from dinobench.backbones.variants import DINOV2_VIT, IMAGENET_MEAN, IMAGENET_STD

logger = logging.getLogger("dinobench")

FFN_LAYERS = ("mlp", "swiglu", "swiglufused")  # official: both SwiGLU names build SwiGLUFFNFused


class SwiGLUFFNFused(nn.Module):
    """DINOv2's SwiGLU (ViT-g): fused ``w12`` = [gate; value], width ``ceil8(2/3 hidden)`` (4096 for g)."""

    def __init__(self, dim: int, hidden_dim: int, bias: bool = True) -> None:
        super().__init__()
        width = (int(hidden_dim * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * width, bias=bias)
        self.w3 = nn.Linear(width, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        gate, value = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(gate) * value)


class DinoVisionTransformer(nn.Module):
    """The DINOv2 ViT backbone (constructor arguments and defaults are the official ones)."""

    def __init__(
        self,
        *,
        img_size: int = 224, patch_size: int = 16, in_chans: int = 3,
        embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
        qkv_bias: bool = True, ffn_bias: bool = True, proj_bias: bool = True,
        drop_path_rate: float = 0.0, drop_path_uniform: bool = False,
        init_values: float | None = None,  # LayerScale init; None or 0: no LayerScale
        ffn_layer: str = "mlp",
        num_register_tokens: int = 0,
        interpolate_antialias: bool = False, interpolate_offset: float = 0.1,
        mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if ffn_layer not in FFN_LAYERS:
            raise ValueError(f"unknown ffn_layer {ffn_layer!r}; expected one of {FFN_LAYERS}")
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.embed_dim = self.num_features = embed_dim
        self.patch_size, self.img_size, self.n_blocks, self.num_heads = patch_size, img_size, depth, num_heads
        #: one entry per level get_intermediate_layers returns (each block: embed_dim at patch stride)
        self.feature_info = vit_feature_info(depth, embed_dim, patch_size)
        self.num_tokens = 1
        self.num_register_tokens = self.n_storage_tokens = num_register_tokens
        self.interpolate_antialias, self.interpolate_offset = interpolate_antialias, interpolate_offset
        self.mlp_ratio, self.init_values = mlp_ratio, init_values
        self.image_mean, self.image_std = tuple(mean), tuple(std)
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        grid = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, embed_dim))
        self.register_tokens = (nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
                                if num_register_tokens else None)
        # stochastic-depth rate rising linearly over the blocks (plain Python: works on the meta device)
        rates = [drop_path_rate if drop_path_uniform else drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList()
        for rate in rates:
            # the shared SwiGLU has separate w1/w2; official DINOv2 checkpoints fuse them (w12)
            ffn = SwiGLUFFNFused(embed_dim, int(embed_dim * mlp_ratio), bias=ffn_bias) if ffn_layer != "mlp" else None
            self.blocks.append(SelfAttentionBlock(
                embed_dim, num_heads, ffn_ratio=mlp_ratio, ffn_layer="mlp", qkv_bias=qkv_bias,
                proj_bias=proj_bias, ffn_bias=ffn_bias, mask_k_bias=False, layerscale_init=init_values,
                drop_path_rate=rate, norm_layer=norm, ffn=ffn,
            ))
        self.norm = norm(embed_dim)
        self.head = nn.Identity()
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))

    def init_weights(self) -> None:
        """Official random init: trunc-normal(0.02) pos-embed/linears, N(0, 1e-6) cls/registers."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        nn.init.zeros_(self.mask_token)
        init_vit_weights_(self, (nn.LayerNorm, LayerScale, PatchEmbed))

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

    def interpolate_pos_encoding(self, x: Tensor, height: int, width: int) -> Tensor:
        """Position embedding ``[1, 1+N, D]`` for an image of ``height x width`` px (official resizing).

        Official: bicubic in float32; with ``interpolate_offset`` the call passes the scale factor
        ``(grid + offset) / M`` (which also sets the sampling positions), else the output size;
        no resizing when the grid is the square pre-training grid.
        """
        n_pos = self.pos_embed.shape[1] - 1
        side = int(math.sqrt(n_pos))
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        if grid_h * grid_w == n_pos and grid_h == grid_w:
            return self.pos_embed
        pos = self.pos_embed.float()
        patch_pos = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        if self.interpolate_offset:
            offset = self.interpolate_offset
            resize = {"scale_factor": ((grid_h + offset) / side, (grid_w + offset) / side)}
        else:
            resize = {"size": (grid_h, grid_w)}
        patch_pos = F.interpolate(patch_pos, mode="bicubic", antialias=self.interpolate_antialias, **resize)
        patch_pos = patch_pos.permute(0, 2, 3, 1).flatten(1, 2)  # (g + 0.1) / M * M floors to g: shapes agree
        return torch.cat([pos[:, :1], patch_pos], dim=1).to(x.dtype)

    def prepare_tokens_with_masks(self, x: Tensor, masks: Tensor | None = None) -> Tensor:
        """Patch-embed, swap masked patches for ``mask_token``, add cls + position, insert registers."""
        x = self._crop_to_patch_multiple(x)
        height, width = x.shape[-2:]
        tokens = self.patch_embed(x).flatten(1, 2)
        batch = tokens.shape[0]
        if masks is not None:
            tokens = torch.where(masks.unsqueeze(-1), self.mask_token.to(tokens.dtype).unsqueeze(0), tokens)
        tokens = torch.cat([self.cls_token.expand(batch, -1, -1), tokens], dim=1)
        tokens = tokens + self.interpolate_pos_encoding(tokens, height, width)
        if self.register_tokens is not None:
            tokens = torch.cat([tokens[:, :1], self.register_tokens.expand(batch, -1, -1), tokens[:, 1:]], dim=1)
        return tokens

    # ----------------------------------------------------------------- forward
    def _features(self, x_prenorm: Tensor, masks: Tensor | None) -> dict[str, Tensor | None]:
        x_norm = self.norm(x_prenorm)
        n_prefix = 1 + self.num_register_tokens
        return {
            "x_norm_clstoken": x_norm[:, 0],
            "x_storage_tokens": x_norm[:, 1:n_prefix],
            "x_norm_regtokens": x_norm[:, 1:n_prefix],  # the official name of the same tensor
            "x_norm_patchtokens": x_norm[:, n_prefix:],
            "x_prenorm": x_prenorm,
            "masks": masks,
        }

    def forward_features(self, x: Tensor | list[Tensor], masks: Tensor | list | None = None):
        """Dict with ``x_norm_clstoken [B,D]``, ``x_storage_tokens [B,R,D]`` (normed registers),
        ``x_norm_patchtokens [B,N,D]``, ``x_prenorm [B,1+R+N,D]`` (a list of dicts for a list)."""
        if isinstance(x, list):
            masks_list = list(masks) if masks is not None else [None] * len(x)
            return [self.forward_features(xi, mi) for xi, mi in zip(x, masks_list)]
        tokens = self.prepare_tokens_with_masks(x, masks)
        for block in self.blocks:
            tokens = block(tokens)
        return self._features(tokens, masks)

    def _block_outputs(self, x: Tensor, n: int | Sequence[int]) -> list[Tensor]:
        tokens = self.prepare_tokens_with_masks(x)
        total = len(self.blocks)
        wanted = range(total - n, total) if isinstance(n, int) else [i % total for i in n]
        outputs = []
        for i, block in enumerate(self.blocks[: max(wanted) + 1]):
            tokens = block(tokens)
            if i in wanted:
                outputs.append(tokens)
        if len(outputs) != len(wanted):
            raise ValueError(f"only {len(outputs)} of the {len(wanted)} requested blocks exist (depth {total})")
        return outputs

    def get_intermediate_layers(self, x: Tensor, n: int | Sequence[int] = 1, reshape: bool = False,
                                return_class_token: bool = False, return_extra_tokens: bool = False,
                                norm: bool = True) -> tuple:
        """Outputs of the last ``n`` blocks (or of the block indices in ``n``), official semantics.

        Patch tokens ``[B, N, D]`` (``[B, D, h, w]`` with ``reshape``), optionally zipped with the
        class token ``[B, D]`` and the register tokens ``[B, R, D]`` (DINOv3's signature).
        """
        x = self._crop_to_patch_multiple(x)
        outputs = self._block_outputs(x, n)
        if norm:
            outputs = [self.norm(out) for out in outputs]
        return split_vit_layers(outputs, 1 + self.num_register_tokens, tuple(x.shape[-2:]), self.patch_size,
                                reshape, return_class_token, return_extra_tokens)

    def forward(self, x: Tensor, is_training: bool = False, **kwargs: Any):
        """Normalised class token (``is_training=True``: the full feature dict)."""
        out = self.forward_features(x, **kwargs)
        return out if is_training else self.head(out["x_norm_clstoken"])


def build(variant: str | None, **overrides: Any) -> DinoVisionTransformer:
    """Build ``variant`` with official-name ``overrides`` (random init, seeded by the caller).

    ``variant=None`` builds from ``overrides`` alone (e.g. kwargs read from a config.json).
    """
    return build_variant(DinoVisionTransformer, DINOV2_VIT, variant, overrides)


__getattr__ = variant_getattr(__name__, DINOV2_VIT, build)  # ``module.<variant>(**overrides)``

#: overrides that make any variant tiny (contract tests over the registry): a 4x4 pre-training grid
TINY_OVERRIDES: dict[str, Any] = {"img_size": 56, "embed_dim": 32, "depth": 2, "num_heads": 2}


# --------------------------------------------------------------------------- checkpoint formats
HF_MODEL_TYPES = ("dinov2", "dinov2_with_registers")
_HF_PREFIXES = ("dinov2.", "dinov2_with_registers.")
#: (interpolate_offset, interpolate_antialias) that transformers' classes effectively use
_HF_RESIZE = {"dinov2": (0.0, False), "dinov2_with_registers": (0.0, True)}


def _strip_hf_prefix(state: dict[str, Tensor]) -> dict[str, Tensor]:
    for prefix in _HF_PREFIXES:
        if any(k.startswith(prefix + "embeddings.") for k in state):
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def _depth(state: dict[str, Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return 1 + max(int(m.group(1)) for k in state if (m := pattern.match(k)))


def detect_format(state: dict[str, Tensor]) -> str | None:
    """``official`` (also dinobench), ``hf`` (transformers Dinov2[WithRegisters]) or ``timm``."""
    hf = _strip_hf_prefix(state)
    if "embeddings.position_embeddings" in hf or any(k.startswith("encoder.layer.") for k in hf):
        return "hf"
    if "pos_embed" not in state or "rope_embed.periods" in state or not any(k.startswith("blocks.") for k in state):
        return None
    return "official" if "mask_token" in state else "timm"  # timm drops the mask token


def _from_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    state = _strip_hf_prefix(state)
    cls = state["embeddings.cls_token"]
    mask = state.get("embeddings.mask_token")
    out = {"cls_token": cls, "pos_embed": state["embeddings.position_embeddings"],
           "mask_token": (mask if mask is not None else torch.zeros_like(cls)).reshape(1, -1),
           "norm.weight": state["layernorm.weight"], "norm.bias": state["layernorm.bias"]}
    registers = state.get("embeddings.register_tokens")
    if registers is not None and registers.shape[1] > 0:
        out["register_tokens"] = registers
    for p in ("weight", "bias"):
        out[f"patch_embed.proj.{p}"] = state[f"embeddings.patch_embeddings.projection.{p}"]
    for i in range(_depth(state, "encoder.layer.")):
        src, dst = f"encoder.layer.{i}.", f"blocks.{i}."
        legacy = src + "attention.attention.query.weight" in state  # hub files / save_pretrained
        qkv = [f"attention.attention.{n}" for n in ("query", "key", "value")] if legacy else \
            [f"attention.{n}_proj" for n in "qkv"]
        renames = {"norm1": "norm1", "norm2": "norm2", "attn.proj": "attention.output.dense" if legacy
                   else "attention.o_proj", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
                   "mlp.w12": "mlp.weights_in", "mlp.w3": "mlp.weights_out" if legacy else "mlp.down_proj"}
        for p in ("weight", "bias"):
            for ours, theirs in renames.items():
                if src + f"{theirs}.{p}" in state:
                    out[dst + f"{ours}.{p}"] = state[src + f"{theirs}.{p}"]
            if src + f"{qkv[0]}.{p}" in state:
                out[dst + f"attn.qkv.{p}"] = torch.cat([state[src + f"{n}.{p}"] for n in qkv])
            if src + f"mlp.gate_proj.{p}" in state:  # current transformers: gate/up split
                out[dst + f"mlp.w12.{p}"] = torch.cat([state[src + f"mlp.{n}_proj.{p}"] for n in ("gate", "up")])
        for j in (1, 2):
            out[dst + f"ls{j}.gamma"] = state[src + f"layer_scale{j}.lambda1"]
    return out


def _from_timm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    skip = ("head.", "fc_norm.", "norm_pre.", "reg_token", "pos_embed")
    out = {k: v for k, v in state.items() if not k.startswith(skip)}
    pos = state["pos_embed"]
    if math.isqrt(pos.shape[1]) ** 2 == pos.shape[1]:  # no_embed_class (reg4): cls_token holds cls + pos[0]
        pos = torch.cat([pos.new_zeros(1, 1, pos.shape[-1]), pos], dim=1)
    out["pos_embed"] = pos
    if "reg_token" in state and state["reg_token"].shape[1] > 0:
        out["register_tokens"] = state["reg_token"]
    out.setdefault("mask_token", torch.zeros(1, pos.shape[-1]))
    for i in range(_depth(state, "blocks.")):
        fc1, fc2 = state[f"blocks.{i}.mlp.fc1.weight"], state[f"blocks.{i}.mlp.fc2.weight"]
        if fc1.shape[0] == 2 * fc2.shape[1]:  # SwiGLUPacked: fc1 = [gate; value] = official w12
            for p in ("weight", "bias"):
                for theirs, ours in (("fc1", "w12"), ("fc2", "w3")):
                    if f"blocks.{i}.mlp.{theirs}.{p}" in out:
                        out[f"blocks.{i}.mlp.{ours}.{p}"] = out.pop(f"blocks.{i}.mlp.{theirs}.{p}")
    return out


def convert_state_dict(state: dict[str, Tensor], fmt: str, config: dict[str, Any] | None = None) -> dict[str, Tensor]:
    """HF- or timm-named tensors -> official names (tensors are shared, not copied).

    ``official`` state dicts pass through, with training checkpoints' chunked block keys
    (``blocks.<chunk>.<i>.``, ``block_chunks > 0``) flattened to ``blocks.<i>.``.
    """
    if fmt == "official":
        return {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k): v for k, v in state.items()}
    if fmt == "hf":
        return _from_hf(state)
    if fmt == "timm":
        return _from_timm(state)
    raise ValueError(f"unknown checkpoint format {fmt!r}; expected 'official', 'hf' or 'timm'")


def kwargs_from_hf_config(config: dict[str, Any]) -> dict[str, Any]:
    """transformers ``Dinov2Config``/``Dinov2WithRegistersConfig`` (config.json) -> constructor kwargs.

    The resizing of the position embedding is the official one of the matching release
    (transformers' ``Dinov2Model`` itself resizes differently away from 518 px).
    """
    model_type = config.get("model_type", "dinov2")
    if model_type not in HF_MODEL_TYPES:
        raise ValueError(f"model_type {model_type!r} is not a DINOv2 ViT; expected one of {HF_MODEL_TYPES}")
    swiglu = config.get("use_swiglu_ffn", False)
    if not swiglu and config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"unsupported hidden_act {config['hidden_act']!r}; DINOv2 uses gelu")
    if abs(config.get("layer_norm_eps", 1e-6) - 1e-6) > 1e-12:
        raise ValueError(f"unsupported layer_norm_eps {config['layer_norm_eps']}; DINOv2 uses 1e-6")
    image_size = config.get("image_size", 224)
    if not isinstance(image_size, int) and len(set(image_size)) != 1:
        raise ValueError(f"DINOv2 needs a square pre-training grid, got image_size {image_size}")
    image_size = image_size if isinstance(image_size, int) else image_size[0]
    registers = model_type == "dinov2_with_registers"
    n_registers = config.get("num_register_tokens", 4) if registers else 0
    return dict(
        img_size=image_size, patch_size=config.get("patch_size", 16 if registers else 14),
        in_chans=config.get("num_channels", 3), embed_dim=config["hidden_size"],
        depth=config["num_hidden_layers"], num_heads=config["num_attention_heads"],
        mlp_ratio=float(config.get("mlp_ratio", 4)), qkv_bias=config.get("qkv_bias", True),
        init_values=config.get("layerscale_value", 1.0), ffn_layer="swiglufused" if swiglu else "mlp",
        num_register_tokens=n_registers, interpolate_antialias=bool(n_registers),
        interpolate_offset=0.0 if n_registers else 0.1,
    )


def export_hf(model: DinoVisionTransformer) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """(config.json, state dict) as transformers' ``save_pretrained`` writes Dinov2[WithRegisters]Model.

    Tensor names are the hub layout (``attention.attention.query``, ``mlp.weights_in``), which
    transformers 4.x loads natively and 5.x renames on load.
    """
    dim, block, n_reg = model.embed_dim, model.blocks[0], model.num_register_tokens
    swiglu = isinstance(block.mlp, SwiGLUFFNFused)
    if float(model.mlp_ratio) != int(model.mlp_ratio):
        raise ValueError(f"transformers' Dinov2Config takes an integer mlp_ratio, this model has {model.mlp_ratio}")
    model_type = "dinov2_with_registers" if n_reg else "dinov2"
    if _HF_RESIZE[model_type] != (float(model.interpolate_offset or 0.0), bool(model.interpolate_antialias)):
        logger.warning("transformers' %s resizes the position embedding without the official offset/antialias "
                       "settings of this model: outputs agree only at %d px", model_type, model.img_size)
    config: dict[str, Any] = {
        "model_type": model_type, "architectures": ["Dinov2WithRegistersModel" if n_reg else "Dinov2Model"],
        "hidden_size": dim,
        "num_hidden_layers": len(model.blocks), "num_attention_heads": model.num_heads,
        "mlp_ratio": int(model.mlp_ratio), "hidden_act": "gelu", "layer_norm_eps": model.norm.eps,
        "image_size": model.img_size, "patch_size": model.patch_size, "num_channels": model.patch_embed.in_chans,
        "qkv_bias": block.attn.qkv.bias is not None, "use_swiglu_ffn": swiglu, "initializer_range": 0.02,
        "layerscale_value": model.init_values or 1.0, "drop_path_rate": 0.0,
    }
    config.update({"num_register_tokens": n_reg} if n_reg else {"use_mask_token": True})
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    out = {"embeddings.cls_token": sd["cls_token"], "embeddings.mask_token": sd["mask_token"],
           "embeddings.position_embeddings": sd["pos_embed"],
           "embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
           "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
           "layernorm.weight": sd["norm.weight"], "layernorm.bias": sd["norm.bias"]}
    if n_reg:
        out["embeddings.register_tokens"] = sd["register_tokens"]
    mlp = {"w12": "weights_in", "w3": "weights_out"} if swiglu else {"fc1": "fc1", "fc2": "fc2"}
    renames = {"norm1": "norm1", "norm2": "norm2", "attn.proj": "attention.output.dense",
               **{f"mlp.{a}": f"mlp.{b}" for a, b in mlp.items()}}
    for i in range(len(model.blocks)):
        src, dst = f"blocks.{i}.", f"encoder.layer.{i}."
        for ours, theirs in renames.items():
            weight = out[dst + f"{theirs}.weight"] = sd[src + f"{ours}.weight"]
            # transformers always has these biases: zeros stand in exactly for absent ones
            out[dst + f"{theirs}.bias"] = sd.get(src + f"{ours}.bias", weight.new_zeros(weight.shape[0]))
        for name, w in zip(("query", "key", "value"), sd[src + "attn.qkv.weight"].chunk(3)):
            out[dst + f"attention.attention.{name}.weight"] = w
        if config["qkv_bias"]:
            for name, b in zip(("query", "key", "value"), sd[src + "attn.qkv.bias"].chunk(3)):
                out[dst + f"attention.attention.{name}.bias"] = b
        for j in (1, 2):
            out[dst + f"layer_scale{j}.lambda1"] = sd.get(src + f"ls{j}.gamma", torch.ones(dim))
    return config, {k: v.contiguous() for k, v in out.items()}
