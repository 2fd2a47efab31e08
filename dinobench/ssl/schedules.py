"""Per-iteration schedules (lr, weight decay, teacher momentum and temperature) and the AdamW
parameter groups of DINOv3 (layer-wise lr decay, patch-embed lr multiplier, no wd on norms/biases,
last-layer freeze)."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from torch import nn


def cosine_schedule(base: float, final: float, total: int, warmup: int = 0, start_warmup: float = 0.0,
                    freeze: int = 0) -> np.ndarray:
    """``freeze`` zeros, linear warm-up to ``base``, then cosine from ``base`` to ``final``; length ``total``."""
    warmup, freeze = min(warmup, total), min(freeze, total)
    cosine_len = max(total - warmup - freeze, 0)
    iters = np.arange(cosine_len)
    cosine = final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / max(cosine_len, 1)))
    schedule = np.concatenate([np.zeros(freeze), np.linspace(start_warmup, base, warmup), cosine])
    return schedule[:total].astype(np.float64)


@dataclass
class Schedules:
    """One value per iteration for each schedule; indexing past the end returns the last value."""

    lr: np.ndarray
    weight_decay: np.ndarray
    momentum: np.ndarray
    teacher_temp: np.ndarray
    last_layer_lr: np.ndarray

    def at(self, iteration: int) -> dict[str, float]:
        """All values at ``iteration``."""
        def pick(a: np.ndarray) -> float:
            return float(a[min(iteration, len(a) - 1)])
        return {"lr": pick(self.lr), "weight_decay": pick(self.weight_decay), "momentum": pick(self.momentum),
                "teacher_temp": pick(self.teacher_temp), "last_layer_lr": pick(self.last_layer_lr)}


def scaled_lr(lr: float, global_batch: int, rule: str) -> float:
    """DINOv3 lr scaling rules (``sqrt_wrt_1024``, ``linear_wrt_256``, ``none``)."""
    if rule == "sqrt_wrt_1024":
        return lr * 4 * math.sqrt(global_batch / 1024)
    if rule == "linear_wrt_256":
        return lr * global_batch / 256
    if rule in ("none", None):
        return lr
    raise ValueError(f"optim.scaling_rule: unknown rule {rule!r} (sqrt_wrt_1024, linear_wrt_256, none)")


def build_schedules(optim: dict[str, Any], teacher: dict[str, Any], total_iters: int, epoch_length: int,
                    global_batch: int) -> Schedules:
    """Schedules from the ``optim`` and ``teacher`` config sections (epochs in units of ``epoch_length``)."""
    lr_peak = scaled_lr(optim["lr"], global_batch, optim.get("scaling_rule", "none"))
    lr_min = scaled_lr(optim["min_lr"], global_batch, optim.get("scaling_rule", "none"))
    warmup = int(optim["warmup_epochs"] * epoch_length)
    lr = cosine_schedule(lr_peak, lr_min, total_iters, warmup=warmup)
    last_layer = lr.copy()
    last_layer[: int(optim.get("freeze_last_layer_epochs", 0) * epoch_length)] = 0.0
    wd = cosine_schedule(optim["weight_decay"], optim["weight_decay_end"], total_iters)
    momentum = cosine_schedule(teacher["momentum_teacher"], teacher["final_momentum_teacher"], total_iters)
    temp_warmup = int(teacher["warmup_teacher_temp_epochs"] * epoch_length)
    temp = np.concatenate([np.linspace(teacher["warmup_teacher_temp"], teacher["teacher_temp"], temp_warmup),
                           np.full(max(total_iters - temp_warmup, 1), teacher["teacher_temp"])])
    return Schedules(lr, wd, momentum, temp, last_layer)


def _layer_id(name: str, n_blocks: int) -> int:
    """0 for embeddings/tokens, i+1 for block i, n_blocks+1 for everything after (norm, heads)."""
    if any(t in name for t in ("pos_embed", "patch_embed", "mask_token", "cls_token", "storage_tokens",
                               "register_tokens")):
        return 0
    match = re.search(r"(?:^|\.)blocks\.(\d+)\.", name)
    return int(match.group(1)) + 1 if match else n_blocks + 1


def param_groups(modules: dict[str, nn.Module], layerwise_decay: float = 1.0, patch_embed_lr_mult: float = 1.0,
                 dino_head_wd_multiplier: float = 1.0) -> list[dict[str, Any]]:
    """AdamW groups fused by (lr multiplier, wd multiplier, is last layer), like the official recipe."""
    fused: dict[tuple, dict[str, Any]] = defaultdict(lambda: {"params": []})
    for prefix, module in modules.items():
        n_blocks = len(getattr(module, "blocks", [])) if prefix == "backbone" else 0
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            lr_mult = layerwise_decay ** (n_blocks + 1 - _layer_id(name, n_blocks)) if prefix == "backbone" else 1.0
            if "patch_embed" in name:
                lr_mult *= patch_embed_lr_mult
            wd_mult = dino_head_wd_multiplier if prefix == "dino_head" else 1.0
            if name.endswith("bias") or "norm" in name or "gamma" in name:
                wd_mult = 0.0
            is_last = prefix.endswith("head") and "last_layer" in name
            key = (lr_mult, wd_mult, is_last)
            group = fused[key]
            group.update(lr_multiplier=lr_mult, wd_multiplier=wd_mult, is_last_layer=is_last)
            group["params"].append(param)
    return list(fused.values())


def apply_schedules(groups: Iterable[dict[str, Any]], values: dict[str, float]) -> None:
    """Set each optimizer group's lr and weight decay for the current iteration."""
    for group in groups:
        base_lr = values["last_layer_lr"] if group["is_last_layer"] else values["lr"]
        group["lr"] = base_lr * group["lr_multiplier"]
        group["weight_decay"] = values["weight_decay"] * group["wd_multiplier"]
