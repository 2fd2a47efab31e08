"""The ``train`` section of a head-training task: engine defaults (neutral, not any one recipe's) and
the keys that never change the trained weights.

Recipe values (the official ADE20K or NYU schedules, ...) live in config files
(``configs/_base_/train/*.py``); the engine only fills in what a config leaves out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from dinobench.errors import ConfigError
from dinobench.training.loop import LoopSettings
from dinobench.training.optim import optimizer_config
from dinobench.training.schedules import schedule_at, scheduler_config
from dinobench.typed_config import merge_section


@dataclass
class TrainConfig:
    """``train.*``: iteration-based training with a global batch; see :mod:`dinobench.training.loop`."""

    max_iters: int = 1000
    batch_size: int = 8  # global: split over the ranks
    grad_clip: float | None = None  # max gradient norm; None: no clipping
    amp: Literal["bf16", "fp16"] | None = None  # autocast dtype on GPU; None: float32
    optimizer: dict = field(default_factory=lambda: {"type": "adamw"})  # + the optimizer's keys (training.optim)
    scheduler: dict = field(default_factory=lambda: {"type": "constant"})  # + the schedule's keys (training.schedules)
    # runtime keys (RUNTIME_TRAIN_KEYS): they never change the trained weights
    num_workers: int = 0
    eval_every: int | None = 0  # 0/None: evaluate at the end only
    checkpoint_every: int | None = 1000  # 0/None: at the end (and on SIGTERM) only
    max_to_keep: int = 1
    log_every: int | None = 10
    work_dir: str | None = None  # None: <output>/.runs/<backbone>/<task>/<run key>
    resume: bool = True
    parallel: Literal["ddp", "fsdp"] = "ddp"  # under torchrun: DDP, or FSDP2 over the model's fsdp_units()

    def loop_settings(self) -> LoopSettings:
        """How :class:`~dinobench.training.loop.TrainingLoop` runs this section."""
        return LoopSettings(max_iters=self.max_iters, grad_clip=self.grad_clip, amp=self.amp,
                            checkpoint_every=int(self.checkpoint_every or 0), max_to_keep=self.max_to_keep,
                            eval_every=int(self.eval_every or 0), log_every=int(self.log_every or 1),
                            num_workers=self.num_workers, resume=self.resume)

    def as_dict(self) -> dict[str, Any]:
        """The resolved section as plain data (stored in checkpoints, for humans)."""
        return dataclasses.asdict(self)


#: ``train.*`` keys that cannot change the trained weights: left out of run keys and protocol hashes
RUNTIME_TRAIN_KEYS: tuple[str, ...] = tuple(
    f"train.{name}" for name in ("num_workers", "eval_every", "checkpoint_every", "max_to_keep", "log_every",
                                 "work_dir", "resume", "parallel"))


def train_config(section: dict[str, Any] | None) -> TrainConfig:
    """The ``train`` section resolved to a :class:`TrainConfig` (defaults filled in, optimizer and scheduler
    sections completed by their registered types) and checked: an unknown key is a one-line ConfigError
    naming the closest valid one, a value of the wrong type or range names the key."""
    section = dict(section or {})
    optimizer, scheduler = section.pop("optimizer", None), section.pop("scheduler", None)
    for name, value in (("optimizer", optimizer), ("scheduler", scheduler)):
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"train.{name} must be a dict (e.g. {name}=dict(type=...)), got {value!r}")
    cfg = merge_section(TrainConfig, section, "train")  # names and types
    cfg["optimizer"] = optimizer_config(optimizer)
    cfg["scheduler"] = scheduler_config(scheduler)
    for key in ("max_iters", "batch_size"):
        if cfg[key] < 1:
            raise ConfigError(f"train.{key} must be a positive integer, got {cfg[key]!r}")
    for key in ("num_workers", "max_to_keep"):
        if cfg[key] < 0 or (key == "max_to_keep" and cfg[key] < 1):
            raise ConfigError(f"train.{key}={cfg[key]!r} is out of range")
    warmup = cfg["scheduler"]["warmup_iters"]
    for t in (0, warmup if isinstance(warmup, int) else 0):  # checks the schedule's own values once
        schedule_at(cfg["scheduler"], 1.0, t, cfg["max_iters"])
    return TrainConfig(**cfg)


#: the engine's defaults, filled in as :func:`train_config` fills in an empty section
TRAIN_DEFAULTS: TrainConfig = train_config({})
