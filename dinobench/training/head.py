"""Head training on the shared loop: a dense (or any) head on top of a frozen or fine-tuned backbone.

:func:`train_head` is what a protocol calls: it trains ``model`` with the task's ``train`` section in
the run folder of its run key (resuming a checkpoint of the same key), then evaluates. Parameter groups
come from the model when it has ``param_groups()`` (a list of torch group dicts, optionally with
``lr_multiplier``/``wd_multiplier``; its ``after_step()``, if any, runs after every optimizer step, e.g. a
clamp); otherwise, as the official dense heads: the head's parameters in
one group with weight decay on all of them, plus - when ``model.finetune`` - the backbone with
layer-wise lr decay ``model.layer_decay`` (no decay on norms and biases). The optimizer is
``train.optimizer.type`` (:mod:`dinobench.training.optim`), the schedule ``train.scheduler.type``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from dinobench.errors import ConfigError
from dinobench.utils import distributed as ddp
from dinobench.training.config import RUNTIME_TRAIN_KEYS, TrainConfig, train_config
from dinobench.training.loop import EvalFn, Recipe, TrainingLoop
from dinobench.training.optim import apply_lr, build_optimizer, param_groups
from dinobench.training.sampler import SeededSamples
from dinobench.training.schedules import schedule_at
from dinobench.utils.hashing import payload_sha256
from dinobench.utils.io import safe_component
from dinobench.utils.paths import output_root

LossFn = Callable[[nn.Module, Any, int], tuple[Tensor, dict[str, float]]]
#: always evaluation-only: the eval transform and the task's description
GENERIC_EVAL_ONLY_KEYS = ("transform.eval", "task.description")
#: evaluation-only keys of the dense protocols, for contexts that do not say (``ctx.eval_only_keys``)
LEGACY_EVAL_ONLY_KEYS = ("protocol.inference", "protocol.num_visualizations")


def _finetuned(model: nn.Module) -> bool:
    return bool(getattr(model, "finetune", False))


def frozen_prefixes(model: nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of the frozen backbone - ``model.frozen_backbone`` if the model names it (a model
    whose ``backbone`` wraps it with trainable parts), else ``model.backbone`` - wherever it is registered
    (``backbone.``, or e.g. ``segmentation_model.0.backbone.``): not part of a head checkpoint."""
    backbone = getattr(model, "frozen_backbone", None)
    if backbone is None:
        backbone = getattr(model, "backbone", None)
    if backbone is None or _finetuned(model):
        return ()
    return tuple(f"{name}." for name, module in model.named_modules(remove_duplicate=False)
                 if module is backbone and name)


