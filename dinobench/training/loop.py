"""The one training loop (head training, SSL pretraining): iteration-based, exactly resumable.

Why not mmengine's ``Runner``: on resume it re-seeds instead of restoring RNG states and skips the
consumed data by loading and augmenting every batch again, so a resumed run is not bit-identical.

What is trained, and how, is a :class:`Recipe` (the model(s), parameter groups and optimizer, the
per-iteration schedule, ``step(batch, iteration) -> (loss, logs)``, an after-step hook, checkpoint
extras, the dataset and its ``collate_fn``); :class:`TrainingLoop` does the rest the same way for every
recipe: the data stream (a pure function of ``(seed, iteration)``, :mod:`dinobench.training.sampler`),
the model-side RNG (seeded by ``(seed, t, rank)`` at iteration ``t``, or one continuous stream: ``Recipe.model_rng``),
autocast, gradient clipping,
atomic checkpoints (model, optimizer, schedule position, iteration, RNG states: a killed run resumed
from its last checkpoint ends bit-identical), SIGTERM -> checkpoint + :class:`TrainingInterrupted`
(exit 143), a non-finite loss on any rank -> :class:`TrainingDiverged`, periodic evaluation under a
forked RNG (every evaluation kept in the checkpoints: :mod:`dinobench.training.evaluations`),
``metrics.jsonl`` and a tqdm bar on rank 0 (``TQDM_DISABLE=1`` silences it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from dinobench.errors import ConfigError, DinobenchError, WeightsError
from dinobench.utils import distributed as ddp
from dinobench.training.checkpoint import CheckpointManager, read_training_checkpoint, rng_state, set_rng_state
from dinobench.training.evaluations import EvaluationHistory
from dinobench.training.sampler import iteration_loader
from dinobench.utils.io import exclusive_lock
from dinobench.utils.seeding import seed_from

logger = logging.getLogger("dinobench")
EvalFn = Callable[[nn.Module], dict[str, float]]


class TrainingInterrupted(DinobenchError):
    """SIGTERM during training: a checkpoint was saved; the same command resumes."""

    exit_code = 143


class TrainingDiverged(DinobenchError):
    """A non-finite loss: training stops, the last good checkpoint is kept."""


class Recipe:
    """What a :class:`TrainingLoop` trains; subclasses set the attributes in ``__init__``.

    ``model`` is what is put in train/eval mode, checkpointed and evaluated; ``optimizer`` holds groups
    with ``lr_multiplier``/``wd_multiplier``; ``dataset`` yields items keyed ``(iteration, index)``.
    """

    name = "training"  # in messages: "<name> resumed after ...", "<name> loss is nan"
    desc = "train"  # progress bar
    divergence_hint = "lower the learning rate"
    model: nn.Module
    optimizer: torch.optim.Optimizer
    dataset: Dataset
    collate_fn: Callable | None = None
    batch_per_rank: int = 1
    config: dict[str, Any] | None = None  # stored in checkpoints (for humans)
    #: how the model-side RNG (dropout, drop-path, RoPE augmentation) is seeded: "per_rank" = by
    #: (seed, t, rank) at every iteration t (head training: a rank's stream does not depend on the others);
    #: "continuous" = one stream from the recipe's initial seed, the same on every rank, as the official SSL
    #: loop has it (draws that must agree across ranks, e.g. DINOv3's per-batch RoPE rescaling). Both resume
    #: exactly: the RNG states are checkpointed.
    model_rng: str = "per_rank"

    def loader(self, start_iteration: int, *, world: int, rank: int, seed: int, num_workers: int,
               pin_memory: bool) -> Any:
        """The infinite data stream from ``start_iteration`` on (this rank's share of each batch); a pure
        function of ``(seed, iteration)``. Default: ``dataset`` through the seeded iteration sampler."""
        return iteration_loader(self.dataset, self.batch_per_rank, world_size=world, rank=rank, seed=seed,
                                start_iteration=start_iteration, num_workers=num_workers,
                                collate_fn=self.collate_fn, pin_memory=pin_memory)

    def apply_schedule(self, iteration: int) -> dict[str, float]:
        """Set this iteration's lr etc. on the optimizer; returns the values to log."""
        return {}

    def step(self, batch: Any, iteration: int) -> tuple[Tensor, dict[str, float]]:
        """Forward (under autocast) -> (loss, logs). A loss that requires grad is back-propagated by the
        loop; a recipe that runs its own backward returns a detached loss."""
        raise NotImplementedError

    def after_step(self, iteration: int) -> None:
        """Called after ``optimizer.step()`` (SSL: EMA update, Gram-teacher refresh)."""

    def clip_parameters(self) -> list[nn.Parameter]:
        """The parameters whose gradient norm is clipped (default: the optimizer's)."""
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def model_state(self) -> dict[str, Any]:
        """The model part of a checkpoint (collective for sharded models)."""
        return self.model.state_dict()

    def load_model_state(self, state: dict[str, Any], path: Path) -> None:
        """Inverse of :meth:`model_state`."""
        self.model.load_state_dict(state)

    def optimizer_state(self) -> dict[str, Any]:
        """The optimizer part of a checkpoint (collective for sharded models)."""
        return self.optimizer.state_dict()

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`optimizer_state`."""
        self.optimizer.load_state_dict(state)

    #: what ties a checkpoint to its run ("" ties nothing), and the way out when a folder holds another run's
    run_key: str = ""
    run_key_fix: str = "choose another output folder or delete it"

    def state_extras(self) -> dict[str, Any]:
        """More checkpoint entries (counters, a run key); ``weights_only``-loadable values. Default: the run key."""
        return {"run_key": self.run_key}

    def load_state_extras(self, state: dict[str, Any], path: Path) -> None:
        """Check that ``state`` (a whole checkpoint) belongs to this run and restore the extras; called
        before the model and optimizer states are loaded. Default: a checkpoint of another run key is refused."""
        if self.run_key and state.get("run_key") not in ("", self.run_key):
            raise ConfigError(f"{path.parent.parent}: holds a {self.name.replace(' ', '-')} run of another config "
                              f"(key {state.get('run_key')} != {self.run_key}); {self.run_key_fix}")


@dataclass
class LoopSettings:
    """How the loop runs; only ``max_iters``, ``grad_clip`` and ``amp`` can change the result."""

    max_iters: int
    grad_clip: float | None = None
    amp: str | None = None  # autocast dtype on GPU ("bf16", "fp16")
    checkpoint_every: int = 0  # 0: at the end (and on SIGTERM) only
    max_to_keep: int = 1
    eval_every: int = 0  # 0: at the end only
    log_every: int = 1
    num_workers: int = 0
    resume: bool = True


class TrainingLoop:
    """Runs a :class:`Recipe` for ``settings.max_iters`` iterations in ``work_dir`` (``metrics.jsonl``,
    ``checkpoints/``); ``evaluate(model) -> metrics`` runs every ``eval_every`` iterations and at the end.
    Every evaluation goes into :attr:`history` (checkpointed under ``eval_key``: what the evaluation depends on
    beyond the run key; a resumed run of another key drops the stored evaluations)."""

    def __init__(self, recipe: Recipe, settings: LoopSettings, work_dir: str | Path, *,
                 device: str | torch.device = "cpu", seed: int = 0, evaluate: EvalFn | None = None,
                 eval_key: str = "") -> None:
        self.recipe, self.settings, self.work_dir = recipe, settings, Path(work_dir)
        self.device, self.seed, self.evaluate_fn = torch.device(device), int(seed), evaluate
        self.history = EvaluationHistory(eval_key)
        self.world, self.rank = ddp.world_size(), ddp.rank()
        self.checkpoints = CheckpointManager(self.work_dir / "checkpoints", int(settings.max_to_keep),
                                             enabled=self.rank == 0)
        self.start_iter, self.resumed_from, self.last_log = 0, None, {}
        self._stop = False

    # ----------------------------------------------------------------- state
    def state_dict(self, iteration: int) -> dict[str, Any]:
        """Everything needed to continue exactly after ``iteration`` completed (collective when sharded)."""
        return {"iteration": iteration, "model": self.recipe.model_state(), "optimizer": self.recipe.optimizer_state(),
                "schedule": {"iteration": iteration + 1, "total": self.settings.max_iters}, "rng": rng_state(),
                "evaluations": self.history.state(), **self.recipe.state_extras(),
                "config": json.loads(json.dumps(self.recipe.config, default=str))}

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Own ``work_dir`` for the ``with`` block (resume + fit): rank 0 holds a ``flock`` on ``<work_dir>/.lock``,
        so a second process training into the same folder waits, then resumes from the first one's last
        checkpoint instead of racing it for the same checkpoint files."""
        held = (exclusive_lock(self.work_dir, "training in", "training folder", "choose another output folder")
                if self.rank == 0 else contextlib.nullcontext())
        with held:
            ddp.any_rank(False)  # the other ranks wait for rank 0's lock before reading a checkpoint
            yield

    def resume(self) -> bool:
        """Continue from the newest checkpoint in ``work_dir`` (if any and ``settings.resume``)."""
        if not self.settings.resume:
            return False
        path = self.checkpoints.latest_path()
        if path is None:
            return False
        state = read_training_checkpoint(path)
        try:
            self.recipe.load_state_extras(state, path)
            self.recipe.load_model_state(state["model"], path)
            self.recipe.load_optimizer_state(state["optimizer"])
            set_rng_state(state["rng"])
            iteration = int(state["iteration"])
            self.history.load(state.get("evaluations"), path)
        except DinobenchError:
            raise
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:  # another model, or damaged
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
            detail = " ".join(lines[:2])[:240]  # load_state_dict: a title line, then the first missing keys
            raise WeightsError(f"{path}: this checkpoint does not fit the run being resumed ({type(exc).__name__}: "
                               f"{detail}); choose another output folder, or delete {self.work_dir} to start "
                               "over") from exc
        self.start_iter = self.resumed_from = iteration + 1
        logger.info("%s resumed after iteration %d from %s", self.recipe.name, iteration, path)
        return True

    # ----------------------------------------------------------------- loop
    def loader(self) -> Any:
        """The recipe's infinite data stream from ``start_iter`` on (this rank's share of each batch)."""
        return self.recipe.loader(self.start_iter, world=self.world, rank=self.rank, seed=self.seed,
                                  num_workers=int(self.settings.num_workers or 0),
                                  pin_memory=self.device.type == "cuda")

    def log(self, record: dict[str, Any]) -> None:
        """Append one JSON line to ``metrics.jsonl`` (rank 0)."""
        if self.rank == 0:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            with open(self.work_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def evaluate(self, iteration: int) -> dict[str, float]:
        """Run ``evaluate`` (on every rank: it may shard) in eval mode under a forked RNG; logged and kept in
        :attr:`history`."""
        if self.evaluate_fn is None:
            return {}
        model = self.recipe.model
        was_training = model.training
        model.eval()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []), torch.no_grad():
            metrics = {k: float(v) for k, v in self.evaluate_fn(model).items()}
        model.train(was_training)
        self.history.add(iteration, metrics)
        self.log({"iteration": iteration, "eval": metrics})
        return metrics

    def _diverged(self, iteration: int, value: float, logs: dict[str, Any]) -> TrainingDiverged:
        terms = ", ".join(f"{k}={v:.4g}" for k, v in logs.items() if isinstance(v, (int, float)))
        return TrainingDiverged(
            f"iteration {iteration}: {self.recipe.name} loss is {value}" + (f" ({terms})" if terms else " (on some rank)")
            + f"; stopped, last good checkpoint kept: {self.checkpoints.latest_path() or 'none yet'} -- "
            f"{self.recipe.divergence_hint}")

    def _train_one(self, iteration: int, batch: Any, autocast: Any) -> tuple[float, dict[str, Any]]:
        recipe = self.recipe
        values = recipe.apply_schedule(iteration)
        if recipe.model_rng == "per_rank":
            torch.manual_seed(seed_from(self.seed, iteration, self.rank, 1))  # model-side randomness of iteration t
        recipe.optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss, logs = recipe.step(batch, iteration)
        value = float(loss.detach())
        if ddp.any_rank(not math.isfinite(value)):
            raise self._diverged(iteration, value, logs)
        if loss.requires_grad:
            loss.backward()
        logs = dict(logs)
        if self.settings.grad_clip:
            logs["grad_norm"] = ddp.clip_grad_norm(recipe.clip_parameters(), float(self.settings.grad_clip))
        recipe.optimizer.step()
        recipe.after_step(iteration)
        return value, {**values, **logs}

    def fit(self) -> dict[str, Any]:
        """Train from ``start_iter`` to ``max_iters``, evaluate; ``{"metrics", "work_dir", "resumed_from",
        "iterations", "train_s", "last", "evaluations"}`` (``metrics``: the final evaluation's; ``evaluations``:
        every evaluation of the run, resumed ones included, as ``{"iteration", "metrics"}``, by iteration)."""
        s = self.settings
        total, every = int(s.max_iters), int(s.checkpoint_every or 0)
        eval_every, log_every = int(s.eval_every or 0), max(int(s.log_every or 1), 1)
        autocast = ddp.autocast(self.device, s.amp)
        images = self.recipe.batch_per_rank * self.world
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, self._on_sigterm) if in_main_thread else None
        t0 = time.perf_counter()
        quiet = self.rank != 0 or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
        bar = tqdm(range(self.start_iter, total), desc=self.recipe.desc, disable=quiet, unit="it")
        threads = torch.get_num_threads()
        workers = int(s.num_workers or 0)
        if self.device.type == "cpu" and workers > 0:  # data workers get their own cores (else they fight compute)
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            torch.set_num_threads(max(1, min(threads, cores - workers)))
        try:
            self.recipe.model.train()
            start = self.start_iter  # a checkpoint written on SIGTERM at an evaluation point lacks that evaluation
            if eval_every and 0 < start < total and start % eval_every == 0 and start not in self.history:
                self.evaluate(start)
            data = iter(self.loader()) if self.start_iter < total else None
            for iteration in bar:
                tic = time.perf_counter()
                batch = ddp.to_device(next(data), self.device)  # type: ignore[arg-type]
                value, logs = self._train_one(iteration, batch, autocast)
                if iteration % log_every == 0 or iteration + 1 == total:
                    self.last_log = {"iteration": iteration, "loss": value, **logs,
                                     "images_per_s": images / max(time.perf_counter() - tic, 1e-9)}
                    self.log(self.last_log)
                    bar.set_postfix(loss=f"{value:.4f}")
                stop = ddp.any_rank(self._stop)
                # evaluated before the checkpoint of the same iteration, which then holds the evaluation
                if eval_every and (iteration + 1) % eval_every == 0 and iteration + 1 < total and not stop:
                    self.evaluate(iteration + 1)
                if (every and (iteration + 1) % every == 0) or iteration + 1 == total or stop:
                    self.checkpoints.save(self.state_dict(iteration), iteration)
                if stop:
                    raise TrainingInterrupted(
                        f"SIGTERM: {self.recipe.name} stopped after iteration {iteration}, checkpoint saved in "
                        f"{self.work_dir}; run the same command to resume")
        finally:
            bar.close()
            torch.set_num_threads(threads)
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        train_s = time.perf_counter() - t0
        metrics = self.evaluate(total)
        return {"metrics": metrics, "work_dir": str(self.work_dir), "resumed_from": self.resumed_from,
                "iterations": total, "train_s": round(train_s, 3), "last": self.last_log,
                "evaluations": [e.as_dict() for e in self.history.items()]}

    def _on_sigterm(self, *_: Any) -> None:
        self._stop = True
