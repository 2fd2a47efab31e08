"""The trained-head template: data -> joint transform -> backbone / neck / head -> the one engine -> sharded metric
-> figures -> the head in its official layout.

Every first-party trained-head family (segmentation, depth, canopy height, ...) is this skeleton with
different transforms, heads, losses and metrics. A family subclasses :class:`TrainedHeadProtocol` (its ``Config``
subclassing :class:`TrainedHeadConfig`) and fills in

- :meth:`~TrainedHeadProtocol.transforms` — joint image+target train/eval transforms of the task config,
- :meth:`~TrainedHeadProtocol.make_head` — the head over the neck's output levels (``channels``),
- :meth:`~TrainedHeadProtocol.loss` — ``(loss, logs)`` of a training batch,
- :meth:`~TrainedHeadProtocol.new_metric` / :meth:`~TrainedHeadProtocol.update_metric` — the evaluation metric
  (mergeable over ranks, :class:`dinobench.metrics.sharded.MergeableMetric`),
- optionally :meth:`~TrainedHeadProtocol.make_neck`, :meth:`~TrainedHeadProtocol.build_model` (the one model hook),
  :meth:`~TrainedHeadProtocol.collate`, :meth:`~TrainedHeadProtocol.tables`, :meth:`~TrainedHeadProtocol.draw`
  (figures) and :meth:`~TrainedHeadProtocol.trained_head` (the head in a registered export layout).

**What the engine reads from the model** (the duck contract, :mod:`dinobench.training.head`): ``frozen_backbone``
(the module left out of the optimizer and of checkpoints), ``trainable_modules()`` (name -> module with trainable
parameters) and optionally ``param_groups()`` (layer-wise learning-rate decay); ``BackboneNeckHead`` has all three.
Training runs on :func:`dinobench.training.train_head` (exact resume, SIGTERM, NaN stop, DDP); evaluation is
sharded over ranks (each rank evaluates its share, the metric states are merged).

**Which evaluation is reported**: a family whose ``Config`` has ``report`` (``"best"`` or ``"final"``) reports
the best of the evaluations made every ``train.eval_every`` iterations and at the end (the official linear
segmentation script does: ``train.eval_every`` then enters the protocol hash) or the final head's. Its record holds
both (``<metric>_best``, ``<metric>_final``, ``best_iteration``, table ``evaluations``); the unsuffixed metrics are
the reported ones. The evaluations during training are the final one's (same split, same inference, same code),
kept in the checkpoints, so they survive a kill and resume (:mod:`dinobench.training.evaluations`). Without
``report`` the final head's metrics are reported, as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import torch
from PIL import Image
from torch import Tensor, nn

from dinobench.context import RunContext
from dinobench.errors import ConfigError
from dinobench.heads.model import BackboneNeckHead
from dinobench.heads.necks import IntermediateLayers, Neck
from dinobench.heads.weights import load_head_state, read_head_state
from dinobench.protocol import Protocol, ProtocolResult, TrainedHead
from dinobench.training import evaluate_sharded, train_head
from dinobench.training.evaluations import Evaluation, best_evaluation, evaluation_grid
from dinobench.training.head import frozen_prefixes
from dinobench.utils.hashing import payload_sha256
from dinobench.utils.io import safe_component
from dinobench.utils.seeding import seed_from
from dinobench.visualize import denormalize_image, side_by_side


def transform_sections(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``transform.train`` and ``transform.eval`` of a trained-head task config (both required): the joint
    transforms of training and evaluation."""
    transform = cfg.get("transform") or {}
    missing = [k for k in ("train", "eval") if not isinstance(transform.get(k), dict)]
    if missing:
        raise ConfigError(f"a trained-head task config needs transform=dict(train=dict(...), eval=dict(...)); "
                          f"missing transform.{missing[0]}")
    return transform


@dataclass
class TrainedHeadConfig:
    """What every trained-head protocol's ``protocol`` section has (its ``Config`` adds the family's keys; a
    family reporting the best periodic evaluation adds ``report: Literal["best", "final"]``, see the module
    docstring)."""

    head_weights: str | None = None  # evaluate this head (its official layout) instead of training one
    num_visualizations: int = 4  # predictions drawn by --save-predictions


