"""Zero-shot classification with a dino.txt head: class embeddings from prompt ensembles, no training.

For each class, the prompts (``templates``: the 80 OpenAI ImageNet templates by default, read from the
installed ``open_clip_torch``, or a list of strings with ``{}``) are encoded, L2-normalised, averaged and
normalised again - cached on disk per checkpoint, templates and names (:mod:`dinobench.text.cache`); each ``val``
image's normalised dino.txt embedding is scored against them; top-1 / top-5 accuracy. ``class_names``: the
dataset's (default), CLIP's ImageNet names (``"openai_imagenet"``, for ImageNet folders named by wnid) or a list.
``head_weights`` is the dino.txt checkpoint (the released
``dinov3_vitl16_dinotxt_vision_head_and_text_encoder-*.pth`` with the ViT-L backbone, or a ``dinobench train``
export) and is recorded by sha256; ``model`` gives its sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from dinobench.context import RunContext
from dinobench.errors import ConfigError
from dinobench.protocol import Protocol, ProtocolResult
from dinobench.text.cache import cached_embeddings
from dinobench.text.inference import (DinoTxtSizes, load_dinotxt, openai_imagenet_classnames, prompt_cache_payload,
                                      resolve_templates)
from dinobench.text.tokenizer import tokenize

@dataclass
class ZeroShotConfig:
    """``protocol=dict(type="zeroshot", head_weights=PATH, model=..., templates=..., class_names=None)``."""

    model: DinoTxtSizes = field(default_factory=DinoTxtSizes)
    head_weights: str | None = None  # the dino.txt checkpoint (required to run)
    templates: str | list[str] = "openai_imagenet"
    class_names: str | list[str] | None = None  # None: the dataset's ("_" -> " "); "openai_imagenet": CLIP's 1000
    batch_size: int = 64  # runtime key


class ZeroShotProtocol(Protocol):
    """Zero-shot top-1 / top-5 of a dino.txt head on ``val``."""

    name = "zeroshot"
    version = "1"
    Config = ZeroShotConfig
    runtime_keys = ("batch_size",)
    file_keys = ("head_weights",)

    def validate(self) -> None:
        """The templates are checked before any data is read."""
        self.templates()

    def templates(self) -> list[str]:
        """The prompt templates (each with one ``{}``)."""
        return resolve_templates(self.config.templates)

    @torch.no_grad()
    def class_embeddings(self, model: Any, names: list[str], device: str,
                         templates: list[str] | None = None) -> torch.Tensor:
        """``[C, D]`` normalised mean of each class's normalised prompt embeddings."""
        templates, out = templates or self.templates(), []
        for name in names:
            tokens = tokenize([t.format(name) for t in templates], self.config.model.context_length).to(device)
            out.append(F.normalize(model.encode_text(tokens, normalize=True).mean(0), dim=-1))
        return torch.stack(out)

    def run(self, ctx: RunContext) -> ProtocolResult:
        """Score ``val`` against the class prompts; top-1 / top-5 accuracy (percent)."""
        model = load_dinotxt(ctx, self.config.model, self.config.head_weights, "zero-shot")
        val = ctx.dataset("val")
        names = self.config.class_names or [str(c).replace("_", " ") for c in val.classes]
        names = openai_imagenet_classnames() if names == "openai_imagenet" else list(names)
        if len(names) != len(val.classes):
            raise ConfigError(f"protocol.class_names has {len(names)} names but the dataset has {len(val.classes)} "
                              f"classes")
        templates = self.templates()
        payload = prompt_cache_payload(ctx, "zeroshot_class_embeddings", names, templates, self.config.model)
        classes = cached_embeddings(ctx, payload, lambda: self.class_embeddings(model, names, ctx.device, templates))
        classes = classes.to(ctx.device)
        correct1 = correct5 = total = 0
        k = min(5, len(names))
        with torch.no_grad():
            for images, labels in DataLoader(val, batch_size=int(self.config.batch_size), shuffle=False):
                scores = model.encode_image(images.to(ctx.device), normalize=True) @ classes.T
                top = scores.topk(k, dim=1).indices.cpu()
                correct1 += int((top[:, 0] == labels).sum())
                correct5 += int((top == labels[:, None]).any(1).sum())
                total += len(labels)
        metrics = {"top1": 100.0 * correct1 / total, f"top{k}": 100.0 * correct5 / total}
        return ProtocolResult(metrics, "top1", higher_is_better=True)
