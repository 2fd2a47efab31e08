"""Optimizers and parameter groups: a small optimizer registry (``adamw``, ``sgd``), DINOv3's
layer-wise-decay parameter groups, and how scheduled values reach the groups.

A parameter group is a torch group dict with ``lr_multiplier`` and ``wd_multiplier``: every iteration
:func:`apply_lr` sets ``lr = scheduled lr * lr_multiplier`` and ``weight_decay = wd * wd_multiplier``.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
from torch import nn

from dinobench.errors import ConfigError
from dinobench.registry import install_entries, resolve_object


@dataclass(frozen=True)
class OptimizerSpec:
    """A registered optimizer: ``build(groups, cfg) -> Optimizer`` and the defaults of its keys."""

    build: Callable[[list[dict[str, Any]], dict[str, Any]], torch.optim.Optimizer]
    defaults: dict[str, Any]


OPTIMIZERS: dict[str, OptimizerSpec] = {
    "adamw": OptimizerSpec(
        lambda groups, c: torch.optim.AdamW(groups, lr=float(c["lr"]), betas=tuple(c["betas"]), eps=float(c["eps"]),
                                            weight_decay=float(c["weight_decay"])),
        {"lr": 1e-3, "weight_decay": 0.0, "betas": [0.9, 0.999], "eps": 1e-8}),
    "sgd": OptimizerSpec(
        lambda groups, c: torch.optim.SGD(groups, lr=float(c["lr"]), momentum=float(c["momentum"]),
                                          nesterov=bool(c["nesterov"]), weight_decay=float(c["weight_decay"])),
        {"lr": 1e-2, "weight_decay": 0.0, "momentum": 0.9, "nesterov": False}),
}


def register_optimizer(name: str, build: Callable[[list[dict[str, Any]], dict[str, Any]], torch.optim.Optimizer],
                       **defaults: Any) -> None:
    """Make ``train.optimizer.type=name`` build ``build(groups, cfg)``; ``defaults`` must hold ``lr``."""
    OPTIMIZERS[name] = OptimizerSpec(build, {"weight_decay": 0.0, **defaults})


#: name -> the registry entry it was installed from (a plugin's optimizer, see :func:`use_registered`)
_INSTALLED: dict[str, Any] = {}


def use_registered(entries: Iterable[Any]) -> None:
    """Make the optimizers plugins registered (``dinobench_register_optimizers``: entries with ``name``, ``build`` as
    a callable or ``"module:attr"``, ``defaults``, ``source``) available to ``train.optimizer.type``; ``build`` is
    imported on first use. The runner hands the entries over (the engine never asks the plugin manager)."""
    install_entries(OPTIMIZERS, _INSTALLED, entries, "optimizer", lambda entry: OptimizerSpec(
        lambda groups, c, target=entry.build: resolve_object(target)(groups, c), {"weight_decay": 0.0, **entry.defaults}))


def optimizer_config(section: dict[str, Any] | None, default_type: str = "adamw") -> dict[str, Any]:
    """``train.optimizer`` with the defaults of its type filled in; unknown type or key -> one-line ConfigError."""
    section = dict(section or {})
    kind = section.get("type", default_type)
    if kind not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer.type: unknown optimizer {kind!r}; expected one of {', '.join(OPTIMIZERS)}")
    defaults = OPTIMIZERS[kind].defaults
    for key in section:
        if key != "type" and key not in defaults:
            match = difflib.get_close_matches(key, list(defaults), n=1, cutoff=0.4)
            hint = f"did you mean {match[0]}?" if match else f"{kind} takes {', '.join(defaults)}"
            raise ConfigError(f"train.optimizer.{key}: unknown key for {kind!r} ({hint})")
    return {"type": kind, **defaults, **section}


def build_optimizer(groups: list[dict[str, Any]], cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """The optimizer of ``cfg`` (see :func:`optimizer_config`) over ``groups`` (multipliers default to 1)."""
    cfg = optimizer_config(cfg)
    for group in groups:
        group.setdefault("lr_multiplier", 1.0)
        group.setdefault("wd_multiplier", 1.0)
    return OPTIMIZERS[cfg["type"]].build(groups, cfg)


def apply_lr(groups: Iterable[dict[str, Any]], lr: float, weight_decay: float, beta1: float | None = None) -> None:
    """Set each group's lr and weight decay (times its multipliers) and, when given, AdamW's beta1
    (SGD's momentum) for the current iteration."""
    for group in groups:
        group["lr"] = lr * group["lr_multiplier"]
        group["weight_decay"] = weight_decay * group["wd_multiplier"]
        if beta1 is not None:
            if "betas" in group:
                group["betas"] = (beta1, group["betas"][1])
            elif "momentum" in group:
                group["momentum"] = beta1


def _layer_id(name: str, n_blocks: int) -> int:
    """0 for embeddings/tokens, i+1 for block i, n_blocks+1 for everything after (norm, heads)."""
    if any(t in name for t in ("pos_embed", "patch_embed", "mask_token", "cls_token", "storage_tokens",
                               "register_tokens")):
        return 0
    match = re.search(r"(?:^|\.)blocks\.(\d+)\.", name)
    return int(match.group(1)) + 1 if match else n_blocks + 1


def param_groups(modules: dict[str, nn.Module], layerwise_decay: float = 1.0, patch_embed_lr_mult: float = 1.0,
                 dino_head_wd_multiplier: float = 1.0) -> list[dict[str, Any]]:
    """DINOv3's AdamW groups, fused by (lr multiplier, wd multiplier, is last layer).

    The module named ``backbone`` gets layer-wise lr decay (``layerwise_decay ** (depth + 1 - layer)``)
    and ``patch_embed_lr_mult`` on its patch embedding; biases, norms and layer scales get no weight
    decay; ``dino_head`` gets ``dino_head_wd_multiplier``; a head's ``last_layer`` is marked (SSL
    freezes it during the first epoch).
    """
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
