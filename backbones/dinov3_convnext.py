"""DINOv3 ConvNeXt: a stem and four stages of ConvNeXt blocks (total stride 32), no classifier.

The "CLS token" is the average-pooled last feature map; it and the last-stage map tokens go
through the final LayerNorm. State-dict keys follow the official ``dinov3.models.convnext``
(including ``norms.3.*``, an alias of ``norm.*``) so official ``.pth`` files load strictly.
Variants are data (``variants.DINOV3_CONVNEXT``); any size can be built with overrides.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dinobench.backbones.layers.block import drop_path
from dinobench.backbones.family import build_variant, level, pack_layers, variant_getattr
from dinobench.backbones.variants import DINOV3_CONVNEXT, IMAGENET_MEAN, IMAGENET_STD

HF_MODEL_TYPES = ("dinov3_convnext",)
LAYER_NORM_EPS = 1e-6  # every LayerNorm of the official ConvNeXt
TOTAL_STRIDE = 32  # stem 4, then three 2x downsamplings
STAGE_STRIDES = (4, 8, 16, 32)  # input pixels per map cell after each stage


class LayerNorm(nn.Module):
    """Official ConvNeXt LayerNorm over channels: ``[..., C]`` (channels_last) or ``[B, C, H, W]``."""

    def __init__(self, dim: int, eps: float = LAYER_NORM_EPS, data_format: str = "channels_last") -> None:
        super().__init__()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"unknown data_format {data_format!r}")
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps, self.data_format, self.normalized_shape = eps, data_format, (dim,)

    def reset_parameters(self) -> None:
        """Identity transform: weight 1, bias 0."""
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Normalise over the channel dimension (the official channels_first formula, not F.layer_norm)."""
        if self.data_format == "channels_last":
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class Block(nn.Module):
    """ConvNeXt block: 7x7 depthwise conv, LayerNorm, 4x MLP with GELU, LayerScale, residual."""

    def __init__(self, dim: int, drop_path: float = 0.0, layer_scale_init_value: float = 1e-6) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.layer_scale_init_value = layer_scale_init_value
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init_value)) if layer_scale_init_value > 0 else None
        self.drop_path_rate = drop_path

    def forward(self, x: Tensor) -> Tensor:
        """``x + gamma * mlp(norm(dwconv(x)))`` on an NCHW map."""
        y = self.pwconv2(self.act(self.pwconv1(self.norm(self.dwconv(x).permute(0, 2, 3, 1)))))
        if self.gamma is not None:
            y = self.gamma * y
        return x + drop_path(y.permute(0, 3, 1, 2), self.drop_path_rate, self.training)


