"""SSL pretraining schedules: per-iteration arrays (lr, weight decay, teacher momentum and temperature,
last-layer lr) built once from the ``optim`` and ``teacher`` sections, as DINOv3 does, and how they reach
the optimizer's parameter groups (:func:`dinobench.training.optim.param_groups`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from dinobench.errors import ConfigError


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
    raise ConfigError(f"optim.scaling_rule: unknown rule {rule!r} (sqrt_wrt_1024, linear_wrt_256, none)")


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


def apply_schedules(groups: Iterable[dict[str, Any]], values: dict[str, float]) -> None:
    """Set each optimizer group's lr and weight decay for the current iteration."""
    for group in groups:
        base_lr = values["last_layer_lr"] if group["is_last_layer"] else values["lr"]
        group["lr"] = base_lr * group["lr_multiplier"]
        group["weight_decay"] = values["weight_decay"] * group["wd_multiplier"]