class TrainedHeadProtocol(Protocol):
    """data -> joint transform -> backbone / neck / head -> the engine -> sharded metric (see the module docstring).
    Its ``Config`` subclasses :class:`TrainedHeadConfig` (``head_weights``, ``num_visualizations``)."""

    Config: ClassVar[type] = TrainedHeadConfig
    runtime_keys = ("num_visualizations",)
    trains = True  # the head, with the engine (the task's train section)
    main_metric: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    #: key prefixes an official checkpoint may put around the head's own keys (stripped when all keys have one)
    head_file_prefixes: ClassVar[tuple[str, ...]] = ()

    # ----------------------------------------------------------------- what a family fills in
    def transforms(self, ctx: RunContext) -> tuple[Any, Any]:  # pragma: no cover - abstract
        """(train transform, eval transform) of ``ctx``'s task config, normalised for ``ctx.backbone``."""
        raise NotImplementedError

    def make_head(self, channels: list[int], train_set: Any) -> nn.Module:  # pragma: no cover - abstract
        """The head over neck levels of ``channels`` channels."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: dict[str, Any], iteration: int) -> tuple[Tensor, dict[str, float]]:
        """``(loss, logs)`` of one training batch (``model`` may be DDP-wrapped)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def new_metric(self, dataset: Any) -> Any:  # pragma: no cover - abstract
        """A fresh metric (``update``/``compute``, mergeable across ranks) for ``dataset``."""
        raise NotImplementedError

    def update_metric(self, model: nn.Module, sample: dict[str, Any], metric: Any, device: str) -> None:
        """Predict one evaluation sample (a batch of one) and add it to ``metric``."""
        raise NotImplementedError  # pragma: no cover - abstract

    def collate(self) -> Callable[[list[Any]], Any] | None:
        """How samples become training / evaluation batches (None: torch's default collation)."""
        return None

    def load_head_weights(self, model: nn.Module, optional_prefixes: Sequence[str] = ()) -> None:
        """Load ``protocol.head_weights`` (when set) into ``model`` strictly, except under ``optional_prefixes``
        (the frozen backbone, which a head checkpoint does not carry); keys may carry one of the family's
        :attr:`head_file_prefixes`."""
        path = getattr(self.config, "head_weights", None)
        if path:
            load_head_state(model, read_head_state(path, self.head_file_prefixes), path,
                            optional_prefixes=tuple(optional_prefixes))

    def make_neck(self, backbone: nn.Module) -> Neck:
        """The neck (default: the intermediate layers of ``config.head.layers`` with the backbone norm when
        ``config.head.use_backbone_norm``; without a ``head`` section the last layer, normed)."""
        head = getattr(self.config, "head", None)
        return IntermediateLayers(backbone, getattr(head, "layers", "last"), getattr(head, "use_backbone_norm", True))

    def tables(self, metric: Any) -> dict[str, list[dict[str, Any]]]:
        """Per-class tables of the final evaluation (none by default)."""
        return {}

    def draw(self, model: nn.Module, sample: dict[str, Any], dataset: Any,
             ctx: RunContext) -> tuple[Image.Image, Image.Image] | None:
        """(prediction, ground truth) images of one evaluation sample; None: the family draws nothing."""
        return None

    def save_figures(self, model: nn.Module, dataset: Any, ctx: RunContext, out_dir: Path,
                     count: int) -> list[str]:
        """The drawn predictions of the first ``count`` samples, and one side-by-side figure (image | ground
        truth | prediction) of the first, into ``out_dir``; the written file names."""
        written: list[str] = []
        for index in range(min(count, len(dataset))):
            sample = dataset[index]
            drawn = self.draw(model, sample, dataset, ctx)
            if drawn is None:
                return written
            prediction, truth = drawn
            name = f"{index:03d}_{safe_component(str(sample.get('name', index)))}_pred.png"
            prediction.save(out_dir / name)
            written.append(name)
            if index == 0:
                image = denormalize_image(sample["image"].numpy(), ctx.image_mean, ctx.image_std)
                panels = [("image", image), ("ground truth", truth), ("prediction", prediction)]
                written.append(side_by_side(panels, out_dir / "side_by_side.png").name)
        return written

    # ----------------------------------------------------------------- which evaluation is reported
    @classmethod
    def result_train_keys(cls, section: Any) -> tuple[str, ...]:
        """``train.eval_every`` when the best periodic evaluation of a training is reported: it chooses the
        candidates (a given ``head_weights`` is evaluated once, without training)."""
        return ("train.eval_every",) if section.get("report") == "best" and not section.get("head_weights") else ()

    def report_mode(self) -> str | None:
        """``protocol.report`` ("best" / "final") of a family whose config has it; None: the final head, as is."""
        mode = getattr(self.config, "report", None)
        return None if mode is None else str(mode)

    def evaluation_key(self, ctx: RunContext, val_set: Any) -> str:
        """What an evaluation depends on beyond the training run key: the evaluation-only config (not the report
        choice), the evaluated split's content and the protocol version (periodic evaluations of another key are
        not compared with this run's)."""
        values: dict[str, Any] = {}
        for dotted in ("transform.eval", *(f"protocol.{k}" for k in self.eval_keys if k != "report")):
            node: Any = ctx.cfg
            for part in dotted.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            values[dotted] = node
        return payload_sha256({"protocol": [self.name, str(self.version)], "config": values,
                               "val": getattr(val_set, "fingerprint", "")}, 16)

    def reported_metrics(self, summary: dict[str, Any], eval_every: int,
                         mode: str) -> tuple[dict[str, float], list[dict[str, Any]]]:
        """(record metrics, rows of the ``evaluations`` table) of a training summary (:func:`train_head`) under
        ``protocol.report`` = ``mode``: the unsuffixed metrics are the reported evaluation's (the best one's or
        the final head's), ``<metric>_best`` / ``<metric>_final`` both, ``best_iteration`` the best's iteration
        (earliest of ties). Best-of needs every evaluation of the grid; without them only the final head's."""
        final, total = dict(summary["metrics"]), int(summary["iterations"])
        grid = evaluation_grid(eval_every, total)
        found = {int(e["iteration"]): Evaluation(int(e["iteration"]), dict(e["metrics"]))
                 for e in summary.get("evaluations", ()) if int(e["iteration"]) in grid}
        missing = sorted(set(grid) - set(found))
        if missing and mode == "best":  # train_head refused such a resume before training; never a silent final
            raise ConfigError(f"the best periodic evaluation cannot be reported: iterations {missing} were not "
                              "evaluated")
        best = best_evaluation(found.values(), self.main_metric, self.higher_is_better)
        if missing or best is None:  # best unknown, or no finite main metric at all (then refused as non-finite)
            return final, []
        reported = best if mode == "best" else found[total]
        metrics = {**reported.metrics, **{f"{k}_best": v for k, v in best.metrics.items()},
                   **{f"{k}_final": v for k, v in final.items()}, "best_iteration": float(best.iteration)}
        rows = [{"iteration": t, **found[t].metrics, "best": t == best.iteration, "reported": t == reported.iteration}
                for t in grid]
        return metrics, rows

    # ----------------------------------------------------------------- the skeleton
    def build_model(self, ctx: RunContext, train_set: Any) -> nn.Module:
        """The one model hook (default ``BackboneNeckHead(make_neck(), make_head())``); the head's initial weights
        depend on the seed only; ``backbone.finetune`` / ``backbone.layer_decay`` from the config. A family whose
        model is not backbone -> neck -> head (e.g. a segmentor) overrides this and gives its model the
        duck contract the engine reads: ``frozen_backbone``, ``trainable_modules()``, ``param_groups()``."""
        neck = self.make_neck(ctx.backbone)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_from(ctx.seed, 17))
            head = self.make_head(list(neck.out_channels), train_set)
        bcfg = ctx.cfg.get("backbone", {})
        self.load_head_weights(head)  # families whose config has head_weights: the official head layout
        return BackboneNeckHead(ctx.backbone, head, neck=neck, finetune=bool(bcfg.get("finetune", False)),
                                layer_decay=float(bcfg.get("layer_decay", 0.9)))

    def evaluate(self, model: nn.Module, dataset: Any, ctx: RunContext) -> tuple[dict[str, float], Any]:
        """(metrics, metric) of ``model`` on ``dataset``, sharded over ranks."""
        metric = self.new_metric(dataset)
        workers = int(ctx.cfg.get("train", {}).get("num_workers", 0))
        model.eval()
        with torch.no_grad():
            metrics = evaluate_sharded(dataset, lambda sample: self.update_metric(model, sample, metric, ctx.device),
                                       metric, num_workers=workers, collate_fn=self.collate(), desc=f"eval {self.name}")
        return metrics, metric

    def fit(self, ctx: RunContext, model: nn.Module, train_set: Any,
            evaluate: Callable[[nn.Module], dict[str, float]]) -> dict[str, float]:
        """Train ``model`` on the engine and return the reported metrics (the final evaluation's, or with
        ``protocol.report`` those of :meth:`reported_metrics`, its table in :attr:`evaluation_rows`); with
        ``protocol.head_weights`` (a family whose config has it) evaluate the loaded head as it is."""
        self.evaluation_rows: list[dict[str, Any]] = []
        if getattr(self.config, "head_weights", None):
            return evaluate(model.to(ctx.device).eval())
        mode = self.report_mode()
        summary = train_head(ctx, model, train_set, self.loss, evaluate, collate_fn=self.collate(),
                             eval_key=self.evaluation_key(ctx, ctx.datasets.get("val")),
                             require_evaluations=mode == "best")
        if mode is None:
            return summary["metrics"]
        every = int((ctx.cfg.get("train") or {}).get("eval_every") or 0)
        metrics, self.evaluation_rows = self.reported_metrics(summary, every, mode)
        return metrics

    def run(self, ctx: RunContext) -> ProtocolResult:
        """Train the head on ``train``, evaluate it on ``val``, draw predictions with ``--save-predictions``."""
        train_set, val_set = ctx.dataset("train"), ctx.dataset("val")
        for dataset in (train_set, val_set):  # a split with nothing to learn or score is refused before training
            check = getattr(dataset, "check_ground_truth", None)
            if callable(check):
                check()
        train_set.transform, val_set.transform = self.transforms(ctx)
        model = self.build_model(ctx, train_set)
        final: dict[str, Any] = {}

        def evaluate(net: nn.Module) -> dict[str, float]:
            metrics, final["metric"] = self.evaluate(net, val_set, ctx)
            return metrics

        metrics = self.fit(ctx, model, train_set, evaluate)
        artifacts: list[str] = []
        count = int(self.config.num_visualizations)
        if ctx.predictions_dir is not None and count > 0:
            model.eval()
            with torch.no_grad():
                artifacts = self.save_figures(model, val_set, ctx, ctx.predictions_dir, count)
        tables = self.tables(final["metric"]) if "metric" in final else {}  # the final head's
        if getattr(self, "evaluation_rows", None):
            tables["evaluations"] = self.evaluation_rows
        # a given head is not re-saved; a fine-tuned backbone is part of the model, not of an exportable head
        keep = not getattr(self.config, "head_weights", None) and not getattr(model, "finetune", False)
        trained = self.trained_head(model) if keep else None
        return ProtocolResult(metrics, self.main_metric, self.higher_is_better, tables=tables,
                              artifacts=artifacts, head=trained)

    def trained_head(self, model: nn.Module) -> TrainedHead | None:
        """The trained head in the official layout with its official config (None: the family exports none)."""
        return None

    def official_state(self, model: nn.Module) -> dict[str, Any]:
        """The trained part's state dict on CPU: ``model.head``'s for backbone -> neck -> head models, else the
        model's without its frozen backbone (e.g. a segmentor in the official layout)."""
        if isinstance(model, BackboneNeckHead):
            state, frozen = model.head.state_dict(), ()
        else:
            state, frozen = model.state_dict(), frozen_prefixes(model)
        return {k: v.detach().cpu().clone() for k, v in state.items() if not (frozen and k.startswith(frozen))}