class ConvNeXt(nn.Module):
    """The DINOv3 ConvNeXt backbone (constructor arguments use the official names).

    ``patch_size`` is the official option to resize ``get_intermediate_layers`` maps to the grid
    of a ViT with that patch size (``None``, as in the released models: native resolution); the
    ``patch_size`` attribute of the backbone contract is always the total stride, 32.
    """

    def __init__(
        self,
        *,
        in_chans: int = 3,
        depths: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        patch_size: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        super().__init__()
        if len(depths) != 4 or len(dims) != 4:
            raise ValueError(f"ConvNeXt has 4 stages: got depths={list(depths)}, dims={list(dims)}")
        self.downsample_layers = nn.ModuleList([
            nn.Sequential(nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4),
                          LayerNorm(dims[0], data_format="channels_first")),
            *(nn.Sequential(LayerNorm(dims[i], data_format="channels_first"),
                            nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)) for i in range(3)),
        ])
        total = sum(depths)  # stochastic depth rises linearly over all blocks (np.linspace(0, rate, total))
        rates = [drop_path_rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]
        starts = [sum(depths[:i]) for i in range(4)]
        self.stages = nn.ModuleList(
            nn.Sequential(*(Block(dims[i], rates[starts[i] + j], layer_scale_init_value) for j in range(depths[i])))
            for i in range(4)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=LAYER_NORM_EPS)
        # official: per-stage norms for get_intermediate_layers; norms[3] *is* self.norm, so the
        # state dict holds it twice (norm.* and norms.3.*), as official checkpoints do
        self.norms = nn.ModuleList([nn.Identity(), nn.Identity(), nn.Identity(), self.norm])
        self.head = nn.Identity()
        self.embed_dim = self.num_features = dims[-1]
        self.embed_dims = list(dims)
        self.n_blocks = 4
        self.drop_path_rate = drop_path_rate
        self.n_storage_tokens = 0
        self.patch_size = TOTAL_STRIDE
        self.resize_patch_size = patch_size
        #: one entry per stage get_intermediate_layers returns: its width at stride 4, 8, 16, 32
        #: (all at ``patch_size`` when the official option resizes the maps to a ViT grid)
        self.feature_info = [level(i, f"stages.{i}", dims[i], patch_size or STAGE_STRIDES[i]) for i in range(4)]
        self.image_mean, self.image_std = tuple(mean), tuple(std)

    def init_weights(self) -> None:
        """Official random init: trunc-normal(0.02) convs/linears, zero biases, identity norms, gamma=init."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.LayerNorm, LayerNorm)):
                module.reset_parameters()
            elif isinstance(module, Block) and module.gamma is not None:
                nn.init.constant_(module.gamma, module.layer_scale_init_value)

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(f"expected an image batch [B, C, H, W], got a tensor of shape {tuple(x.shape)}")
        if min(x.shape[-2:]) < TOTAL_STRIDE:
            raise ValueError(f"image {x.shape[-2]}x{x.shape[-1]} is smaller than the total stride "
                             f"{TOTAL_STRIDE}x{TOTAL_STRIDE} (the last stage would be empty)")

    def _stage_maps(self, x: Tensor, n: int | Sequence[int] = 1) -> list[tuple[int, Tensor]]:
        """``(stage index, NCHW map)`` after each wanted stage; no cropping (convolutions floor)."""
        self._check_input(x)
        wanted = range(4 - n, 4) if isinstance(n, int) else [i % 4 for i in n]
        if not wanted or min(wanted) < 0:
            raise ValueError(f"cannot take the last {n} of the 4 stages (blocks) of a ConvNeXt")
        outputs = []
        for i in range(max(wanted) + 1):
            x = self.stages[i](self.downsample_layers[i](x))
            if i in wanted:
                outputs.append((i, x))
        if len(outputs) != len(wanted):
            raise ValueError(f"only {len(outputs)} of the {len(wanted)} requested blocks exist (4 stages)")
        return outputs

    def forward_features_list(self, x_list: list[Tensor], masks_list: list[Tensor | None]) -> list[dict[str, Tensor]]:
        """Features of several image batches (masks are passed through, as in the official code)."""
        outputs = []
        for x, masks in zip(x_list, masks_list):
            ((_, fmap),) = self._stage_maps(x, 1)
            tokens = fmap.flatten(2).transpose(1, 2)  # [B, h*w, C]
            # contract layout [pooled, tokens]; the official x_prenorm is the tokens alone (= ours[:, 1:])
            x_prenorm = torch.cat([fmap.mean((-2, -1)).unsqueeze(1), tokens], dim=1)
            x_norm = self.norm(x_prenorm)
            outputs.append({
                "x_norm_clstoken": x_norm[:, 0],
                "x_storage_tokens": x_norm[:, 1:1],
                "x_norm_patchtokens": x_norm[:, 1:],
                "x_prenorm": x_prenorm,
                "masks": masks,
            })
        return outputs

    def forward_features(self, x: Tensor | list[Tensor], masks: Tensor | list | None = None):
        """Dict with ``x_norm_clstoken [B,D]`` (pooled), ``x_storage_tokens [B,0,D]``,
        ``x_norm_patchtokens [B,N,D]``, ``x_prenorm [B,1+N,D]`` (a list of dicts for a list)."""
        if isinstance(x, Tensor):
            return self.forward_features_list([x], [masks])[0]
        return self.forward_features_list(list(x), list(masks) if masks is not None else [None] * len(x))

    def get_intermediate_layers(
        self,
        x: Tensor,
        n: int | Sequence[int] = 1,
        reshape: bool = False,
        return_class_token: bool = False,
        return_extra_tokens: bool = False,
        norm: bool = True,
    ) -> tuple:
        """Outputs of the last ``n`` stages (or of the stage indices in ``n``), official semantics.

        Class token = average-pooled stage map; ``norm`` applies ``norms[i]`` (identity except
        the last stage). Patches ``[B, N, C_i]`` (``[B, C_i, h, w]`` with ``reshape``), optionally
        zipped with the class token ``[B, C_i]`` and the (empty) storage tokens ``[B, 0, C_i]``.
        """
        height, width = x.shape[-2:]
        class_tokens, patches = [], []
        for i, fmap in self._stage_maps(x, n):
            cls = fmap.mean((-2, -1))
            if self.resize_patch_size is not None:  # official: resize to a ViT grid, pool unchanged
                size = (height // self.resize_patch_size, width // self.resize_patch_size)
                fmap = F.interpolate(fmap, size=size, mode="bilinear", antialias=True)
            tokens = fmap.flatten(2).transpose(1, 2)
            if norm:
                cls, tokens = self.norms[i](cls), self.norms[i](tokens)
            class_tokens.append(cls)
            patches.append(tokens.transpose(1, 2).reshape(fmap.shape).contiguous() if reshape else tokens)
        extra = [p.new_zeros(p.shape[0], 0, p.shape[1] if reshape else p.shape[-1]) for p in patches]
        return pack_layers(patches, class_tokens if return_class_token else None,
                           extra if return_extra_tokens else None)

    def forward(self, x: Tensor, is_training: bool = False, **kwargs: Any):
        """Normalised pooled token (``is_training=True``: the full feature dict)."""
        out = self.forward_features(x, **kwargs)
        return out if is_training else self.head(out["x_norm_clstoken"])


def build(variant: str | None, **overrides: Any) -> ConvNeXt:
    """Build ``variant`` with official-name ``overrides`` (random init, seeded by the caller).

    ``variant=None`` builds from ``overrides`` alone (e.g. kwargs read from a config.json).
    """
    return build_variant(ConvNeXt, DINOV3_CONVNEXT, variant, overrides)


__getattr__ = variant_getattr(__name__, DINOV3_CONVNEXT, build)  # ``module.<variant>(**overrides)``

#: overrides that make any variant tiny (contract tests over the registry); distinct stage widths
TINY_OVERRIDES: dict[str, Any] = {"depths": [1, 1, 1, 1], "dims": [8, 16, 24, 32]}


# ----------------------------------------------------------------------------- transformers interop
# official key <-> transformers DINOv3ConvNextModel key (transformers >= 5 nests stages under
# ``model.``; checkpoints on the Hub and transformers 4.x do not -- both are read, the Hub form written)
_HF_BLOCK_NAMES = {"depthwise_conv": "dwconv", "layer_norm": "norm", "pointwise_conv1": "pwconv1",
                   "pointwise_conv2": "pwconv2", "gamma": "gamma"}
_OURS_BLOCK_NAMES = {v: k for k, v in _HF_BLOCK_NAMES.items()}
_HF_KEY = re.compile(
    r"^(?:model\.)?stages\.(\d+)\.(?:downsample_layers\.(\d+)|layers\.(\d+)\.(\w+))(\.weight|\.bias|)$")
_OFFICIAL_KEY = re.compile(r"^(?:downsample_layers\.\d+\.\d+|stages\.\d+\.\d+\.(?:dwconv|norm|pwconv1|pwconv2))\.")


def kwargs_from_hf_config(config: dict) -> dict:
    """Constructor kwargs (official names) from a transformers ``DINOv3ConvNextConfig`` config.json dict."""
    act, eps = config.get("hidden_act", "gelu"), config.get("layer_norm_eps", LAYER_NORM_EPS)
    if act != "gelu" or abs(eps - LAYER_NORM_EPS) > 1e-12:
        raise ValueError(f"unsupported DINOv3 ConvNeXt config: hidden_act={act!r}, layer_norm_eps={eps} "
                         f"(the official architecture uses 'gelu' and {LAYER_NORM_EPS})")
    return {
        "in_chans": config.get("num_channels", 3),
        "depths": list(config.get("depths") or [3, 3, 9, 3]),
        "dims": list(config.get("hidden_sizes") or [96, 192, 384, 768]),
        "drop_path_rate": config.get("drop_path_rate", 0.0),
        "layer_scale_init_value": config.get("layer_scale_init_value", 1e-6),
    }


_TIMM_KEY = re.compile(r"^stages\.(\d+)\.(?:downsample\.(\d+)|blocks\.(\d+)\.(conv_dw|norm|mlp\.fc1|mlp\.fc2|gamma))"
                       r"(\.weight|\.bias|)$")
_TIMM_BLOCK_NAMES = {"conv_dw": "dwconv", "norm": "norm", "mlp.fc1": "pwconv1", "mlp.fc2": "pwconv2", "gamma": "gamma"}


def detect_format(state: dict[str, Tensor]) -> str | None:
    """``"official"`` (dinov3 ``.pth`` names, also ours), ``"hf"`` (transformers), ``"timm"``
    (``convnext_*.dinov3_lvd1689m``) or ``None``."""
    if any(_OFFICIAL_KEY.match(k) for k in state):
        return "official"
    if any(_HF_KEY.match(k) for k in state):
        return "hf"
    if "stem.0.weight" in state and any(_TIMM_KEY.match(k) for k in state):
        return "timm"
    return None


def _from_timm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """timm names -> official: stem/downsample, blocks, ``head.norm`` = final norm (``head.fc`` dropped)."""
    out = {}
    for key, value in state.items():
        if key.startswith("stem."):
            out["downsample_layers.0." + key[len("stem."):]] = value
        elif key.startswith("head.norm."):
            leaf = key.split(".")[-1]
            out[f"norm.{leaf}"] = out[f"norms.3.{leaf}"] = value
        elif key.startswith("head."):
            continue  # classifier of timm's model, not part of the backbone
        elif (match := _TIMM_KEY.match(key)) is not None:
            stage, down, block, name, suffix = match.groups()
            out[f"downsample_layers.{stage}.{down}{suffix}" if down is not None
                else f"stages.{stage}.{block}.{_TIMM_BLOCK_NAMES[name]}{suffix}"] = value
        else:
            raise ValueError(f"unexpected key {key!r} in a timm ConvNeXt state dict")
    return out


def convert_state_dict(state: dict[str, Tensor], fmt: str, config: dict | None = None) -> dict[str, Tensor]:
    """Rename ``fmt`` keys to official ones (``config`` is unused: the mapping is size-free)."""
    if fmt == "official":
        return dict(state)
    if fmt == "timm":
        return _from_timm(state)
    if fmt != "hf":
        raise ValueError(f"unknown state-dict format {fmt!r} for dinov3_convnext (expected official, hf or timm)")
    out = {}
    for key, value in state.items():
        if key in ("layer_norm.weight", "layer_norm.bias"):
            out[f"norm.{key.split('.')[-1]}"] = out[f"norms.3.{key.split('.')[-1]}"] = value
            continue
        match = _HF_KEY.match(key)
        if match is None or (match[4] is not None and match[4] not in _HF_BLOCK_NAMES):
            raise ValueError(f"unexpected key {key!r} in a transformers DINOv3ConvNextModel state dict")
        stage, down, block, name, suffix = match.groups()
        if down is not None:
            out[f"downsample_layers.{stage}.{down}{suffix}"] = value
        else:
            out[f"stages.{stage}.{block}.{_HF_BLOCK_NAMES[name]}{suffix}"] = value
    return out


def export_hf(model: ConvNeXt) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``(config.json dict, state dict)`` loadable by ``transformers.DINOv3ConvNextModel.from_pretrained``."""
    config = {
        "model_type": "dinov3_convnext",
        "architectures": ["DINOv3ConvNextModel"],
        "num_channels": model.downsample_layers[0][0].in_channels,
        "hidden_sizes": list(model.embed_dims),
        "depths": [len(stage) for stage in model.stages],
        "hidden_act": "gelu",
        "layer_norm_eps": LAYER_NORM_EPS,
        "layer_scale_init_value": model.stages[0][0].layer_scale_init_value,
        "drop_path_rate": model.drop_path_rate,
        "initializer_range": 0.02,
        "image_size": 224,
    }
    state: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        if key.startswith("norms."):
            continue  # alias of norm.*
        parts = key.split(".")
        if parts[0] == "norm":
            state[f"layer_norm.{parts[1]}"] = value
        elif parts[0] == "downsample_layers":
            state[f"stages.{parts[1]}.downsample_layers.{parts[2]}.{parts[3]}"] = value
        else:  # stages.{i}.{j}.{name}[.weight|.bias]
            state[".".join(["stages", parts[1], "layers", parts[2], _OURS_BLOCK_NAMES[parts[3]], *parts[4:]])] = value
    for i, stage in enumerate(model.stages):  # no LayerScale (init <= 0) == a gamma of ones
        for j, block in enumerate(stage):
            if block.gamma is None:
                state[f"stages.{i}.layers.{j}.gamma"] = torch.ones(block.pwconv2.out_features)
    return config, {k: v.detach().contiguous() for k, v in state.items()}
