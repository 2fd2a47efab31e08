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

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from dinobench.context import RunContext
from dinobench.errors import ConfigError
from dinobench.heads.weights import load_head_state, read_head_state
from dinobench.protocol import Protocol, ProtocolResult
from dinobench.text import build_dinotxt
from dinobench.text.cache import cached_embeddings
from dinobench.text.tokenizer import tokenize

BACKBONE_PREFIX = "visual_model.backbone."


def _zero_shot_metadata(key: str) -> Any:
    """``open_clip_torch``'s zero-shot metadata module, loaded by path (importing ``open_clip`` is slow)."""
    spec = importlib.util.find_spec("open_clip")
    path = Path(spec.origin).parent / "zero_shot_metadata.py" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ConfigError(f"protocol.{key}='openai_imagenet' needs open_clip_torch (pip install --no-deps "
                          f"open_clip_torch) or an explicit list")
    module_spec = importlib.util.spec_from_file_location("_dinobench_zero_shot_metadata", path)
    module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
    module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def openai_imagenet_templates() -> list[str]:
    """CLIP's 80 ImageNet prompt templates (``{}`` = the class name)."""
    return [template("{}") for template in _zero_shot_metadata("templates").OPENAI_IMAGENET_TEMPLATES]


def openai_imagenet_classnames() -> list[str]:
    """CLIP's 1000 ImageNet class names, in the sorted-wnid order of ImageNet folders."""
    return list(_zero_shot_metadata("class_names").IMAGENET_CLASSNAMES)


@dataclass
class DinoTxtSizes:
    """The dino.txt head's sizes (:func:`dinobench.text.build_dinotxt`); defaults: the released model."""

    embed_dim: int = 2048
    text_dim: int = 1280
    text_heads: int = 20
    text_layers: int = 24
    context_length: int = 77
    vocab_size: int = 49408
    vision_head_blocks: int = 2


def resolve_templates(templates: str | list[str]) -> list[str]:
    """``"openai_imagenet"`` -> CLIP's 80 templates; a list of strings each with ``{}`` as it is."""
    if templates == "openai_imagenet":
        return openai_imagenet_templates()
    if isinstance(templates, str) or not templates or any("{}" not in t for t in templates):
        raise ConfigError(f"protocol.templates={templates!r}: 'openai_imagenet' or a list of strings with {{}}")
    return list(templates)


def load_dinotxt(ctx: RunContext, sizes: DinoTxtSizes, head_weights: str | None, purpose: str) -> Any:
    """The dino.txt model of ``sizes`` on ``ctx.backbone`` with ``head_weights`` loaded strictly, in eval mode on
    ``ctx.device``; a one-line error when no checkpoint is given (``purpose`` names the task family)."""
    if not head_weights:
        raise ConfigError(f"protocol.head_weights: {purpose} needs a dino.txt checkpoint (a `dinobench train` export "
                          f"or the released head); pass protocol.head_weights=PATH")
    model = build_dinotxt(ctx.backbone, embed_dim=sizes.embed_dim, text_dim=sizes.text_dim,
                          text_heads=sizes.text_heads, text_layers=sizes.text_layers,
                          context_length=sizes.context_length, vocab_size=sizes.vocab_size,
                          vision_head_blocks=sizes.vision_head_blocks)
    load_head_state(model, read_head_state(head_weights), head_weights, optional_prefixes=(BACKBONE_PREFIX,))
    return model.to(ctx.device).eval()


def prompt_cache_payload(ctx: RunContext, kind: str, names: list[str], templates: list[str],
                         sizes: DinoTxtSizes) -> dict[str, Any]:
    """The text-embedding cache key of class prompts (:mod:`dinobench.text.cache`)."""
    return {"kind": kind, "names": list(names), "templates": list(templates),
            "head_sha256": ctx.input_files.get("protocol.head_weights", {}).get("sha256"),
            "model": dataclasses.asdict(sizes)}


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
