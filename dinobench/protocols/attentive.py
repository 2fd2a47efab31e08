"""Attentive probe on frozen patch tokens, for images and videos (the model card's attention probe).

Features: the last block's normalised patch tokens of each image (``patch_tokens``, ``[h, w, D]``) or of
each frame of a clip (``frame_patch_tokens``, ``[T, h, w, D]``; the probe adds a learnable temporal
position embedding; a learnable spatial one per patch with ``pos_embed``), cached like every feature. One :class:`~dinobench.heads.attentive.AttentiveProbe`
per learning rate of ``learning_rates`` is trained at once on the shared engine (``train`` section:
optimizer, schedule, iterations, batch; ``train.optimizer.lr`` is only the reference the schedule scales,
each probe runs at ``its lr / train.optimizer.lr`` times it) with the sum of their cross-entropies. The
probe with the best val top-1 is selected (first best); with a ``test`` split it is reported there,
otherwise on val. Video splits other than train hold several views (clips x crops) per video: their
softmax probabilities are averaged per video before top-1/top-5.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from dinobench.context import RunContext
from dinobench.errors import ConfigError, DataError
from dinobench.heads.attentive import ProbeGrid
from dinobench.protocol import Protocol, ProtocolResult
from dinobench.metrics.classification import classification_metrics
from dinobench.training import train_head
from dinobench.training.config import train_config


@dataclass
class AttentiveConfig:
    """A 4-block probe (3 self-attention + 1 cross-attention), one query, 4 learning rates trained at once."""

    learning_rates: list[float] = field(default_factory=lambda: [1e-4, 3e-4, 1e-3, 3e-3])
    depth: int = 4
    num_heads: int | None = None  # None: embed_dim // 64 (at least 1)
    mlp_ratio: float = 4.0
    num_queries: int = 1
    pos_embed: bool = True  # a learnable spatial position embedding per patch (frozen RoPE tokens carry none)
    feature_dtype: Literal["float32", "float16"] = "float32"  # float16 halves the feature cache
    eval_batch_size: int = 64  # memory only


class _Features(Dataset):
    """``(features[i], label[i])`` of a cached split: what the engine trains on."""

    def __init__(self, features: Tensor, labels: Tensor) -> None:
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return torch.as_tensor(np.asarray(self.features[index])), self.labels[index]


def split_targets(targets: Any, labels: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """(labels per item, video index per item or None) of a split's targets."""
    if isinstance(targets, dict):
        if "label" not in targets or "video" not in targets:
            raise DataError(f"attentive: video targets need 'label' and 'video', got {sorted(targets)}")
        return targets["label"].long(), targets["video"].long()
    if labels is None:
        raise DataError("attentive: the dataset's targets are not class labels (an int per image)")
    return labels.long(), None


