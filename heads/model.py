"""backbone -> neck -> head as one module, the thing the training engine trains and protocols evaluate.

``forward(images)``: inputs are centre-padded to a multiple of the patch size (official ``CenterPadding``),
the neck reads the backbone, the head maps that to its outputs. A per-pixel output (a ``[B, K, h, w]``
tensor) is resized bilinearly to the padded input and the padding is cropped away; any other output (a
dict of queries, masks, boxes ...) is returned as it is and :meth:`BackboneNeckHead.postprocess` turns it
into the task's prediction format (via the head's ``postprocess(outputs, image_size, padding)``).

Frozen backbone (default): eval mode, no gradients through it; ``finetune=True`` trains it too, with
layer-wise lr decay ``layer_decay``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dinobench.heads.necks import IntermediateLayers, Neck

_BACKBONE_CALLS = ("forward", "forward_features", "get_intermediate_layers", "__call__")


class _GradGate:
    """The backbone as a neck sees it: its forward methods run with gradients only when fine-tuning."""

    def __init__(self, backbone: nn.Module, grad: bool) -> None:
        self._backbone, self._grad = backbone, grad

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._backbone, name)
        if name not in _BACKBONE_CALLS:
            return attr

        def gated(*args: Any, **kwargs: Any) -> Any:
            with torch.set_grad_enabled(self._grad and torch.is_grad_enabled()):
                return attr(*args, **kwargs)
        return gated

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__getattr__("__call__")(*args, **kwargs)


def center_padding(height: int, width: int, multiple: int) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` padding that centres an image in the next multiple of ``multiple``."""
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    return pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2


class BackboneNeckHead(nn.Module):
    """backbone -> neck -> head (see the module docstring). ``layers``/``use_backbone_norm`` build the default
    :class:`IntermediateLayers` neck when no ``neck`` is given."""

    def __init__(self, backbone: nn.Module, head: nn.Module, layers: str | Sequence[int] | None = None,
                 use_backbone_norm: bool = True, finetune: bool = False, layer_decay: float = 1.0,
                 neck: Neck | None = None) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.neck = neck if neck is not None else IntermediateLayers(backbone, layers if layers is not None else "last",
                                                                     use_backbone_norm)
        self.finetune, self.layer_decay = bool(finetune), float(layer_decay)
        self.backbone.requires_grad_(self.finetune)
        self.pad_multiple = int(getattr(backbone, "patch_size", 1) or 1)

    @property
    def layers(self) -> list[int]:
        """Block indices the default neck reads (empty for other necks)."""
        return list(getattr(self.neck, "layers", []))

    def train(self, mode: bool = True) -> "BackboneNeckHead":  # noqa: D102 - keeps a frozen backbone in eval mode
        super().train(mode)
        if not self.finetune:
            self.backbone.eval()
        return self

    def features(self, images: Tensor) -> Any:
        """The neck's output for (already padded) ``images``."""
        return self.neck(images, _GradGate(self.backbone, self.finetune))

    def forward(self, images: Tensor) -> Any:  # noqa: D102
        height, width = images.shape[-2:]
        top, bottom, left, right = center_padding(height, width, self.pad_multiple)
        if top or bottom or left or right:
            images = F.pad(images, (left, right, top, bottom))
        out = self.head(self.features(images))
        if not (isinstance(out, Tensor) and out.dim() == 4):
            return out
        if tuple(out.shape[-2:]) != tuple(images.shape[-2:]):
            out = F.interpolate(out, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return out[..., top:top + height, left:left + width]

    def postprocess(self, outputs: Any, image_size: Sequence[int]) -> Any:
        """The head's outputs for images of ``image_size`` as the task's predictions (identity for
        per-pixel outputs, which :meth:`forward` already cropped)."""
        post: Callable[..., Any] | None = getattr(self.head, "postprocess", None)
        if post is None:
            return outputs
        height, width = int(image_size[0]), int(image_size[1])
        return post(outputs, image_size=(height, width), padding=center_padding(height, width, self.pad_multiple))

    def trainable_modules(self) -> dict[str, nn.Module]:
        """The modules the engine optimises: neck and head (and the backbone when fine-tuning)."""
        modules = {"neck": self.neck, "head": self.head}
        if self.finetune:
            modules["backbone"] = self.backbone
        return modules


#: the name the dense protocols and tests have used; the same class
DenseModel = BackboneNeckHead
