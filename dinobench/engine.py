"""The one head-training engine for dense (and later detection) heads on top of a backbone.

Why not mmengine's ``Runner``: on resume it re-seeds instead of restoring RNG states and skips
the consumed data by loading and augmenting every batch again (``IterBasedTrainLoop``), so a
resumed run is not bit-identical; it also wants its registries, data preprocessor, work-dir and
logging layout around our frozen-backbone feature path and result records. This engine is small:
iteration-based AdamW whose lr (and beta1) is a pure function of the iteration, a data stream that
is a pure function of ``(seed, iteration)``, DDP under torchrun, and atomic checkpoints.

Exact resume: batch ``t`` is global batch ``t`` of a seeded per-epoch permutation and every sample's
augmentation is seeded by ``(seed, t, index)``; the model-side random stream (dropout, drop-path)
of iteration ``t`` is seeded by ``(seed, t, rank)``. A checkpoint holds model, optimiser, schedule
position, iteration and RNG states, so a killed run continued from its last checkpoint ends with
the same weights, bit for bit, as an uninterrupted one. SIGTERM saves a checkpoint and stops.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dinobench.errors import ConfigError, DinobenchError
from dinobench.utils.seeding import seed_from
from dinobench.training import distributed as ddp
from dinobench.training.checkpoint import CheckpointManager, rng_state, set_rng_state
from dinobench.ssl.data import ShardedIterationSampler
from dinobench.ssl.schedules import param_groups

logger = logging.getLogger("dinobench")

TRAIN_DEFAULTS: dict[str, Any] = dict(
    max_iters=40000, batch_size=16, num_workers=0, eval_every=0, checkpoint_every=1000, max_to_keep=1,
    log_every=10, grad_clip=None, amp="bf16", work_dir=None, resume=True,
    optimizer=dict(lr=1e-3, weight_decay=1e-3, betas=[0.9, 0.999]),
    scheduler=dict(type="warmup_one_cycle", warmup_iters=1500, warmup_ratio=1e-6),
)
#: ``train.*`` keys that cannot change the trained weights (left out of the run key)
RUNTIME_TRAIN_KEYS = ("num_workers", "eval_every", "checkpoint_every", "max_to_keep", "log_every", "work_dir",
                      "resume")
SCHEDULES = ("warmup_one_cycle", "poly", "cosine", "constant")


class TrainingInterrupted(DinobenchError):
    """SIGTERM during head training: a checkpoint was saved; the same command resumes."""

    exit_code = 143


class TrainingDiverged(DinobenchError):
    """A non-finite loss; the last good checkpoint is kept."""


# ------------------------------------------------------------------------------------ schedules
def _anneal(start: float, end: float, pct: float, strategy: str) -> float:
    if strategy == "cos":
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
    return start + (end - start) * pct


def schedule_at(cfg: dict[str, Any], base_lr: float, iteration: int, total: int) -> dict[str, float]:
    """lr (and beta1 when the schedule drives it) at ``iteration`` of ``total``; pure function.

    ``warmup_one_cycle`` is the official DINOv3 ``WarmupOneCycleLR`` for dense heads (step
    ``t`` = iteration ``t``): during ``warmup_iters`` with ``warmup_ratio`` r,
    ``lr = base * (1 - (1 - t/W)(1 - r)) * (1 - t/T)``, without r
    ``lr = base/fdf + base (1 + cos(pi t/T))/2 * t/W``; then ``cos`` anneal from ``base`` to
    ``base / div_factor / fdf`` at ``(t+1)/T`` (``fdf=None``: to 0). ``use_beta1``: AdamW beta1 is
    0 during warm-up, then annealed from ``base_momentum`` to ``max_momentum`` (as official).
    ``poly``: linear warm-up then ``(base - min_lr)(1 - t/T)^power + min_lr``; ``cosine``: linear
    warm-up then cosine to ``min_lr``; ``constant``: linear warm-up then ``base``.
    """
    kind = cfg.get("type", "warmup_one_cycle")
    warmup = int(cfg.get("warmup_iters", 0))
    ratio = float(cfg.get("warmup_ratio", 0.0) or 0.0)
    t, total = int(iteration), max(int(total), 1)
    out: dict[str, float] = {}
    if kind == "warmup_one_cycle":
        fdf = cfg.get("final_div_factor")
        fdf = math.inf if fdf is None else float(fdf)
        min_lr = base_lr / float(cfg.get("div_factor", 25.0)) / fdf
        strategy = cfg.get("anneal_strategy", "cos")
        if t < warmup:
            if ratio:
                k = (1 - t / warmup) * (1 - ratio)
                lr = base_lr * (1 - k) * (1 - t / total)
            else:
                lr = base_lr / fdf + base_lr * (1 + math.cos(math.pi * t / total)) / 2 * t / warmup
            momentum = 0.0
        else:
            momentum = _anneal(float(cfg.get("base_momentum", 0.85)), float(cfg.get("max_momentum", 0.95)),
                               (t - warmup) / max(total - warmup, 1), strategy)
            lr = _anneal(base_lr, min_lr, (t + (1 if strategy == "cos" else 0)) / total, strategy)
        if cfg.get("use_beta1", False):
            out["beta1"] = momentum
        out["lr"] = lr
        return out
    if kind not in SCHEDULES:
        raise ConfigError(f"train.scheduler.type: unknown schedule {kind!r}; expected one of {', '.join(SCHEDULES)}")
    if t < warmup:
        return {"lr": base_lr * (ratio + (1 - ratio) * t / warmup)}
    min_lr = float(cfg.get("min_lr", 0.0))
    pct = (t - warmup) / max(total - warmup, 1)
    if kind == "poly":
        return {"lr": (base_lr - min_lr) * (1 - pct) ** float(cfg.get("power", 1.0)) + min_lr}
    if kind == "cosine":
        return {"lr": _anneal(base_lr, min_lr, pct, "cos")}
    return {"lr": base_lr}


# ------------------------------------------------------------------------------------ run folder
def backbone_fingerprint(model: nn.Module) -> str:
    """Cheap identity of a backbone's weights: names, shapes, sums and first values of each tensor."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            flat = tensor.detach().reshape(-1)
            floating = flat.is_floating_point()
            head = flat[:64].double().cpu().numpy().tobytes() if floating else b""
            total = float(torch.sum(flat, dtype=torch.float64)) if floating else int(flat.sum())
            digest.update(f"{name}:{tuple(tensor.shape)}:{total!r}".encode() + head)
    return digest.hexdigest()[:16]