class HeadRecipe(Recipe):
    """``loss_fn(model, batch, iteration) -> (loss, logs)`` on ``dataset`` with the resolved ``train`` section
    ``cfg`` (:func:`~dinobench.training.config.train_config`)."""

    name = "head training"
    desc = "train head"
    divergence_hint = "lower train.optimizer.lr"
    run_key_fix = "choose another train.work_dir or delete it"

    def __init__(self, model: nn.Module, dataset: Dataset, loss_fn: LossFn, cfg: TrainConfig, *,
                 device: torch.device, seed: int, run_key: str = "", collate_fn: Callable | None = None) -> None:
        self.train, self.loss_fn, self.run_key, self.collate_fn = cfg, loss_fn, run_key, collate_fn
        self.config = cfg.as_dict()
        world = ddp.world_size()
        if cfg.batch_size % world:
            raise ConfigError(f"train.batch_size={cfg.batch_size} is not divisible by the {world} ranks; "
                              f"use a multiple of {world}")
        if len(dataset) < cfg.batch_size:  # type: ignore[arg-type]
            raise ConfigError(f"train.batch_size={cfg.batch_size} is larger than the training split "
                              f"({len(dataset)} samples); lower train.batch_size")  # type: ignore[arg-type]
        self.batch_per_rank = cfg.batch_size // world
        self.dataset = SeededSamples(dataset, seed)
        self.model = model.to(device)
        self.train_model: nn.Module = self.model
        if world > 1 and cfg.parallel == "fsdp":  # FSDP2: the model's units, then the root
            ddp.shard_model(self.model, device)
        elif world > 1:  # DDP; BatchNorm statistics synchronised across GPUs as in the official heads
            if device.type == "cuda":
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.optimizer = build_optimizer(self.param_groups(), cfg.optimizer)

    def param_groups(self) -> list[dict[str, Any]]:
        """The model's own groups (``model.param_groups()``), else the official dense-head groups over
        ``model.trainable_modules()`` (default: ``head``, and ``backbone`` when fine-tuned)."""
        if callable(getattr(self.model, "param_groups", None)):
            return [dict(group) for group in self.model.param_groups()]
        if callable(getattr(self.model, "trainable_modules", None)):
            modules = dict(self.model.trainable_modules())
        else:
            modules = {"head": getattr(self.model, "head", self.model)}
            if getattr(self.model, "backbone", None) is not None and _finetuned(self.model):
                modules["backbone"] = self.model.backbone
        backbone = modules.pop("backbone", None)
        seen: set[int] = set()
        params = [p for m in modules.values() for p in m.parameters()
                  if p.requires_grad and not (id(p) in seen or seen.add(id(p)))]
        groups = [{"params": params, "lr_multiplier": 1.0, "wd_multiplier": 1.0}]
        if backbone is not None:
            decay = float(getattr(self.model, "layer_decay", 1.0))
            for group in param_groups({"backbone": backbone}, decay):
                groups.append({"params": group["params"], "lr_multiplier": group["lr_multiplier"],
                               "wd_multiplier": group["wd_multiplier"]})
        return groups

    def after_step(self, iteration: int) -> None:
        """The model's own ``after_step()`` when it has one (e.g. dino.txt's logit-scale clamp)."""
        hook = getattr(self.model, "after_step", None)
        if callable(hook):
            hook()

    def apply_schedule(self, iteration: int) -> dict[str, float]:
        opt = self.train.optimizer
        values = schedule_at(self.train.scheduler, float(opt["lr"]), iteration, self.train.max_iters)
        apply_lr(self.optimizer.param_groups, values["lr"], float(opt["weight_decay"]), values.get("beta1"))
        return {"lr": values["lr"]}

    def step(self, batch: Any, iteration: int) -> tuple[Tensor, dict[str, float]]:
        return self.loss_fn(self.train_model, batch, iteration)

    def model_state(self) -> dict[str, Any]:
        """The trainable part: the head (and the backbone when fine-tuned); gathered in full when sharded
        (collective; the values are on rank 0)."""
        frozen = frozen_prefixes(self.model)
        return {k: v for k, v in ddp.full_state_dict(self.model).items() if not (frozen and k.startswith(frozen))}

    def load_model_state(self, state: dict[str, Any], path: Path) -> None:
        if ddp.is_sharded(self.model):  # every rank loads the full state; the frozen part stays as it is
            current = ddp.full_state_dict(self.model, all_ranks=True)
            unknown = sorted(set(state) - set(current))
            if unknown:
                raise ConfigError(f"{path}: checkpoint does not fit the head (unexpected {unknown[:3]}); delete "
                                  f"{path.parent.parent} to start over")
            ddp.load_full_state_dict(self.model, {**current, **state})
            return
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        frozen = frozen_prefixes(self.model)
        bad = [k for k in missing if not (frozen and k.startswith(frozen))]
        if bad or unexpected:
            raise ConfigError(f"{path}: checkpoint does not fit the head (missing {bad[:3]}, unexpected "
                              f"{list(unexpected)[:3]}); delete {path.parent.parent} to start over")

    def optimizer_state(self) -> dict[str, Any]:  # noqa: D102 - gathered in full when sharded
        return ddp.optimizer_state_dict(self.model, self.optimizer)

    def load_optimizer_state(self, state: dict[str, Any]) -> None:  # noqa: D102
        ddp.load_optimizer_state_dict(self.model, self.optimizer, state)


def head_training_loop(model: nn.Module, dataset: Dataset, loss_fn: LossFn, train: TrainConfig | dict[str, Any] | None,
                       work_dir: str | Path, *, evaluate: EvalFn | None = None, device: str | torch.device = "cpu",
                       seed: int = 0, run_key: str = "", collate_fn: Callable | None = None,
                       eval_key: str = "") -> TrainingLoop:
    """The :class:`TrainingLoop` that trains ``model`` (a :class:`~dinobench.dense_inference.DenseModel`-like
    module) on ``dataset`` with the ``train`` section (resolved by :func:`train_config` when a dict).

    ``loss_fn(model, batch, iteration) -> (loss, logs)``; ``evaluate(model) -> metrics`` runs every
    ``train.eval_every`` iterations and at the end (under a forked RNG, so it never shifts training), every
    evaluation kept in the checkpoints under ``eval_key`` (:class:`~dinobench.training.evaluations.EvaluationHistory`);
    ``work_dir`` gets ``metrics.jsonl`` and ``checkpoints/``. Call ``resume()`` then ``fit()`` (inside
    ``exclusive()`` when another process may train into the same folder).
    """
    ddp.init_from_env()
    cfg = train if isinstance(train, TrainConfig) else train_config(train)
    device = torch.device(device)
    recipe = HeadRecipe(model, dataset, loss_fn, cfg, device=device, seed=seed, run_key=run_key,
                        collate_fn=collate_fn)
    return TrainingLoop(recipe, cfg.loop_settings(), work_dir, device=device, seed=seed, evaluate=evaluate,
                        eval_key=eval_key)


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


