"""``dinobench train``: the SSL training engine (single process, or torchrun DDP / FSDP2).

Checkpoints hold model, optimizer, RNG states and the iteration; the data stream is a pure
function of (seed, iteration), so a resumed run continues the exact schedule. Metrics go to
``<output>/metrics.jsonl``; the teacher backbone is exported as ``teacher_checkpoint.pth`` in
the official backbone format (``create_backbone(..., weights=...)`` loads it).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from dinobench.errors import DinobenchError
from dinobench.training import distributed as ddp
from dinobench.training.checkpoint import CheckpointManager, load_teacher_student_state, rng_state, set_rng_state
from dinobench.ssl.schedules import apply_schedules, build_schedules, param_groups

logger = logging.getLogger("dinobench")


class TrainingDiverged(DinobenchError):
    """A non-finite loss: training stops, the last good checkpoint is kept."""


def build_backbone(student_cfg: dict[str, Any]) -> nn.Module:
    """A backbone from ``dict(arch=NAME, drop_path_rate=..., overrides=dict(...))``."""
    import dinobench

    overrides = dict(student_cfg.get("overrides", {}))
    if student_cfg.get("drop_path_rate") is not None:
        overrides["drop_path_rate"] = student_cfg["drop_path_rate"]
    return dinobench.create_backbone(student_cfg["arch"], **overrides).train()


def build_dataset(cfg: dict[str, Any], rank: int) -> Any:
    """The training images: a registered dataset's ``train`` split wrapped in multi-crop views."""
    from dinobench.plugin_manager import get_registries
    from dinobench.registry import resolve_object
    from dinobench.ssl.augment import MultiCropAugmentation
    from dinobench.ssl.data import MultiCropDataset

    data = cfg["train"]["dataset"]
    spec = get_registries().datasets.get(data["type"])
    base = resolve_object(spec.builder)(dict(data), cfg["train"].get("data_root"))["train"]
    crops = cfg["crops"]
    augmentation = MultiCropAugmentation(
        global_crops_scale=tuple(crops["global_crops_scale"]), local_crops_scale=tuple(crops["local_crops_scale"]),
        local_crops_number=crops["local_crops_number"], global_crops_size=crops["global_crops_size"],
        local_crops_size=crops["local_crops_size"], gram_teacher_crops_size=crops.get("gram_teacher_crops_size"),
        mean=tuple(crops["rgb_mean"]), std=tuple(crops["rgb_std"]))
    return MultiCropDataset(base, augmentation, seed=cfg["train"]["seed"])


