"""``dinobench train``: DINOv3 SSL pretraining as a recipe on the shared loop (single process, or
torchrun DDP / FSDP2).

Checkpoints hold model, optimizer, RNG states, the iteration and the Gram-teacher counters; the data
stream is a pure function of ``(seed, iteration)``, so a resumed run continues the exact schedule.
Metrics go to ``<output>/metrics.jsonl``; the teacher backbone is exported as
``teacher_checkpoint.pth`` in the official backbone format (``create_backbone(..., weights=...)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dinobench.backbones import create_backbone
from dinobench.backbones.export import export_pth
from dinobench.plugin_manager import get_registries
from dinobench.registry import resolve_object
from dinobench.ssl.augment import MultiCropAugmentation
from dinobench.ssl.data import IterationCollate, MultiCropDataset
from dinobench.ssl.meta_arch import SSLMetaArch
from dinobench.utils import distributed as ddp
from dinobench.training.checkpoint import load_teacher_student_state
from dinobench.training.loop import LoopSettings, Recipe, TrainingLoop
from dinobench.training.optim import param_groups
from dinobench.training.ssl_schedules import apply_schedules, build_schedules

#: scheduled values written to metrics.jsonl every iteration
LOGGED_SCHEDULES = ("lr", "weight_decay", "momentum", "teacher_temp")


def build_backbone(student_cfg: dict[str, Any]) -> nn.Module:
    """A backbone from ``dict(arch=NAME, drop_path_rate=..., overrides=dict(...))``."""
    overrides = dict(student_cfg.get("overrides", {}))
    if student_cfg.get("drop_path_rate") is not None:
        overrides["drop_path_rate"] = student_cfg["drop_path_rate"]
    return create_backbone(student_cfg["arch"], **overrides).train()


def build_dataset(cfg: dict[str, Any]) -> MultiCropDataset:
    """The training images: a registered dataset's ``train`` split wrapped in multi-crop views."""
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


