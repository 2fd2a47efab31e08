"""An example trained-head family from outside dinobench, on its trained-head template: a 1x1 convolution over the
last layer's patch tokens predicting foreground, trained on the shared engine, scored with a mergeable metric and
exported in its own layout (``dinobench export --run``)."""

import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dinobench.api import TrainedHead, TrainedHeadConfig, TrainedHeadProtocol
from dinobench_example_plugin.blobs import blob_transforms


@dataclass
class MaskHeadConfig(TrainedHeadConfig):
    """``protocol=dict(type="example_mask_head", ...)``."""

    foreground_weight: float = 1.0  # cross-entropy weight of the foreground class


class ForegroundIoU:
    """Foreground IoU (%) pooled over pixels; mergeable over ranks (``state``/``merge``)."""

    def __init__(self):
        self.intersection, self.union = 0, 0

    def update(self, prediction, truth):
        self.intersection += int(((prediction == 1) & (truth == 1)).sum())
        self.union += int(((prediction == 1) | (truth == 1)).sum())

    def state(self):
        return {"intersection": self.intersection, "union": self.union}

    def merge(self, states):
        self.intersection = sum(s["intersection"] for s in states)
        self.union = sum(s["union"] for s in states)

    def compute(self):
        return {"fg_iou": 100.0 * self.intersection / max(self.union, 1)}


class TokenMaskHead(nn.Module):
    """Logits ``[B, 2, h, w]`` of the last neck level (``(patch map, cls)`` pairs from the default neck)."""

    def __init__(self, channels):
        super().__init__()
        self.classifier = nn.Conv2d(channels, 2, 1)

    def forward(self, levels):
        patches = levels[-1][0] if isinstance(levels[-1], (tuple, list)) else levels[-1]
        return self.classifier(patches)


def mask_head_files(state, config):
    """The example layout: the head's weights and a JSON description."""
    return {"mask_head.pth": state, "mask_head.json": json.dumps({"classes": ["background", "foreground"], **config})}


class MaskHeadProtocol(TrainedHeadProtocol):
    """Train :class:`TokenMaskHead` on ``train``, foreground IoU on ``val``."""

    name = "example_mask_head"
    version = "1"
    Config = MaskHeadConfig
    main_metric = "fg_iou"

    def transforms(self, ctx):
        return blob_transforms(ctx.cfg.get("transform"), ctx.image_mean, ctx.image_std)

    def make_head(self, channels, train_set):
        return TokenMaskHead(channels[-1])

    def loss(self, model, batch, iteration):
        logits = model(batch["image"])  # resized to the image by BackboneNeckHead
        weight = torch.tensor([1.0, float(self.config.foreground_weight)], device=logits.device)
        return F.cross_entropy(logits, batch["mask"].to(logits.device), weight=weight), {}

    def new_metric(self, dataset):
        return ForegroundIoU()

    def update_metric(self, model, sample, metric, device):
        prediction = model(sample["image"].to(device)).argmax(1).cpu()
        metric.update(prediction, sample["mask"])

    def trained_head(self, model):
        return TrainedHead(self.official_state(model), "example_mask_head", {"channels": int(model.head.classifier.in_channels)})