class Trainer:
    """Owns model, optimizer, schedules, data, checkpoints and logging for one training run."""

    def __init__(self, cfg: dict[str, Any], output_dir: str | Path) -> None:
        from dinobench.ssl.meta_arch import SSLMetaArch

        self.cfg, self.output = cfg, Path(output_dir)
        self.world, self.rank = ddp.world_size(), ddp.rank()
        self.device = ddp.device(cfg["train"].get("device", "auto"))
        train = cfg["train"]
        torch.manual_seed(train["seed"])  # identical initial weights on every rank
        teacher_state = None
        if cfg.get("distillation", {}).get("enabled"):
            teacher_state = load_teacher_student_state(cfg["distillation"]["checkpoint_path"])
        self.model = SSLMetaArch(cfg, build_backbone, teacher_state=teacher_state).to(self.device)
        init = cfg.get("init", {}).get("from_teacher_checkpoint")
        if init:  # high-resolution adaptation: continue from an earlier run's teacher
            state = load_teacher_student_state(init)
            for name in self.model.students:
                self.model.students[name].load_state_dict(state)
                self.model.emas[name].load_state_dict(state)
        if cfg.get("gram", {}).get("use_loss") and cfg["gram"].get("ckpt"):
            gram_state = load_teacher_student_state(cfg["gram"]["ckpt"])
            self.model.gram_teacher.load_state_dict(
                {k[len("backbone."):]: v for k, v in gram_state.items() if k.startswith("backbone.")})
            self.model.gram_teacher_initialized = True
        # shard / wrap before building the optimizer: FSDP2 replaces the parameters by DTensors
        ddp.wrap_students(self.model, cfg["train"].get("parallel", "ddp"), self.device)
        groups = []
        for name, student in self.model.students.items():
            groups += param_groups({"backbone": student.backbone, "dino_head": student.dino_head,
                                    "ibot_head": student.ibot_head}, cfg["optim"]["layerwise_decay"],
                                   cfg["optim"]["patch_embed_lr_mult"], cfg["optim"].get("dino_head_wd_multiplier", 1.0))
        self.optimizer = torch.optim.AdamW(groups, betas=(cfg["optim"]["adamw_beta1"], cfg["optim"]["adamw_beta2"]))
        self.dataset = build_dataset(cfg, self.rank)
        global_batch = train["batch_size_per_gpu"] * self.world
        self.epoch_length = train.get("epoch_length") or max(len(self.dataset) // global_batch, 1)
        self.total_iters = int(cfg["optim"]["epochs"] * self.epoch_length)
        self.schedules = build_schedules(cfg["optim"], cfg["teacher"], self.total_iters, self.epoch_length,
                                         global_batch)
        self.checkpoints = CheckpointManager(self.output / "checkpoints", cfg["checkpointing"].get("max_to_keep", 3),
                                             enabled=self.rank == 0)
        self.start_iter, self.gram_updates = 0, 0
        self._stop = False

    # ----------------------------------------------------------------- state
    def state_dict(self, iteration: int) -> dict[str, Any]:
        """Everything needed to continue exactly after ``iteration`` completed.

        Collective under FSDP2 (every rank calls it): model and optimizer are gathered into full,
        unsharded CPU state dicts on rank 0, the one that saves.
        """
        return {"iteration": iteration, "model": ddp.full_state_dict(self.model),
                "optimizer": ddp.optimizer_state_dict(self.model, self.optimizer),
                "rng": rng_state(), "gram_teacher_initialized": self.model.gram_teacher_initialized,
                "gram_updates": self.gram_updates, "config": json.loads(json.dumps(self.cfg, default=str))}

    def resume(self) -> bool:
        """Load the newest checkpoint of this output folder, if any (every rank reads the full state;
        under FSDP2 each keeps its shards)."""
        state = self.checkpoints.load_latest()
        if state is None:
            return False
        ddp.load_full_state_dict(self.model, state["model"])
        ddp.load_optimizer_state_dict(self.model, self.optimizer, state["optimizer"])
        set_rng_state(state["rng"])
        self.model.gram_teacher_initialized = state["gram_teacher_initialized"]
        self.gram_updates = state["gram_updates"]
        self.start_iter = state["iteration"] + 1
        logger.info("resumed from iteration %d", state["iteration"])
        return True

    # ----------------------------------------------------------------- loop
    def _loader(self):
        from torch.utils.data import DataLoader

        from dinobench.ssl.data import IterationCollate, ShardedIterationSampler

        train = self.cfg["train"]
        patch = next(iter(self.model.students.values())).backbone.patch_size
        sampler = ShardedIterationSampler(len(self.dataset), train["batch_size_per_gpu"], self.world, self.rank,
                                          train["seed"], start_iteration=self.start_iter)
        # own generator: creating the iterator must not draw from the global RNG (exact resume)
        return DataLoader(self.dataset, batch_sampler=sampler, num_workers=train.get("num_workers", 0),
                          generator=torch.Generator().manual_seed(train["seed"]),
                          collate_fn=IterationCollate(self.cfg["crops"], self.cfg["ibot"], patch, train["seed"],
                                                      self.rank, self.world),
                          persistent_workers=False)

    def _gram_step(self, iteration: int) -> float:
        gram = self.cfg.get("gram", {})
        if not gram.get("use_loss"):
            return 0.0
        if gram.get("it_load_ema_teacher", -1) == iteration:
            self.model.load_gram_from_teacher()
        return float(gram.get("loss_weight", 1.0)) if iteration >= gram.get("it_start", 0) else 0.0

    def _after_step_gram(self, iteration: int) -> None:
        gram = self.cfg.get("gram", {})
        if not (gram.get("use_loss") and gram.get("rep_update")):
            return
        first, every = gram.get("it_first_update", 0), gram.get("update_frequency", 0)
        limit = gram.get("max_updates")
        if every and iteration + 1 >= first and (iteration + 1) % every == 0 and (limit is None or
                                                                                    self.gram_updates < limit):
            self.model.load_gram_from_teacher()
            self.gram_updates += 1

    def fit(self) -> dict[str, Any]:
        """Train from ``start_iter`` to the end; returns a summary (paths, last metrics)."""
        self.output.mkdir(parents=True, exist_ok=True)
        metrics_path = self.output / "metrics.jsonl"
        signal.signal(signal.SIGTERM, self._on_sigterm)
        period = self.cfg["checkpointing"]["period"]
        clip = self.cfg["optim"].get("clip_grad")
        params = [p for s in self.model.students.values() for p in s.parameters()]
        autocast = ddp.autocast(self.device, self.cfg.get("compute_precision", {}).get("autocast_dtype"))
        self.model.train()
        last: dict[str, Any] = {}
        data = iter(self._loader())
        quiet = self.rank != 0 or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
        bar = tqdm(range(self.start_iter, self.total_iters), desc="train", disable=quiet, unit="it")
        for iteration in bar:
            tic = time.perf_counter()
            batch = ddp.to_device(next(data), self.device)
            values = self.schedules.at(iteration)
            apply_schedules(self.optimizer.param_groups, values)
            self.optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss, metrics = self.model.forward_backward(batch, values["teacher_temp"], self._gram_step(iteration))
            metrics = ddp.mean_metrics(metrics)
            if not math.isfinite(metrics["total_loss"]):
                kept = self.checkpoints.latest_path()
                raise TrainingDiverged(
                    f"iteration {iteration}: loss is {metrics['total_loss']} ({', '.join(f'{k}={v:.4g}' for k, v in metrics.items())}); "
                    f"stopped, last good checkpoint kept: {kept or 'none yet'} -- lower optim.lr or check the data")
            if clip:
                metrics["grad_norm"] = ddp.clip_grad_norm(params, clip)
            self.optimizer.step()
            self.model.update_ema(values["momentum"])
            self._after_step_gram(iteration)
            seconds = time.perf_counter() - tic
            last = {"iteration": iteration, **metrics, **{k: values[k] for k in ("lr", "weight_decay", "momentum",
                                                                                 "teacher_temp")},
                    "images_per_s": self.cfg["train"]["batch_size_per_gpu"] * self.world / seconds}
            if self.rank == 0:
                with open(metrics_path, "a") as fh:
                    fh.write(json.dumps(last) + "\n")
                bar.set_postfix(loss=f"{metrics['total_loss']:.3f}")
            stop = ddp.any_rank(self._stop)
            if (iteration + 1) % period == 0 or iteration + 1 == self.total_iters or stop:
                self.checkpoints.save(self.state_dict(iteration), iteration)
            if stop:
                logger.info("SIGTERM: checkpoint saved at iteration %d; run the same command to resume", iteration)
                return {"output": str(self.output), "last": last, "interrupted_at": iteration}
        return {"output": str(self.output), "last": last, "exported": self.export()}

    def _on_sigterm(self, *_: Any) -> None:
        self._stop = True

    def export(self) -> dict[str, str]:
        """``teacher_checkpoint.pth`` (+ ``teacher_checkpoint_<student>.pth`` for several students): the
        backbone's full state dict in the official format, saved by rank 0. Collective under FSDP2 (the
        sharded EMA is gathered)."""
        from dinobench.backbones.export import export_pth

        paths = {}
        for i, (name, backbone) in enumerate(self.model.export_backbones().items()):
            state = ddp.full_state_dict(backbone)
            if self.rank == 0:
                target = self.output / ("teacher_checkpoint.pth" if i == 0 else f"teacher_checkpoint_{name}.pth")
                paths[name] = str(export_pth(backbone, target, state=state))
        return paths


def train(cfg: dict[str, Any], output_dir: str | Path) -> dict[str, Any]:
    """Initialise distributed state (torchrun env), resume if possible, train, export."""
    ddp.init_from_env()
    clean = False
    try:
        trainer = Trainer(cfg, output_dir)
        trainer.resume()
        summary = trainer.fit()
        clean = True
        return summary
    finally:
        ddp.shutdown(synchronize=clean)