def _drop(cfg: dict[str, Any], dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node: Any = cfg
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)


def run_key(ctx: Any) -> str:
    """What makes a head-training run resumable into another: the resolved config without runtime- and
    evaluation-only keys (:data:`RUNTIME_TRAIN_KEYS`, ``ctx.eval_only_keys``), the backbone (name,
    overrides, weights), the training data and seed. Not the number of ranks: the data stream and the
    global batch do not depend on it."""
    cfg = json.loads(json.dumps(ctx.cfg, default=str))
    eval_only = getattr(ctx, "eval_only_keys", None)
    ignored = (*RUNTIME_TRAIN_KEYS, *GENERIC_EVAL_ONLY_KEYS, *(LEGACY_EVAL_ONLY_KEYS if eval_only is None else eval_only))
    for dotted in ignored:
        _drop(cfg, dotted)
    identity = {"backbone": ctx.backbone_name, "overrides": ctx.cfg.get("backbone", {}),
                "weights": ctx.weights_sha256, "seed": ctx.seed,
                "train_data": getattr(ctx.datasets.get("train"), "fingerprint", "")}
    if ctx.backbone_name is None:  # a context built outside the runner does not say which backbone: look at it
        identity["params"] = backbone_fingerprint(ctx.backbone)
    return payload_sha256({"config": cfg, "identity": identity}, 16)


def check_resumed_evaluations(loop: TrainingLoop) -> None:
    """A ConfigError when the checkpoint ``loop`` resumed from lacks periodic evaluations on the
    ``train.eval_every`` grid before its iteration: the best of them could not be reported."""
    every = int(loop.settings.eval_every or 0)
    missing = loop.history.missing(every, min(loop.start_iter, int(loop.settings.max_iters)) - 1)
    if missing:
        why = ("made with another evaluation config" if loop.history.dropped else
               "not in its checkpoint (another train.eval_every, or an older dinobench)")
        shown = ", ".join(map(str, missing[:4])) + (", ..." if len(missing) > 4 else "")
        raise ConfigError(f"{loop.work_dir}: the periodic evaluations at iterations {shown} of this training run are "
                          f"{why}, so the best one cannot be reported; set protocol.report=final, or train again in "
                          "another train.work_dir (or delete this folder)")


def work_dir_for(ctx: Any, key: str) -> Path:
    """``train.work_dir`` if set, else ``<output>/.runs/<backbone>/<task>/<key>`` (``<output>``:
    ``ctx.output_dir``, ``$DINOBENCH_OUTPUT`` or ``outputs``)."""
    chosen = ctx.cfg.get("train", {}).get("work_dir")
    if chosen:
        return Path(chosen).expanduser()
    name = ctx.backbone_name or type(ctx.backbone).__name__
    return output_root(ctx.output_dir) / ".runs" / safe_component(str(name)) / safe_component(ctx.task) / key


def train_head(ctx: Any, model: nn.Module, dataset: Dataset, loss_fn: LossFn, evaluate: EvalFn | None, *,
               collate_fn: Callable | None = None, eval_key: str = "",
               require_evaluations: bool = False) -> dict[str, Any]:
    """Train ``model`` on ``dataset`` with ``ctx.cfg["train"]`` in the run folder of ``ctx`` (resuming a
    checkpoint of the same run key), evaluate; the summary of :meth:`TrainingLoop.fit` (``metrics``,
    ``work_dir``, ``resumed_from``, ``iterations``, ``train_s``, ``evaluations``). ``require_evaluations``: the
    caller reports the best periodic evaluation, so a resumed checkpoint must hold every earlier one (else a
    ConfigError before any training)."""
    key = run_key(ctx)
    loop = head_training_loop(model, dataset, loss_fn, ctx.cfg.get("train", {}), work_dir_for(ctx, key),
                              evaluate=evaluate, device=ctx.device, seed=ctx.seed, run_key=key, collate_fn=collate_fn,
                              eval_key=eval_key)
    with loop.exclusive():
        if loop.resume() and require_evaluations:
            check_resumed_evaluations(loop)
        summary = loop.fit()
    ctx.timings["train_head_s"] = summary["train_s"]
    return summary