#: config keys that only affect evaluation or bookkeeping, not the trained head
EVAL_ONLY_KEYS = (("protocol", "inference"), ("protocol", "num_visualizations"), ("transform", "eval"),
                  ("task", "description"))


def run_key(ctx: Any) -> str:
    """What makes a head-training run resumable into another: the resolved config without runtime-
    and evaluation-only keys, the backbone (name, overrides, weights), the training data and seed.
    Not the number of ranks: the data stream and the global batch do not depend on it."""
    from dinobench.config import protocol_hash

    cfg = json.loads(json.dumps(ctx.cfg, default=str))
    for key in RUNTIME_TRAIN_KEYS:
        cfg.get("train", {}).pop(key, None)
    for section, key in EVAL_ONLY_KEYS:
        cfg.get(section, {}).pop(key, None)
    identity = {"backbone": ctx.backbone_name, "overrides": ctx.cfg.get("backbone", {}),
                "weights": ctx.weights_sha256, "seed": ctx.seed,
                "train_data": getattr(ctx.datasets.get("train"), "fingerprint", "")}
    if ctx.backbone_name is None:  # a context built outside the runner does not say which backbone: look at it
        identity["params"] = backbone_fingerprint(ctx.backbone)
    return protocol_hash({"config": cfg, "identity": identity}, "")


def work_dir_for(ctx: Any, key: str) -> Path:
    """``train.work_dir`` if set, else ``<output>/.runs/<backbone>/<task>/<key>`` (``<output>``:
    ``ctx.output_dir``, ``$DINOBENCH_OUTPUT`` or ``outputs``)."""
    from dinobench.utils.io import safe_component

    chosen = ctx.cfg.get("train", {}).get("work_dir")
    if chosen:
        return Path(chosen).expanduser()
    from dinobench.utils.paths import DEFAULT_OUTPUT

    output = ctx.output_dir or os.environ.get("DINOBENCH_OUTPUT", DEFAULT_OUTPUT)
    name = ctx.backbone_name or type(ctx.backbone).__name__
    return Path(output) / ".runs" / safe_component(str(name)) / safe_component(ctx.task) / key


