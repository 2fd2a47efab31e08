"""``build_depther(backbone, **cfg)``: a depth (or canopy-height) model in the official DINOv3 layout.

The keyword names are the fields of the official depth ``DecoderConfig`` (``min_depth``, ``max_depth``,
``bins_strategy``, ``norm_strategy``, ``backbone_out_layers``, ``adapt_to_patch_size``, ``use_backbone_norm``,
``type``, ``n_output_channels``, ``use_batchnorm``, ``use_cls_token``, ``head_kwargs`` - a dict as in the config:
``channels``, ``post_process_channels``, ``n_hidden_channels``, ``use_bias``, ``projection_after_fusion``), with
the official defaults. The model holds the frozen ``backbone`` and a ``decoder`` whose ``state_dict()`` keys are the
official decoder's (:class:`~dinobench.heads.depth.LinearDepthHead` = ``LinearHead``, :class:`~dinobench.heads.dpt.
DPTHead`), so released heads (``dinov3_vit7b16_synthmix_dpt_head``, ``dinov3_vitl16_chmv2_dpt_head``, a linear
``model_final.pth``'s ``model``) load with :meth:`Depther.load_decoder` (strict). ``forward(images)`` is the
official ``Depther.forward``: images padded to whole patches (centre padding, or stretched), the selected layers
(``get_intermediate_layers(..., return_class_token=True, norm=use_backbone_norm)``), the decoder, bins -> depth -
at the decoder's resolution (patch grid for linear, 16x for DPT). The official model runs under autocast (bf16 on
CPU); this one in the input's dtype.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from dinobench.errors import ConfigError
from dinobench.heads.depth import BinsToDepth, LinearDepthHead
from dinobench.heads.dpt import DPTHead
from dinobench.heads.necks import OFFICIAL_LAYER_SETS, resolve_layers
from dinobench.heads.weights import load_head_state, read_head_state

PATCH_ADAPTATIONS = ("center_padding", "stretch", "never")
DPT_HEAD_KEYS = ("channels", "post_process_channels", "n_hidden_channels", "use_bias", "projection_after_fusion")
#: the official ``DPTHead``'s own defaults, used for what ``head_kwargs`` leaves out (the CHMv2 head sets neither)
DPT_HEAD_DEFAULTS = {"channels": 256, "post_process_channels": [128, 256, 512, 1024]}


def _name(value: Any) -> Any:
    """An official enum member (``BackboneLayersSet.LAST``, ``PatchSizeAdaptationStrategy...``) -> its value."""
    return getattr(value, "value", value)


def adapt_to_patch(images: Tensor, multiple: int, strategy: str) -> Tensor:
    """Images padded (centred, zeros) or stretched (bilinear) to whole multiples of ``multiple``; as they are for
    ``never``."""
    height, width = images.shape[-2:]
    new_h, new_w = math.ceil(height / multiple) * multiple, math.ceil(width / multiple) * multiple
    if (new_h, new_w) == (height, width) or strategy == "never":
        return images
    if strategy == "stretch":
        return F.interpolate(images, size=(new_h, new_w), mode="bilinear")
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return F.pad(images, (left, new_w - width - left, top, new_h - height - top))


class Depther(nn.Module):
    """Frozen backbone -> selected layers -> official-layout decoder -> depth (see the module docstring)."""

    def __init__(self, backbone: nn.Module, decoder: nn.Module, layers: Sequence[int], use_backbone_norm: bool,
                 adapt_to_patch_size: str) -> None:
        super().__init__()
        self.backbone, self.decoder = backbone, decoder
        self.layers, self.use_backbone_norm, self.adapt_to_patch_size = list(layers), use_backbone_norm, adapt_to_patch_size
        self.backbone.requires_grad_(False)

    def features(self, images: Tensor) -> list[tuple[Tensor, Tensor]]:
        """``(patch map [B, D, h, w], class token [B, D])`` of every selected layer."""
        multiple = int(getattr(self.backbone, "input_pad_size", None) or self.backbone.patch_size)
        images = adapt_to_patch(images, multiple, self.adapt_to_patch_size)
        return list(self.backbone.get_intermediate_layers(images, n=self.layers, reshape=True,
                                                          return_class_token=True, norm=self.use_backbone_norm))

    def forward(self, images: Tensor) -> Tensor:
        """Depth ``[B, 1, h', w']`` at the decoder's output resolution."""
        return self.decoder(self.features(images))

    def load_decoder(self, source: str | Mapping[str, Tensor]) -> None:
        """Load released decoder weights strictly: a file (``.pth``/``.safetensors``; an official checkpoint's
        ``model`` entry is used) or a state dict; a mismatch is one line naming the first missing/unexpected keys."""
        if isinstance(source, Mapping):
            load_head_state(self.decoder, source)
        else:
            load_head_state(self.decoder, read_head_state(source), source)


