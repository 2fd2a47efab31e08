"""``dinobench train <config with recipe="dinotxt">``: align a dino.txt text tower (and vision head) to a frozen
backbone with the CLIP loss, on the shared head-training engine (exact resume, SIGTERM, DDP under torchrun,
bf16 autocast on CUDA), then export the trained part in the official layout.

Config sections: ``recipe="dinotxt"``; ``model`` (``backbone`` name, ``backbone_kwargs``, ``weights``, the
:func:`~dinobench.text.build_dinotxt` sizes, ``vision_head_drop_path``); ``data`` (``type``: ``class_prompts`` over a registered labelled
dataset ``data.dataset``, ``coco_captions`` or ``caption_csv``; ``root``; ``prompt``; ``image_size``); ``train``
(the engine's section; the official example: AdamW lr 7e-4, wd 1e-4, batch 256, 50k iterations, warm-up +
cosine); ``seed``. Output: ``<output>/dinotxt_head.pth`` (the state dict without ``visual_model.backbone.*``,
what the release ships), ``config.json``, and the run folder ``<output>/run`` (``metrics.jsonl``, checkpoints).
Images: short side to ``image_size``, centre crop, the backbone's normalisation (no augmentation). The backbone
is built after seeding with ``seed`` as ``dinobench run --seed`` does, so a random-init backbone (toy runs) is the
one the evaluation tasks rebuild.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from dinobench.backbones import create_backbone
from dinobench.backbones.contract import backbone_normalisation
from dinobench.config import apply_options, load_config, parse_options
from dinobench.text.captions import DEFAULT_PROMPT, ClassPromptCaptions, build_caption_csv, build_coco_captions
from dinobench.data.transforms import build_eval_transform
from dinobench.errors import ConfigError
from dinobench.text.inference import DinoTxtSizes
from dinobench.text.loss import clip_loss
from dinobench.text.model import DINOTxt, build_dinotxt
from dinobench.text.tokenizer import tokenize
from dinobench.training import head_training_loop, train_config
from dinobench.typed_config import merge_section
from dinobench.utils import distributed as ddp
from dinobench.utils.io import write_atomic
from dinobench.utils.seeding import seed_everything

BACKBONE_PREFIX = "visual_model.backbone."


@dataclass
class DinoTxtModelConfig(DinoTxtSizes):
    """``model.*``: the frozen backbone and the sizes of :func:`~dinobench.text.build_dinotxt` (release: ViT-L)."""

    backbone: str = "vitl16"
    backbone_kwargs: dict = field(default_factory=dict)  # create_backbone overrides
    weights: str | None = None
    vision_head_drop_path: float = 0.3


@dataclass
class DinoTxtDataConfig:
    """``data.*``: where the captions come from."""

    type: Literal["coco_captions", "caption_csv", "class_prompts"] = "coco_captions"
    root: str | None = None
    dataset: dict | None = None  # class_prompts: the labelled dataset section, dict(type=...)
    prompt: str = DEFAULT_PROMPT
    image_size: int = 224


#: the typed sections of a dino.txt training config
SECTIONS = {"model": DinoTxtModelConfig, "data": DinoTxtDataConfig}


def _merged(cfg: dict[str, Any], where: str) -> None:
    """``model`` and ``data`` merged over their dataclasses in place; one line naming ``where`` and the key."""
    for section, cls in SECTIONS.items():
        try:
            cfg[section] = merge_section(cls, cfg.get(section) or {}, section)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def resolve_dinotxt_config(path: str | Path, overrides: list[str] | None = None,
                           data_root: str | None = None) -> dict[str, Any]:
    """The config with defaults filled in and ``key=value`` overrides applied; unknown keys and values of the
    wrong type are one-line errors naming the file (or the overrides) and the closest valid key."""
    cfg = load_config(path)
    for section in ("model", "data", "train"):
        if cfg.get(section) is not None and not isinstance(cfg[section], dict):
            raise ConfigError(f"{path}: {section} must be a section (dict(...)), got {cfg[section]!r:.60}")
    _merged(cfg, str(path))
    cfg.setdefault("train", {})
    cfg.setdefault("seed", 0)
    cfg = apply_options(cfg, parse_options(overrides), where=str(path), open_sections=("train", "data", "model"))
    if data_root is not None:
        cfg["data"]["root"] = data_root
    _merged(cfg, f"{path} (override)" if overrides else str(path))
    train_config(cfg["train"])  # a typo in the train section is an error now, not after the backbone is built
    return cfg


def caption_dataset(data: dict[str, Any]) -> Any:
    """The training split of the configured caption source (untransformed)."""
    kind = data["type"]
    if kind == "class_prompts":
        from dinobench.plugin_manager import get_registries  # the labelled dataset comes from the registry
        from dinobench.registry import resolve_object

        spec = dict(data.get("dataset") or {})
        if "type" not in spec:
            raise ConfigError("data.dataset=dict(type=...) is required with data.type='class_prompts'")
        build = resolve_object(get_registries().datasets.get(spec["type"]).builder)
        return ClassPromptCaptions(build(spec, data.get("root"))["train"], data["prompt"])
    builders = {"coco_captions": build_coco_captions, "caption_csv": build_caption_csv}
    if kind not in builders:
        raise ConfigError(f"data.type={kind!r}: expected class_prompts, coco_captions or caption_csv")
    return builders[kind]({}, data.get("root"))["train"]


def collate_captions(items: list[dict[str, Any]], context_length: int) -> dict[str, Tensor]:
    """Stacked images and CLIP tokens of the captions."""
    return {"images": torch.stack([item["image"] for item in items]),
            "tokens": tokenize([item["caption"] for item in items], context_length)}


def contrastive_step(model: nn.Module, batch: dict[str, Tensor], iteration: int) -> tuple[Tensor, dict[str, float]]:
    """The CLIP loss of a batch (logs: the current temperature scale)."""
    image, text, scale, _, _ = model(batch["images"], batch["tokens"])
    return clip_loss(image, text, scale), {"logit_scale": float(scale.detach())}


def head_state(model: DINOTxt | dict[str, Tensor]) -> dict[str, Tensor]:
    """The trained part in the official layout (of a model or its state dict): every tensor but the frozen vision
    backbone's."""
    state = model if isinstance(model, dict) else model.state_dict()
    return {k: v.detach().cpu().clone() for k, v in state.items() if not k.startswith(BACKBONE_PREFIX)}


