"""Necks: what sits between a backbone and a head. A neck gets ``(images, backbone)`` and returns what
its head needs; it knows the channels and stride of what it returns (``out_channels``, ``out_strides``).

The default, :class:`IntermediateLayers`, is what every official DINOv3 dense head reads: the
``(patch_map [B, D, h, w], class_token [B, D])`` of selected blocks, normalised by the backbone's final
norm. An adapter neck (e.g. ViT-Adapter for Mask2Former) needs the images too, hence the signature.
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from dinobench.backbones.contract import level_info, n_levels
from dinobench.errors import ConfigError

#: what :class:`IntermediateLayers` returns: one ``(patch_map, class_token)`` pair per selected layer
LayerFeatures = Sequence[tuple[Tensor, Tensor]]
LAYER_CHOICES = ("last", "four_last", "four_even")
#: the official ``BackboneLayersSet`` names of those choices (what official decoder configs write)
OFFICIAL_LAYER_SETS = {"LAST": "last", "FOUR_LAST": "four_last", "FOUR_EVEN_INTERVALS": "four_even"}


def resolve_layers(backbone: Any, spec: str | Sequence[int]) -> list[int]:
    """Block indices for ``"last"``, ``"four_last"``, ``"four_even"`` (official FOUR_EVEN_INTERVALS:
    ``[4, 11, 17, 23]`` for 24 blocks, ``i * (n // 4) - 1`` otherwise; on backbones with fewer than 4
    blocks, ``round(n * i / 4) - 1`` clamped to 0) or explicit (negative: from the end) indices."""
    n = n_levels(backbone)
    if isinstance(spec, (list, tuple)):
        return [int(i) % n for i in spec]
    if spec == "last":
        return [n - 1]
    if spec == "four_last":
        return [max(i, 0) for i in range(n - 4, n)]
    if spec == "four_even":
        if n == 24:
            return [4, 11, 17, 23]
        if n >= 4:
            return [i * (n // 4) - 1 for i in range(1, 5)]
        return [max(round(n * i / 4) - 1, 0) for i in range(1, 5)]
    raise ConfigError(f"protocol.head.layers: {spec!r} is not one of {', '.join(LAYER_CHOICES)} or a list of "
                      f"block indices")


class Neck(nn.Module):
    """Base class: ``forward(images, backbone)``; ``out_channels``/``out_strides`` describe the output levels."""

    out_channels: list[int]
    out_strides: list[int]

    def forward(self, images: Tensor, backbone: nn.Module) -> Any:  # pragma: no cover - abstract
        """What the head needs from ``backbone`` on ``images``."""
        raise NotImplementedError


class IntermediateLayers(Neck):
    """``get_intermediate_layers(images, n=layers, reshape=True, return_class_token=True, norm=...)``,
    in the order of ``layers`` (duplicates allowed); no parameters."""

    def __init__(self, backbone: nn.Module, layers: str | Sequence[int] = "last",
                 use_backbone_norm: bool = True) -> None:
        super().__init__()
        self.layers = resolve_layers(backbone, layers)
        self.use_backbone_norm = bool(use_backbone_norm)
        info = level_info(backbone, self.layers)
        self.out_channels = [int(level["num_chs"]) for level in info]
        self.out_strides = [int(level["reduction"]) for level in info]

    def forward(self, images: Tensor, backbone: nn.Module) -> list[tuple[Tensor, Tensor]]:  # noqa: D102
        unique = sorted(set(self.layers))
        outs = backbone.get_intermediate_layers(images, n=unique, reshape=True, return_class_token=True,
                                                norm=self.use_backbone_norm)
        by_index = dict(zip(unique, outs))
        return [tuple(by_index[i]) for i in self.layers]