# ------------------------------------------------------------------------------------ data
class SeededSamples(Dataset):
    """Item ``(iteration, index)`` -> ``base[index]`` with torch/python/numpy RNGs seeded by
    ``(seed, iteration, index)`` during the random transform (caller's RNG states untouched)."""

    def __init__(self, base: Dataset, seed: int) -> None:
        self.base, self.seed = base, seed

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        iteration, index = key
        sample_seed = seed_from(self.seed, iteration, index)
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(sample_seed)
                random.seed(sample_seed)
                np.random.seed(sample_seed % 2**32)
                return self.base[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def train_config(section: dict[str, Any] | None) -> dict[str, Any]:
    """The ``train`` section with defaults filled in; unknown keys are refused with their name."""
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TRAIN_DEFAULTS.items()}
    for key, value in (section or {}).items():
        if key not in cfg:
            raise ConfigError(f"train.{key}: unknown key (known: {', '.join(sorted(cfg))})")
        cfg[key] = {**cfg[key], **value} if isinstance(cfg[key], dict) and isinstance(value, dict) else value
    for key in ("max_iters", "batch_size"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ConfigError(f"train.{key} must be a positive integer, got {cfg[key]!r}")
    schedule_at(cfg["scheduler"], 1.0, 0, cfg["max_iters"])  # validates the schedule type
    return cfg


# ------------------------------------------------------------------------------------ trainer
LossFn = Callable[[nn.Module, dict[str, Any], int], tuple[Tensor, dict[str, float]]]
EvalFn = Callable[[nn.Module], dict[str, float]]


class HeadTrainer:
    """Trains ``model`` (a :class:`DenseModel`-like module) on ``dataset`` with ``loss_fn``.

    ``loss_fn(model, batch, iteration) -> (loss, logs)``; ``evaluate(model) -> metrics`` runs every
    ``train.eval_every`` iterations and at the end (under a forked RNG, so it never shifts
    training). ``work_dir`` gets ``metrics.jsonl`` and ``checkpoints/``.
    """

    def __init__(self, model: nn.Module, dataset: Dataset, loss_fn: LossFn, cfg: dict[str, Any],
                 work_dir: str | Path, *, evaluate: EvalFn | None = None, device: str | torch.device = "cpu",
                 seed: int = 0, run_key: str = "", collate_fn: Callable | None = None) -> None:
        ddp.init_from_env()
        self.cfg = train_config(cfg)
        self.model, self.dataset, self.loss_fn, self.evaluate_fn = model, dataset, loss_fn, evaluate
        self.work_dir, self.device, self.seed, self.run_key = Path(work_dir), torch.device(device), seed, run_key
        self.collate_fn = collate_fn
        self.world, self.rank = ddp.world_size(), ddp.rank()
        if self.cfg["batch_size"] % self.world:
            raise ConfigError(f"train.batch_size={self.cfg['batch_size']} is not divisible by the "
                              f"{self.world} ranks; use a multiple of {self.world}")
        self.batch_per_rank = self.cfg["batch_size"] // self.world
        if len(dataset) < self.cfg["batch_size"]:  # type: ignore[arg-type]
            raise ConfigError(f"train.batch_size={self.cfg['batch_size']} is larger than the training split "
                              f"({len(dataset)} samples); lower train.batch_size")  # type: ignore[arg-type]
        self.model.to(self.device)
        self.train_model: nn.Module = self.model
        if self.world > 1:  # DDP; BatchNorm statistics synchronised across GPUs as in the official heads
            from torch.nn.parallel import DistributedDataParallel

            if self.device.type == "cuda":
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = torch.optim.AdamW(self._param_groups(),
                                           betas=tuple(self.cfg["optimizer"].get("betas", (0.9, 0.999))))
        self.checkpoints = CheckpointManager(self.work_dir / "checkpoints", int(self.cfg["max_to_keep"]),
                                             enabled=self.rank == 0)
        self.start_iter, self.resumed_from, self._stop = 0, None, False

    def _param_groups(self) -> list[dict[str, Any]]:
        """Official dense heads: one group, weight decay on every parameter. Fine-tuning adds the
        backbone with layer-wise lr decay (no decay on norms/biases), as in SSL training."""
        head = getattr(self.model, "head", self.model)
        groups = [{"params": [p for p in head.parameters() if p.requires_grad], "lr_multiplier": 1.0,
                   "wd_multiplier": 1.0}]
        backbone = getattr(self.model, "backbone", None)
        if backbone is not None and getattr(self.model, "finetune", False):
            decay = float(getattr(self.model, "layer_decay", 1.0))
            for group in param_groups({"backbone": backbone}, decay):
                groups.append({"params": group["params"], "lr_multiplier": group["lr_multiplier"],
                               "wd_multiplier": group["wd_multiplier"]})
        return groups

    # ----------------------------------------------------------------- state
    def state_dict(self, iteration: int) -> dict[str, Any]:
        """Everything needed to continue exactly after ``iteration`` completed."""
        trainable = {k: v for k, v in self.model.state_dict().items()
                     if not k.startswith("backbone.") or getattr(self.model, "finetune", False)}
        return {"iteration": iteration, "model": trainable, "optimizer": self.optimizer.state_dict(),
                "schedule": {"iteration": iteration + 1, "total": self.cfg["max_iters"]}, "rng": rng_state(),
                "run_key": self.run_key, "config": json.loads(json.dumps(self.cfg, default=str))}

    def resume(self) -> bool:
        """Continue from the newest checkpoint in ``work_dir`` (if any and ``train.resume``)."""
        if not self.cfg["resume"]:
            return False
        path = self.checkpoints.latest_path()
        if path is None:
            return False
        state = torch.load(path, map_location="cpu", weights_only=True)
        if self.run_key and state.get("run_key") not in ("", self.run_key):
            raise ConfigError(f"{self.work_dir}: holds a head-training run of another config (key "
                              f"{state.get('run_key')} != {self.run_key}); choose another train.work_dir or delete it")
        missing, unexpected = self.model.load_state_dict(state["model"], strict=False)
        bad = [k for k in missing if not k.startswith("backbone.") or getattr(self.model, "finetune", False)]
        if bad or unexpected:
            raise ConfigError(f"{path}: checkpoint does not fit the head (missing {bad[:3]}, unexpected "
                              f"{list(unexpected)[:3]}); delete {self.work_dir} to start over")
        self.optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        self.start_iter = self.resumed_from = state["iteration"] + 1
        logger.info("head training resumed after iteration %d from %s", state["iteration"], path)
        return True

    # ----------------------------------------------------------------- loop
    def _loader(self) -> DataLoader:
        n_samples = len(self.dataset)  # type: ignore[arg-type]
        sampler = ShardedIterationSampler(n_samples, self.batch_per_rank, self.world, self.rank, self.seed,
                                          start_iteration=self.start_iter)
        # own generator: creating the iterator must not draw from the global RNG (exact resume)
        return DataLoader(SeededSamples(self.dataset, self.seed), batch_sampler=sampler,
                          num_workers=int(self.cfg["num_workers"]), collate_fn=self.collate_fn,
                          generator=torch.Generator().manual_seed(self.seed), persistent_workers=False,
                          pin_memory=self.device.type == "cuda")

    def _apply_schedule(self, iteration: int) -> float:
        opt = self.cfg["optimizer"]
        values = schedule_at(self.cfg["scheduler"], float(opt["lr"]), iteration, self.cfg["max_iters"])
        for group in self.optimizer.param_groups:
            group["lr"] = values["lr"] * group["lr_multiplier"]
            group["weight_decay"] = float(opt.get("weight_decay", 0.0)) * group["wd_multiplier"]
            if "beta1" in values:
                group["betas"] = (values["beta1"], group["betas"][1])
        return values["lr"]

    def _log(self, record: dict[str, Any]) -> None:
        if self.rank == 0:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            with open(self.work_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def evaluate(self, iteration: int) -> dict[str, float]:
        """Run ``evaluate`` in eval mode under a forked RNG; logged to ``metrics.jsonl``."""
        if self.evaluate_fn is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []), torch.no_grad():
            metrics = {k: float(v) for k, v in self.evaluate_fn(self.model).items()}
        self.model.train(was_training)
        self._log({"iteration": iteration, "eval": metrics})
        return metrics

    def fit(self) -> dict[str, Any]:
        """Train from ``start_iter`` to ``train.max_iters``, evaluate; returns a summary."""
        total, every = self.cfg["max_iters"], int(self.cfg["checkpoint_every"] or 0)
        eval_every, log_every = int(self.cfg["eval_every"] or 0), max(int(self.cfg["log_every"] or 1), 1)
        clip = self.cfg["grad_clip"]
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        autocast = ddp.autocast(self.device, self.cfg["amp"])
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, self._on_sigterm) if in_main_thread else None
        t0 = time.perf_counter()
        quiet = self.rank != 0 or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
        bar = tqdm(range(self.start_iter, total), desc="train head", disable=quiet, unit="it")
        try:
            self.model.train()
            data = iter(self._loader()) if self.start_iter < total else None
            for iteration in bar:
                batch = ddp.to_device(next(data), self.device)  # type: ignore[arg-type]
                lr = self._apply_schedule(iteration)
                seed = seed_from(self.seed, iteration, self.rank, 1)
                torch.manual_seed(seed)  # model-side randomness of this iteration (dropout, drop-path)
                self.optimizer.zero_grad(set_to_none=True)
                with autocast:
                    loss, logs = self.loss_fn(self.train_model, batch, iteration)
                if ddp.any_rank(not bool(torch.isfinite(loss.detach()))):
                    raise TrainingDiverged(
                        f"iteration {iteration}: head-training loss is {float(loss.detach())} (on some rank); stopped, "
                        f"last good checkpoint kept: {self.checkpoints.latest_path() or 'none yet'} -- lower "
                        f"train.optimizer.lr")
                loss.backward()
                if clip:
                    logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, float(clip)))
                self.optimizer.step()
                if iteration % log_every == 0 or iteration + 1 == total:
                    self._log({"iteration": iteration, "loss": float(loss.detach()), "lr": lr, **logs})
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
                stop = ddp.any_rank(self._stop)
                if (every and (iteration + 1) % every == 0) or iteration + 1 == total or stop:
                    self.checkpoints.save(self.state_dict(iteration), iteration)
                if stop:
                    raise TrainingInterrupted(
                        f"SIGTERM: head training stopped after iteration {iteration}, checkpoint saved in "
                        f"{self.work_dir}; run the same command to resume")
                if eval_every and (iteration + 1) % eval_every == 0 and iteration + 1 < total:
                    self.evaluate(iteration + 1)
        finally:
            bar.close()
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        train_s = time.perf_counter() - t0
        metrics = self.evaluate(total)
        return {"metrics": metrics, "work_dir": str(self.work_dir), "resumed_from": self.resumed_from,
                "iterations": total, "train_s": round(train_s, 3)}

    def _on_sigterm(self, *_: Any) -> None:
        self._stop = True

    def head_state(self) -> dict[str, Tensor]:
        """The trained head's weights (for tests and export)."""
        return {k: v.detach().clone() for k, v in getattr(self.model, "head", self.model).state_dict().items()}


def train_head(ctx: Any, model: nn.Module, dataset: Dataset, loss_fn: LossFn,
               evaluate: EvalFn | None) -> dict[str, Any]:
    """Train ``model``'s head on ``dataset`` with ``ctx.cfg["train"]`` in the run folder of ``ctx``
    (resuming a checkpoint of the same run key), evaluate; the summary of :meth:`HeadTrainer.fit`."""
    key = run_key(ctx)
    trainer = HeadTrainer(model, dataset, loss_fn, ctx.cfg.get("train", {}), work_dir_for(ctx, key),
                          evaluate=evaluate, device=ctx.device, seed=ctx.seed, run_key=key)
    trainer.resume()
    summary = trainer.fit()
    ctx.timings["train_head_s"] = summary["train_s"]
    return summary
