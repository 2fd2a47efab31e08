"""What every dino.txt evaluation needs around the model: its sizes, loading a checkpoint onto the run's backbone,
prompt templates (CLIP's, read from open_clip_torch's metadata file) and the cache key of prompt embeddings.
Shared by the zero-shot classification, zero-shot segmentation and image-text retrieval protocols."""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dinobench.context import RunContext
from dinobench.errors import ConfigError
from dinobench.heads.weights import load_head_state, read_head_state
from dinobench.text.model import build_dinotxt

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
    if isinstance(templates, str) or not templates or any(not isinstance(t, str) or "{}" not in t for t in templates):
        raise ConfigError(f"protocol.templates={templates!r:.80}: 'openai_imagenet' or a list of strings with {{}}")
    for template in templates:
        try:
            template.format("x")
        except (IndexError, KeyError, ValueError) as exc:
            raise ConfigError(f"protocol.templates: {template!r:.80} is not a prompt template with one {{}} "
                              f"({type(exc).__name__}); write literal braces as {{{{ and }}}}") from None
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