class SSLRecipe(Recipe):
    """Student(s) + EMA teacher(s) of :class:`~dinobench.ssl.meta_arch.SSLMetaArch` trained on multi-crop views."""

    name = "SSL training"
    desc = "train"
    divergence_hint = "lower optim.lr or check the data"
    # one continuous model-side RNG stream, identical on every rank (seeded in __init__), as the official loop:
    # the per-batch RoPE rescaling draw must agree across ranks. Re-seeding it every iteration (as head training
    # does) was measured to hurt this recipe: digits kNN of the toy pretraining 59.6 -> 47.1 (random init 49.9)
    model_rng = "continuous"

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.config, train = cfg, cfg["train"]
        world = ddp.world_size()
        self.device = ddp.device(train.get("device", "auto"))
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
        ddp.wrap_students(self.model, train.get("parallel", "ddp"), self.device)
        optim = cfg["optim"]
        groups = []
        for student in self.model.students.values():
            groups += param_groups({"backbone": student.backbone, "dino_head": student.dino_head,
                                    "ibot_head": student.ibot_head}, optim["layerwise_decay"],
                                   optim["patch_embed_lr_mult"], optim.get("dino_head_wd_multiplier", 1.0))
        self.optimizer = torch.optim.AdamW(groups, betas=(optim["adamw_beta1"], optim["adamw_beta2"]))
        self.dataset = build_dataset(cfg)
        self.batch_per_rank = train["batch_size_per_gpu"]
        global_batch = self.batch_per_rank * world
        self.epoch_length = train.get("epoch_length") or max(len(self.dataset) // global_batch, 1)
        self.total_iters = int(optim["epochs"] * self.epoch_length)
        self.schedules = build_schedules(optim, cfg["teacher"], self.total_iters, self.epoch_length, global_batch)
        patch = next(iter(self.model.students.values())).backbone.patch_size
        self.collate_fn = IterationCollate(cfg["crops"], cfg["ibot"], patch, train["seed"], ddp.rank(), world)
        self.gram_updates = 0
        self._values: dict[str, float] = {}

    # ----------------------------------------------------------------- one iteration
    def apply_schedule(self, iteration: int) -> dict[str, float]:
        self._values = self.schedules.at(iteration)
        apply_schedules(self.optimizer.param_groups, self._values)
        return {k: self._values[k] for k in LOGGED_SCHEDULES}

    def gram_weight(self, iteration: int) -> float:
        """The Gram loss weight of ``iteration`` (loading the Gram teacher from the EMA when due)."""
        gram = self.config.get("gram", {})
        if not gram.get("use_loss"):
            return 0.0
        if gram.get("it_load_ema_teacher", -1) == iteration:
            self.model.load_gram_from_teacher()
        return float(gram.get("loss_weight", 1.0)) if iteration >= gram.get("it_start", 0) else 0.0

    def step(self, batch: Any, iteration: int) -> tuple[Tensor, dict[str, float]]:
        """Forward and backward of every student (the meta-architecture back-propagates itself)."""
        _, metrics = self.model.forward_backward(batch, self._values["teacher_temp"], self.gram_weight(iteration))
        metrics = ddp.mean_metrics(metrics)
        return torch.tensor(metrics["total_loss"], dtype=torch.float64), metrics

    def clip_parameters(self) -> list[nn.Parameter]:
        return [p for s in self.model.students.values() for p in s.parameters()]

    def after_step(self, iteration: int) -> None:
        """EMA update of the teacher(s), then the Gram-teacher refresh when due."""
        self.model.update_ema(self._values["momentum"])
        self.refresh_gram(iteration)

    def refresh_gram(self, iteration: int) -> None:
        """``gram.rep_update``: reload the Gram teacher from the EMA teacher after every
        ``update_frequency``-th iteration from ``it_first_update`` on, at most ``max_updates`` times."""
        gram = self.config.get("gram", {})
        if not (gram.get("use_loss") and gram.get("rep_update")):
            return
        first, every = gram.get("it_first_update", 0), gram.get("update_frequency", 0)
        limit = gram.get("max_updates")
        if every and iteration + 1 >= first and (iteration + 1) % every == 0 and (limit is None or
                                                                                    self.gram_updates < limit):
            self.model.load_gram_from_teacher()
            self.gram_updates += 1

    # ----------------------------------------------------------------- checkpoints
    def model_state(self) -> dict[str, Any]:
        """Full (unsharded) CPU state on rank 0; collective under FSDP2."""
        return ddp.full_state_dict(self.model)

    def load_model_state(self, state: dict[str, Any], path: Path) -> None:
        ddp.load_full_state_dict(self.model, state)

    def optimizer_state(self) -> dict[str, Any]:
        return ddp.optimizer_state_dict(self.model, self.optimizer)

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        ddp.load_optimizer_state_dict(self.model, self.optimizer, state)

    def state_extras(self) -> dict[str, Any]:
        return {"gram_teacher_initialized": self.model.gram_teacher_initialized, "gram_updates": self.gram_updates}

    def load_state_extras(self, state: dict[str, Any], path: Path) -> None:
        self.model.gram_teacher_initialized = state["gram_teacher_initialized"]
        self.gram_updates = state["gram_updates"]

    def export(self, output: Path) -> dict[str, str]:
        """``teacher_checkpoint.pth`` (+ ``teacher_checkpoint_<student>.pth`` for several students): the
        backbone's full state dict in the official format, saved by rank 0. Collective under FSDP2."""
        paths = {}
        for i, (name, backbone) in enumerate(self.model.export_backbones().items()):
            state = ddp.full_state_dict(backbone)
            if ddp.rank() == 0:
                target = output / ("teacher_checkpoint.pth" if i == 0 else f"teacher_checkpoint_{name}.pth")
                paths[name] = str(export_pth(backbone, target, state=state))
        return paths


def loop_settings(cfg: dict[str, Any], total_iters: int) -> LoopSettings:
    """The loop part of an SSL config (every iteration is logged)."""
    return LoopSettings(max_iters=total_iters, grad_clip=cfg["optim"].get("clip_grad"),
                        amp=cfg.get("compute_precision", {}).get("autocast_dtype"),
                        checkpoint_every=int(cfg["checkpointing"]["period"]),
                        max_to_keep=int(cfg["checkpointing"].get("max_to_keep", 3)), log_every=1,
                        num_workers=int(cfg["train"].get("num_workers", 0)))


class Trainer:
    """One SSL run in ``output_dir``: the recipe, the loop, and the export at the end."""

    def __init__(self, cfg: dict[str, Any], output_dir: str | Path) -> None:
        self.output = Path(output_dir)
        self.recipe = SSLRecipe(cfg)
        self.loop = TrainingLoop(self.recipe, loop_settings(cfg, self.recipe.total_iters), self.output,
                                 device=self.recipe.device, seed=cfg["train"]["seed"])

    model = property(lambda self: self.recipe.model, doc="The SSL meta-architecture.")

    def resume(self) -> bool:
        """Load the newest checkpoint of the output folder, if any (every rank reads the full state)."""
        return self.loop.resume()

    def fit(self) -> dict[str, Any]:
        """Train to the end, export the teacher(s); ``{"output", "last", "exported"}``."""
        self.output.mkdir(parents=True, exist_ok=True)
        summary = self.loop.fit()
        return {"output": str(self.output), "last": summary["last"], "exported": self.recipe.export(self.output)}


def train(cfg: dict[str, Any], output_dir: str | Path) -> dict[str, Any]:
    """Initialise distributed state (torchrun env), resume if possible, train, export. SIGTERM saves a
    checkpoint and raises :class:`~dinobench.training.loop.TrainingInterrupted` (exit 143)."""
    ddp.init_from_env()
    clean = False
    try:
        trainer = Trainer(cfg, output_dir)
        with trainer.loop.exclusive():
            trainer.resume()
            summary = trainer.fit()
        clean = True
        return summary
    finally:
        ddp.shutdown(synchronize=clean)