def per_video_probabilities(logits: Tensor, videos: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Softmax probabilities averaged over the views of each video ``[V, C]`` (items as they are for images)
    and the index of each video's first view."""
    probs = logits.float().softmax(dim=-1)
    if videos is None:
        return probs, None
    ids, first, inverse = np.unique(videos.numpy(), return_index=True, return_inverse=True)
    group = torch.as_tensor(inverse.reshape(-1))
    sums = torch.zeros(len(ids), probs.shape[1]).index_add_(0, group, probs)
    return sums / torch.bincount(group, minlength=len(ids))[:, None], torch.as_tensor(first)


class AttentiveProtocol(Protocol):
    """Attentive probes (one per lr) on frozen patch tokens; top-1/top-5 of the probe best on val."""

    name = "attentive"
    version = "1"
    Config = AttentiveConfig
    runtime_keys = ("eval_batch_size",)
    trains = True  # the probes, with the engine (the task's train section)

    def validate(self) -> None:
        """Range checks."""
        cfg = self.config
        if not cfg.learning_rates or min(cfg.learning_rates) <= 0:
            raise ConfigError("attentive: protocol.learning_rates must be a non-empty list of positive numbers")
        if cfg.depth < 1 or cfg.num_queries < 1 or cfg.mlp_ratio <= 0 or cfg.eval_batch_size < 1:
            raise ConfigError("attentive: protocol.depth, num_queries and eval_batch_size must be >= 1, mlp_ratio > 0")
        if cfg.num_heads is not None and cfg.num_heads < 1:
            raise ConfigError("attentive: protocol.num_heads must be >= 1 (or None: embed_dim // 64)")

    def kind(self, ctx: RunContext) -> str:
        """``frame_patch_tokens`` for video datasets, ``patch_tokens`` for images."""
        return "frame_patch_tokens" if hasattr(ctx.dataset("train"), "views") else "patch_tokens"

    def logits(self, model: ProbeGrid, features: Tensor, device: str) -> Tensor:
        """``[P, N, C]`` logits of every probe on every row (float32, CPU)."""
        batch = int(self.config.eval_batch_size)
        with torch.no_grad():
            return torch.cat([model(torch.as_tensor(np.asarray(features[i:i + batch])).to(device)).float().cpu()
                              for i in range(0, len(features), batch)], dim=1)

    def scores(self, model: ProbeGrid, split: Any, device: str) -> tuple[list[Tensor], Tensor]:
        """Per probe the (per-video) probabilities of ``split`` (a FeatureSet), and the matching labels."""
        labels, videos = split_targets(split.targets, split.labels)
        out, video_labels = [], labels
        for probe_logits in self.logits(model, split.features, device):
            probs, first = per_video_probabilities(probe_logits, videos)
            out.append(probs)
            if first is not None:
                video_labels = labels[first]
        return out, video_labels

    def run(self, ctx: RunContext) -> ProtocolResult:
        """Train the probes on the train split's tokens, select on val, report on test (if any) or val."""
        cfg, kind = self.config, self.kind(ctx)
        train = ctx.features("train", kind, cfg.feature_dtype)
        val = ctx.features("val", kind, cfg.feature_dtype)
        labels, _ = split_targets(train.targets, train.labels)
        num_classes = len(ctx.dataset("train").classes)
        dim = int(train.features.shape[-1])
        heads = cfg.num_heads or max(1, dim // 64)
        if dim % heads:
            raise ConfigError(f"attentive: protocol.num_heads={heads} does not divide the feature width {dim}")
        base_lr = float(train_config(ctx.cfg.get("train")).optimizer["lr"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(ctx.seed))
            model = ProbeGrid(cfg.learning_rates, base_lr, dim=dim, num_classes=num_classes, depth=cfg.depth,
                              num_heads=heads, mlp_ratio=cfg.mlp_ratio, num_queries=cfg.num_queries,
                              num_frames=int(train.features.shape[1]) if kind == "frame_patch_tokens" else 0,
                              num_patches=int(np.prod(train.features.shape[-3:-1])) if cfg.pos_embed else 0)

        def loss_fn(module: Any, batch: Any, iteration: int) -> tuple[Tensor, dict[str, float]]:
            features, targets = batch
            logits = module(features)
            losses = [F.cross_entropy(probe_logits, targets) for probe_logits in logits]
            return sum(losses), {"loss_best_probe": float(min(loss.detach() for loss in losses))}

        def evaluate(module: Any) -> dict[str, float]:
            probs, video_labels = self.scores(module, val, ctx.device)
            return {f"val_top1_lr{lr:g}": 100.0 * float((p.argmax(1) == video_labels).double().mean())
                    for lr, p in zip(cfg.learning_rates, probs)}

        summary = train_head(ctx, model, _Features(train.features, labels), loss_fn, evaluate)
        val_top1 = [summary["metrics"][f"val_top1_lr{lr:g}"] for lr in cfg.learning_rates]
        best = max(range(len(val_top1)), key=lambda i: (val_top1[i], -i))
        report = ctx.features("test", kind, cfg.feature_dtype) if "test" in ctx.datasets else val
        probs, video_labels = self.scores(model.eval(), report, ctx.device)
        scores = probs[best].double().numpy()
        metrics = classification_metrics(video_labels.numpy(), scores.argmax(1), scores, num_classes)
        metrics.update(best_lr=float(cfg.learning_rates[best]), val_top1=val_top1[best],
                       iterations=float(summary["iterations"]))
        table = [{"lr": float(lr), "val_top1": acc} for lr, acc in zip(cfg.learning_rates, val_top1)]
        return ProtocolResult(metrics, "top1", higher_is_better=True, tables={"lr_grid": table})
