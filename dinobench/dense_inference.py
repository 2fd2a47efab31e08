"""Dense prediction: whole-image and sliding-window inference, flip TTA, and the backbone + head
model (:class:`DenseModel`, layer selection, config helpers) the dense protocols share.

``predict(images [B, 3, h, w]) -> [B, K, h, w]`` is any callable giving per-pixel outputs at its
input size (logits for segmentation, depth for depth). Sliding windows follow mmseg's
``slide_inference`` (and the official DINOv3 one): windows of ``crop_size`` every ``stride``
pixels, the last window of a row/column shifted back to end at the border, outputs summed and
divided by the per-pixel window count. A window larger than the image is clipped to it (mmseg;
the official code instead uses a square window of the shorter side when both sides are smaller).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dinobench.errors import ConfigError

Predictor = Callable[[Tensor], Tensor]


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    first, second = value
    return int(first), int(second)


def whole_inference(predict: Predictor, images: Tensor, out_size: Sequence[int] | None = None) -> Tensor:
    """One forward pass over the whole image; optionally resized (bilinear) to ``out_size``."""
    out = predict(images)
    if out_size is not None and tuple(out.shape[-2:]) != tuple(out_size):
        out = F.interpolate(out, size=tuple(out_size), mode="bilinear", align_corners=False)
    return out


def slide_windows(height: int, width: int, crop_size: int | Sequence[int],
                  stride: int | Sequence[int]) -> list[tuple[int, int, int, int]]:
    """Windows ``(y1, y2, x1, x2)`` of mmseg's sliding-window inference covering the image."""
    crop_h, crop_w = _pair(crop_size)
    stride_h, stride_w = _pair(stride)
    if min(crop_h, crop_w, stride_h, stride_w) <= 0:
        raise ValueError(f"slide inference needs positive crop_size and stride, got {crop_size}, {stride}")
    rows = max(height - crop_h + stride_h - 1, 0) // stride_h + 1
    cols = max(width - crop_w + stride_w - 1, 0) // stride_w + 1
    windows = []
    for r in range(rows):
        for c in range(cols):
            y2, x2 = min(r * stride_h + crop_h, height), min(c * stride_w + crop_w, width)
            windows.append((max(y2 - crop_h, 0), y2, max(x2 - crop_w, 0), x2))
    return windows


def slide_inference(predict: Predictor, images: Tensor, num_outputs: int, crop_size: int | Sequence[int],
                    stride: int | Sequence[int], out_size: Sequence[int] | None = None) -> Tensor:
    """Sum of window outputs divided by the window count per pixel ``[B, K, H, W]``."""
    batch, _, height, width = images.shape
    summed = images.new_zeros((batch, num_outputs, height, width), dtype=torch.float32)
    count = images.new_zeros((1, 1, height, width), dtype=torch.float32)
    for y1, y2, x1, x2 in slide_windows(height, width, crop_size, stride):
        out = predict(images[:, :, y1:y2, x1:x2])
        if tuple(out.shape[-2:]) != (y2 - y1, x2 - x1):
            out = F.interpolate(out, size=(y2 - y1, x2 - x1), mode="bilinear", align_corners=False)
        summed[:, :, y1:y2, x1:x2] += out.float()
        count[:, :, y1:y2, x1:x2] += 1
    out = summed / count
    if out_size is not None and tuple(out.shape[-2:]) != tuple(out_size):
        out = F.interpolate(out, size=tuple(out_size), mode="bilinear", align_corners=False)
    return out


def flip_tta(predict: Predictor, images: Tensor) -> Tensor:
    """Average of the prediction and the flipped-back prediction of the flipped image
    (the official depth TTA, ``LeftRightFlipAug``)."""
    return (predict(images) + predict(images.flip(-1)).flip(-1)) / 2


def dense_predict(predict: Predictor, images: Tensor, *, mode: str = "whole", num_outputs: int | None = None,
                  crop_size: int | Sequence[int] = 512, stride: int | Sequence[int] = 341, flip: bool = False,
                  out_size: Sequence[int] | None = None) -> Tensor:
    """Whole or sliding-window prediction (``mode``), optionally with flip TTA, resized to ``out_size``."""
    if mode not in ("whole", "slide"):
        raise ValueError(f"inference mode must be 'whole' or 'slide', got {mode!r}")

    def once(x: Tensor) -> Tensor:
        if mode == "whole":
            return whole_inference(predict, x)
        if num_outputs is None:
            raise ValueError("slide inference needs num_outputs (number of output channels)")
        return slide_inference(predict, x, num_outputs, crop_size, stride)

    out = flip_tta(once, images) if flip else once(images)
    if out_size is not None and tuple(out.shape[-2:]) != tuple(out_size):
        out = F.interpolate(out, size=tuple(out_size), mode="bilinear", align_corners=False)
    return out


