"""The Mask2Former segmentor of the DINOv3 release: frozen backbone -> ViT-Adapter -> Mask2Former head.

:func:`build_m2f_segmentor` returns a module whose ``state_dict()`` keys are those of the official
``build_segmentation_decoder(backbone, decoder_type="m2f", ...)``: ``segmentation_model.0.*`` the adapter
(with the backbone under ``segmentation_model.0.backbone.*``), ``segmentation_model.1.*`` the head
(``pixel_decoder.*``, ``predictor.*``). ``predict(images, rescale_to)`` returns the official dict;
:meth:`M2FSegmentor.semantic` the per-class probabilities (softmax over classes without "no object" times
sigmoid masks, summed over queries) at any image size (inputs are centre-padded to a multiple of 32).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dinobench.heads.mask2former.adapter import ViTAdapter
from dinobench.heads.mask2former.decoder import MultiScaleMaskedTransformerDecoder
from dinobench.heads.mask2former.pixel_decoder import MSDeformAttnPixelDecoder
from dinobench.heads.model import center_padding
from dinobench.heads.necks import resolve_layers

#: key prefix of the frozen backbone inside the segmentor (not part of a head checkpoint)
BACKBONE_PREFIX = "segmentation_model.0.backbone."
#: modules whose parameters get no weight decay in Mask2Former's recipe (norms, embeddings)
#: modules whose parameters get no weight decay: detectron2's norm types and nn.Embedding (Mask2Former's
#: train_net.py build_optimizer with SOLVER.WEIGHT_DECAY_NORM = WEIGHT_DECAY_EMBED = 0.0)
_NO_DECAY = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.GroupNorm, nn.InstanceNorm1d,
             nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LayerNorm, nn.LocalResponseNorm, nn.Embedding)
#: parameter names without weight decay whatever their module (the same build_optimizer)
_NO_DECAY_NAMES = ("relative_position_bias_table", "absolute_pos_embed")


class Mask2FormerHead(nn.Module):
    """Pixel decoder + masked-attention transformer decoder over the adapter's 4 maps."""

    def __init__(self, in_channels: Sequence[int], hidden_dim: int = 2048, num_classes: int = 150,
                 num_queries: int = 100, nheads: int = 16, dim_feedforward: int = 4096, dec_layers: int = 9,
                 enc_layers: int = 6, ignore_value: int = 255) -> None:
        super().__init__()
        if hidden_dim % 32 or hidden_dim % nheads:
            raise ValueError(f"hidden_dim={hidden_dim} must be a multiple of 32 (GroupNorm) and of nheads={nheads}")
        self.num_classes, self.ignore_value = int(num_classes), int(ignore_value)
        self.pixel_decoder = MSDeformAttnPixelDecoder(in_channels, conv_dim=hidden_dim, mask_dim=hidden_dim,
                                                      transformer_nheads=nheads,
                                                      transformer_dim_feedforward=dim_feedforward,
                                                      transformer_enc_layers=enc_layers)
        self.predictor = MultiScaleMaskedTransformerDecoder(num_classes, hidden_dim, num_queries, nheads,
                                                            dim_feedforward, dec_layers, mask_dim=hidden_dim)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Any]:
        """``pred_logits`` ``[B, Q, K+1]``, ``pred_masks`` ``[B, Q, H/4, W/4]``, ``aux_outputs``."""
        mask_features, _, levels = self.pixel_decoder.forward_features(features)
        return self.predictor(levels, mask_features)

    def predict(self, features: dict[str, Tensor], rescale_to: Sequence[int] = (512, 512)) -> dict[str, Any]:
        """:meth:`forward` with ``pred_masks`` resized (bilinear) to ``rescale_to``."""
        out = self.forward(features)
        out["pred_masks"] = F.interpolate(out["pred_masks"], size=tuple(rescale_to), mode="bilinear",
                                          align_corners=False)
        return out


