"""An example neck + head outside dinobench: the neck reads the images and the backbone, the head returns a
dict, and its ``postprocess`` turns that into the task's prediction format."""

import torch
import torch.nn.functional as F
from torch import nn

from dinobench.api import Neck


class TokensAndThumbnail(Neck):
    """Neck: the backbone's normalised CLS token and a ``pixels x pixels`` grey thumbnail of the image."""

    def __init__(self, backbone: nn.Module, pixels: int = 4) -> None:
        super().__init__()
        self.pixels = int(pixels)
        self.out_channels = [int(backbone.embed_dim), self.pixels * self.pixels]
        self.out_strides = [int(backbone.patch_size), 1]

    def forward(self, images, backbone):
        cls = backbone.forward_features(images)["x_norm_clstoken"]
        thumbnail = F.adaptive_avg_pool2d(images.mean(dim=1, keepdim=True), self.pixels).flatten(1)
        return {"cls": cls, "thumbnail": thumbnail}


class DictClassifierHead(nn.Module):
    """Head: ``{"logits": [B, C], "embedding": [B, D]}``; ``postprocess`` -> ``{"labels", "scores"}``."""

    def __init__(self, channels, num_classes: int) -> None:
        super().__init__()
        self.embed = nn.Linear(sum(channels), 32)
        self.classify = nn.Linear(32, num_classes)

    def forward(self, features):
        embedding = torch.relu(self.embed(torch.cat([features["cls"], features["thumbnail"]], dim=1)))
        return {"logits": self.classify(embedding), "embedding": embedding}

    def postprocess(self, outputs, image_size, padding):
        probabilities = outputs["logits"].softmax(dim=1)
        scores, labels = probabilities.max(dim=1)
        return {"labels": labels, "scores": scores}