class DenseModel(nn.Module):
    """Backbone + dense head. ``forward(images) -> [B, K, H, W]`` at the input resolution.

    Inputs are centre-padded to a multiple of the patch size (official ``CenterPadding``), the
    backbone gives ``(patch_map, class_token)`` of ``layers`` (normalised when
    ``use_backbone_norm``), the head's output is resized bilinearly to the padded input and
    the padding is cropped away. Frozen backbone (default): eval mode, no gradients, features
    under ``no_grad``; ``finetune=True`` trains it too.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, layers: list[int], use_backbone_norm: bool = True,
                 finetune: bool = False, layer_decay: float = 1.0) -> None:
        super().__init__()
        self.backbone, self.head, self.layers = backbone, head, list(layers)
        self.use_backbone_norm, self.finetune, self.layer_decay = use_backbone_norm, finetune, float(layer_decay)
        self.backbone.requires_grad_(finetune)
        self.pad_multiple = int(getattr(backbone, "patch_size", 1) or 1)

    def train(self, mode: bool = True) -> "DenseModel":  # noqa: D102 - keeps a frozen backbone in eval mode
        super().train(mode)
        if not self.finetune:
            self.backbone.eval()
        return self

    def features(self, images: Tensor) -> list[tuple[Tensor, Tensor]]:
        """``(patch_map [B, D, h, w], class_token [B, D])`` for each entry of ``layers``."""
        unique = sorted(set(self.layers))
        with torch.set_grad_enabled(self.finetune and torch.is_grad_enabled()):
            outs = self.backbone.get_intermediate_layers(images, n=unique, reshape=True, return_class_token=True,
                                                         norm=self.use_backbone_norm)
        by_index = dict(zip(unique, outs))
        return [tuple(by_index[i]) for i in self.layers]

    def forward(self, images: Tensor) -> Tensor:  # noqa: D102
        height, width = images.shape[-2:]
        m = self.pad_multiple
        pad_h, pad_w = (-height) % m, (-width) % m
        top, left = pad_h // 2, pad_w // 2
        if pad_h or pad_w:
            images = nn.functional.pad(images, (left, pad_w - left, top, pad_h - top))
        out = self.head(self.features(images))
        if tuple(out.shape[-2:]) != tuple(images.shape[-2:]):
            out = nn.functional.interpolate(out, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return out[..., top:top + height, left:left + width]


def resolve_layers(backbone: nn.Module, spec: str | list[int]) -> list[int]:
    """Block indices for ``"last"``, ``"four_last"``, ``"four_even"`` (official
    FOUR_EVEN_INTERVALS: ``[4, 11, 17, 23]`` for 24 blocks, ``i * (n // 4) - 1`` otherwise; on
    backbones with fewer than 4 blocks, ``round(n * i / 4) - 1`` clamped to 0) or explicit ones."""
    n = int(getattr(backbone, "n_blocks", 0) or len(getattr(backbone, "blocks", [])) or 1)
    if isinstance(spec, (list, tuple)):
        layers = [int(i) % n for i in spec]
    elif spec == "last":
        layers = [n - 1]
    elif spec == "four_last":
        layers = [max(i, 0) for i in range(n - 4, n)]
    elif spec == "four_even":
        if n == 24:
            layers = [4, 11, 17, 23]
        elif n >= 4:
            layers = [i * (n // 4) - 1 for i in range(1, 5)]
        else:
            layers = [max(round(n * i / 4) - 1, 0) for i in range(1, 5)]
    else:
        raise ConfigError(f"protocol.head.layers: {spec!r} is not 'last', 'four_last', 'four_even' or a list of "
                          f"block indices")
    return layers


def layer_channels(backbone: nn.Module, layers: list[int]) -> list[int]:
    """Channels of each selected layer (``embed_dims`` for multi-stage backbones)."""
    dims = getattr(backbone, "embed_dims", None)
    return [int(dims[i]) for i in layers] if dims else [int(backbone.embed_dim)] * len(layers)


# ------------------------------------------------------------------------------------ config
def config_section(cfg: dict[str, Any], name: str, defaults: dict[str, Any], where: str) -> dict[str, Any]:
    """``cfg[name]`` over ``defaults``; unknown keys are a one-line ConfigError."""
    given = dict(cfg.get(name) or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"{where}.{name}.{unknown[0]}: unknown key (known: {', '.join(sorted(defaults))})")
    return {**defaults, **given}


def transform_sections(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``transform.train`` and ``transform.eval`` of a dense task config (both required)."""
    transform = cfg.get("transform") or {}
    missing = [k for k in ("train", "eval") if not isinstance(transform.get(k), dict)]
    if missing:
        raise ConfigError(f"dense task config needs transform=dict(train=dict(...), eval=dict(...)); "
                          f"missing transform.{missing[0]}")
    return transform


def build_dense_model(ctx: Any, make_head: Callable[[list[int]], nn.Module], layers_spec: str | list[int],
                      use_backbone_norm: bool = True) -> DenseModel:
    """:class:`DenseModel` of ``ctx.backbone`` and ``make_head(layer_channels)``; the head's initial
    weights depend on the seed only; ``backbone.finetune`` / ``backbone.layer_decay`` from the config."""
    from dinobench.utils.seeding import seed_from

    layers = resolve_layers(ctx.backbone, layers_spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_from(ctx.seed, 17))
        head = make_head(layer_channels(ctx.backbone, layers))
    bcfg = ctx.cfg.get("backbone", {})
    return DenseModel(ctx.backbone, head, layers, use_backbone_norm=use_backbone_norm,
                      finetune=bool(bcfg.get("finetune", False)), layer_decay=float(bcfg.get("layer_decay", 0.9)))