def semantic_inference(pred_logits: Tensor, pred_masks: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Per-class scores ``[B, K, H, W]`` = sum over queries of softmax(class)[:K] * sigmoid(mask), the sum in
    ``dtype`` (the official sliding-window inference: bfloat16)."""
    probs = pred_logits.float().softmax(-1)[..., :-1]
    return torch.einsum("bqc,bqhw->bchw", probs.to(dtype), pred_masks.float().sigmoid().to(dtype))


class M2FSegmentor(nn.Module):
    """``segmentation_model = [adapter, head]`` (official layout); what the training engine trains
    (``trainable_modules``, ``param_groups``) and the m2f protocol evaluates (``predict``, ``semantic``)."""

    finetune = False  # the backbone is always frozen (the release's design)
    layer_decay = 1.0

    def __init__(self, adapter: ViTAdapter, head: Mask2FormerHead) -> None:
        super().__init__()
        self.segmentation_model = nn.ModuleList([adapter, head])
        self.pad_multiple = math.lcm(32, adapter.patch_size)
        self.num_classes = head.num_classes

    @property
    def backbone(self) -> nn.Module:
        """The frozen backbone (registered once, inside the adapter)."""
        return self.segmentation_model[0].backbone

    @property
    def adapter(self) -> ViTAdapter:
        """The ViT-Adapter neck."""
        return self.segmentation_model[0]

    @property
    def head(self) -> Mask2FormerHead:
        """The Mask2Former head."""
        return self.segmentation_model[1]

    def train(self, mode: bool = True) -> "M2FSegmentor":  # noqa: D102 - the backbone stays in eval mode
        super().train(mode)
        self.backbone.eval()
        return self

    def forward(self, images: Tensor) -> dict[str, Any]:
        """Raw outputs (masks at stride 4) for images with sides that are multiples of 32 (training crops)."""
        return self.head(self.adapter(images))

    def predict(self, images: Tensor, rescale_to: Sequence[int] = (512, 512)) -> dict[str, Any]:
        """The official ``predict``: ``pred_logits`` ``[B, Q, K+1]``, ``pred_masks`` ``[B, Q, *rescale_to]``."""
        with torch.no_grad():
            return self.head.predict(self.adapter(images), rescale_to=rescale_to)

    def semantic(self, images: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """Class scores ``[B, K, H, W]`` of images of any size: centre-padded to a multiple of 32, masks
        resized to the padded size, padding cropped, then :func:`semantic_inference` (in ``dtype``)."""
        height, width = images.shape[-2:]
        top, bottom, left, right = center_padding(height, width, self.pad_multiple)
        padded = F.pad(images, (left, right, top, bottom)) if (top or bottom or left or right) else images
        out = self.predict(padded, rescale_to=padded.shape[-2:])
        masks = out["pred_masks"][..., top:top + height, left:left + width]
        return semantic_inference(out["pred_logits"], masks, dtype)

    def trainable_modules(self) -> dict[str, nn.Module]:
        """Adapter and head (the backbone's parameters do not require gradients)."""
        return {"neck": self.adapter, "head": self.head}

    def param_groups(self) -> list[dict[str, Any]]:
        """Mask2Former's AdamW groups (its train_net.py ``build_optimizer``): no weight decay on norm layers,
        ``nn.Embedding`` (queries, the decoder's level embedding) and position-bias tables; everything else — biases
        and the ``nn.Parameter`` level embeddings of the pixel decoder and the adapter included — decays."""
        decay, no_decay = [], []
        seen: set[int] = set()
        backbone_ids = {id(p) for p in self.backbone.parameters()}
        for module in self.segmentation_model.modules():
            for name, param in module.named_parameters(recurse=False):
                if not param.requires_grad or id(param) in seen or id(param) in backbone_ids:
                    continue
                seen.add(id(param))
                skip = isinstance(module, _NO_DECAY) or any(key in name for key in _NO_DECAY_NAMES)
                (no_decay if skip else decay).append(param)
        return [{"params": decay, "lr_multiplier": 1.0, "wd_multiplier": 1.0},
                {"params": no_decay, "lr_multiplier": 1.0, "wd_multiplier": 0.0}]


def build_m2f_segmentor(backbone: nn.Module, hidden_dim: int = 2048, num_classes: int = 150, *,
                        layers: str | Sequence[int] = "four_even", num_queries: int = 100, nheads: int = 16,
                        dim_feedforward: int = 4096, dec_layers: int = 9, enc_layers: int = 6,
                        with_cp: bool = True, **adapter_kwargs: Any) -> M2FSegmentor:
    """The official segmentor around ``backbone`` (frozen): adapter at the blocks of ``layers`` (official:
    four evenly spaced), Mask2Former head of width ``hidden_dim`` for ``num_classes`` classes. Keyword
    arguments after ``num_classes`` default to the release's values; ``adapter_kwargs`` go to
    :class:`~dinobench.heads.mask2former.adapter.ViTAdapter`."""
    adapter = ViTAdapter(backbone, resolve_layers(backbone, layers), with_cp=with_cp, **adapter_kwargs)
    adapter.eval()
    head = Mask2FormerHead(adapter.out_channels, hidden_dim=hidden_dim, num_classes=num_classes,
                           num_queries=num_queries, nheads=nheads, dim_feedforward=dim_feedforward,
                           dec_layers=dec_layers, enc_layers=enc_layers)
    return M2FSegmentor(adapter, head)