def train_dinotxt(cfg: dict[str, Any], output: str | Path) -> dict[str, Any]:
    """Train as configured into ``output``; returns a summary (the exported file, iterations, final loss)."""
    output = Path(output)
    m = cfg["model"]
    seed_everything(int(cfg["seed"]))  # as `dinobench run`: a random-init backbone is the same for the same seed
    backbone = create_backbone(m["backbone"], weights=m["weights"], **dict(m["backbone_kwargs"]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg["seed"]))
        model = build_dinotxt(backbone, embed_dim=m["embed_dim"], text_dim=m["text_dim"], text_heads=m["text_heads"],
                              text_layers=m["text_layers"], context_length=m["context_length"],
                              vocab_size=m["vocab_size"], vision_head_blocks=m["vision_head_blocks"])
    for block in model.visual_model.head.blocks:  # the release trains them with drop path 0.3
        if hasattr(block, "drop_path_rate"):
            block.drop_path_rate = float(m["vision_head_drop_path"])
    mean, std = backbone_normalisation(backbone)
    size = int(cfg["data"]["image_size"])
    dataset = caption_dataset(cfg["data"])  # caption datasets apply their ``transform`` to the image
    dataset.transform = build_eval_transform({"resize": size, "crop": size}, mean, std)
    device = ddp.device()
    loop = head_training_loop(model, dataset, contrastive_step, cfg["train"], output / "run", device=device,
                              seed=int(cfg["seed"]),
                              collate_fn=partial(collate_captions, context_length=m["context_length"]))
    with loop.exclusive():
        loop.resume()
        summary = loop.fit()
    path = output / "dinotxt_head.pth"
    state = ddp.full_state_dict(loop.recipe.model)  # collective when sharded (FSDP2); full on rank 0
    if ddp.rank() == 0:
        head = head_state(state)
        write_atomic(path, lambda fh: torch.save(head, fh))
        (output / "config.json").write_text(json.dumps(cfg, indent=1, default=str))
    return {"head": str(path), **{k: v for k, v in summary.items() if k != "metrics"}}