def build_depther(backbone: nn.Module, *, min_depth: float = 0.001, max_depth: float = 80.0,
                  bins_strategy: str = "linear", norm_strategy: str = "linear",
                  head_kwargs: Mapping[str, Any] | None = None,
                  backbone_out_layers: Any = "FOUR_EVEN_INTERVALS", adapt_to_patch_size: Any = "center_padding",
                  use_backbone_norm: bool = True, type: str = "linear", n_output_channels: int = 256,
                  use_batchnorm: bool = False, use_cls_token: bool = False) -> Depther:
    """The official ``make_depther_from_config(backbone, DecoderConfig(**cfg))`` model (see the module docstring)."""
    head_kwargs = dict(head_kwargs or {})
    layers_spec = _name(backbone_out_layers)
    if isinstance(layers_spec, str):
        if layers_spec.upper() not in OFFICIAL_LAYER_SETS:
            raise ConfigError(f"build_depther: backbone_out_layers={layers_spec!r}; use one of {', '.join(OFFICIAL_LAYER_SETS)} "
                              f"or a list of block indices")
        layers_spec = OFFICIAL_LAYER_SETS[layers_spec.upper()]
    layers = resolve_layers(backbone, layers_spec)
    adaptation = str(_name(adapt_to_patch_size))
    if adaptation not in PATCH_ADAPTATIONS:
        raise ConfigError(f"build_depther: adapt_to_patch_size={adaptation!r}; use one of {', '.join(PATCH_ADAPTATIONS)}")
    embed_dims = getattr(backbone, "embed_dims", None)  # per-block widths when a backbone has them (as official)
    in_channels = [int(embed_dims[i]) if embed_dims else int(backbone.embed_dim) for i in layers]
    depth = dict(min_depth=float(min_depth), max_depth=float(max_depth), bins_strategy=bins_strategy,
                 norm_strategy=norm_strategy)
    if type == "linear":
        if head_kwargs:
            raise ConfigError(f"build_depther: type='linear' takes no head_kwargs (got {sorted(head_kwargs)})")
        decoder: nn.Module = LinearDepthHead(in_channels, n_bins=int(n_output_channels), use_batchnorm=use_batchnorm,
                                             use_cls_token=use_cls_token, **depth)
    elif type == "dpt":
        unknown = sorted(set(head_kwargs) - set(DPT_HEAD_KEYS) - {"readout_type", "expand_channels"})
        if unknown:
            raise ConfigError(f"build_depther: head_kwargs key {unknown[0]!r} is not a DPT head argument "
                              f"({', '.join(DPT_HEAD_KEYS)})")
        if head_kwargs.pop("expand_channels", False):
            raise ConfigError("build_depther: head_kwargs expand_channels=True is not supported (no released head uses it)")
        head_kwargs.pop("readout_type", None)  # official make_head derives it from use_cls_token
        head_kwargs = {**DPT_HEAD_DEFAULTS, **head_kwargs}
        decoder = DPTHead(in_channels, readout_type="project" if use_cls_token else "ignore",
                          use_batchnorm=use_batchnorm, n_bins=int(n_output_channels), **head_kwargs, **depth)
    else:
        raise ConfigError(f"build_depther: type={type!r}; use 'linear' or 'dpt'")
    return Depther(backbone, decoder, layers, bool(use_backbone_norm), adaptation).eval()


__all__ = ["BinsToDepth", "Depther", "build_depther"]
