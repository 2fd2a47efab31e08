"""The dense-protocol template: train a head on the frozen backbone -> evaluate -> figures.

Linear segmentation, linear depth and DPT depth are this skeleton with different transforms, heads,
losses and metrics; a new dense family (Mask2Former, ...) subclasses :class:`DenseProtocol` and fills in

- :meth:`~DenseProtocol.transforms` — joint image+target train/eval transforms of the task config,
- :meth:`~DenseProtocol.make_head` — the head over the neck's output levels (``channels``),
- :meth:`~DenseProtocol.loss` — ``(loss, logs)`` of a training batch,
- :meth:`~DenseProtocol.new_metric` / :meth:`~DenseProtocol.update_metric` — the evaluation metric,
- optionally :meth:`~DenseProtocol.make_neck`, :meth:`~DenseProtocol.tables`, :meth:`~DenseProtocol.draw` (figures).

Training runs on the one engine (:func:`dinobench.training.train_head`: exact resume, SIGTERM, DDP);
evaluation is sharded over ranks (each rank evaluates its share, the metric state is all-reduced).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Sequence

import torch
from PIL import Image
from torch import Tensor, nn

from dinobench.context import RunContext
from dinobench.data.dense_transforms import build_seg_eval_transform, build_seg_train_transform
from dinobench.metrics.dense import SegmentationMetric
from dinobench.errors import ConfigError
from dinobench.heads.model import BackboneNeckHead
from dinobench.heads.necks import OFFICIAL_LAYER_SETS, IntermediateLayers, Neck, resolve_layers
from dinobench.heads.weights import load_head_state, read_head_state
from dinobench.protocol import Protocol, ProtocolResult, TrainedHead
from dinobench.training import evaluate_sharded, train_head
from dinobench.training.head import frozen_prefixes
from dinobench.utils.io import safe_component
from dinobench.utils.seeding import seed_from
from dinobench.visualize import colorize_mask, denormalize_image, side_by_side


@dataclass
class DenseHeadConfig:
    """What every official dense head reads: which layers, with the backbone norm, with the class token, BN."""

    layers: str | list[int] = "last"
    use_cls_token: bool = False
    use_batchnorm: bool = True
    use_backbone_norm: bool = True


@dataclass
class InferenceConfig:
    """How a dense head is applied at evaluation: whole image or sliding windows (mmseg's slide inference)."""

    mode: Literal["whole", "slide"] = "whole"
    crop_size: int | list[int] = 512
    stride: int | list[int] = 341


def transform_sections(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``transform.train`` and ``transform.eval`` of a dense task config (both required)."""
    transform = cfg.get("transform") or {}
    missing = [k for k in ("train", "eval") if not isinstance(transform.get(k), dict)]
    if missing:
        raise ConfigError(f"dense task config needs transform=dict(train=dict(...), eval=dict(...)); "
                          f"missing transform.{missing[0]}")
    return transform


class DenseProtocol(Protocol):
    """Template of the dense protocols (see the module docstring). Config needs ``head`` (with ``layers`` and
    ``use_backbone_norm``), ``inference`` and ``num_visualizations`` sections/keys."""

    runtime_keys = ("num_visualizations",)
    eval_keys = ("inference",)
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
        """The neck (default: the configured intermediate layers with the backbone norm)."""
        head = self.config.head
        return IntermediateLayers(backbone, head.layers, head.use_backbone_norm)

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

    # ----------------------------------------------------------------- the skeleton
    def build_model(self, ctx: RunContext, train_set: Any) -> BackboneNeckHead:
        """backbone -> neck -> head; the head's initial weights depend on the seed only;
        ``backbone.finetune`` / ``backbone.layer_decay`` from the config."""
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
        """Train ``model`` on the engine and return the final evaluation; with ``protocol.head_weights`` (a family
        whose config has it) evaluate the loaded head as it is."""
        if getattr(self.config, "head_weights", None):
            return evaluate(model.to(ctx.device).eval())
        return train_head(ctx, model, train_set, self.loss, evaluate, collate_fn=self.collate())["metrics"]

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
        tables = self.tables(final["metric"]) if "metric" in final else {}
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
        model's without its frozen backbone (a segmentor or detector in the official layout)."""
        if isinstance(model, BackboneNeckHead):
            state, frozen = model.head.state_dict(), ()
        else:
            state, frozen = model.state_dict(), frozen_prefixes(model)
        return {k: v.detach().cpu().clone() for k, v in state.items() if not (frozen and k.startswith(frozen))}


def official_layer_set(backbone: nn.Module, layers: Sequence[int]) -> str | list[int]:
    """The official ``BackboneLayersSet`` name of ``layers`` (``LAST``, ``FOUR_LAST``, ``FOUR_EVEN_INTERVALS``), which
    the official segmentation config requires; the list itself when it is none of them."""
    for name, spec in OFFICIAL_LAYER_SETS.items():
        if resolve_layers(backbone, spec) == list(layers):
            return name
    return list(layers)


class SegmentationProtocol(DenseProtocol):
    """Semantic segmentation on the template: a family gives :meth:`class_scores` (and its head); the ADE20K
    transforms, mmseg's IoUMetric, the per-class IoU table and the figures are shared."""

    main_metric = "mIoU"
    num_classes: int

    def class_scores(self, model: nn.Module, image: Tensor, out_size: Any) -> Tensor:  # pragma: no cover
        """Per-class scores ``[B, K, *out_size]`` of ``image`` (argmax = the prediction)."""
        raise NotImplementedError

    def transforms(self, ctx: RunContext) -> tuple[Any, Any]:
        """Official ADE20K train (random resize, crop, flip, photometric) and eval (resize) transforms."""
        transform = transform_sections(ctx.cfg)
        return (build_seg_train_transform(transform["train"], ctx.image_mean, ctx.image_std),
                build_seg_eval_transform(transform["eval"], ctx.image_mean, ctx.image_std))

    def new_metric(self, dataset: Any) -> SegmentationMetric:
        """mmseg IoUMetric over the dataset's classes."""
        return SegmentationMetric(self.num_classes, ignore_index=getattr(dataset, "ignore_index", 255),
                                  class_names=getattr(dataset, "class_names", None))

    def update_metric(self, model: nn.Module, sample: dict[str, Any], metric: Any, device: str) -> None:
        """Scores at the original-size label, argmax, into the metric."""
        label = sample["mask"][0]
        scores = self.class_scores(model, sample["image"].to(device), label.shape[-2:])
        metric.update(scores[0].argmax(0).cpu(), label)

    def tables(self, metric: SegmentationMetric) -> dict[str, list[dict[str, Any]]]:
        """Per-class IoU (percent; NaN for classes absent from predictions and labels)."""
        return {"per_class_iou": [{"class": name, "IoU": value} for name, value in metric.per_class_iou().items()]}

    def draw(self, model: nn.Module, sample: dict[str, Any], dataset: Any, ctx: RunContext) -> tuple[Any, Any]:
        """Colourised predicted and ground-truth masks of one val sample."""
        label = sample["mask"]
        scores = self.class_scores(model, sample["image"][None].to(ctx.device), label.shape[-2:])
        return (colorize_mask(scores[0].argmax(0).cpu().numpy(), self.num_classes),
                colorize_mask(label.numpy(), self.num_classes))


def inference_kwargs(inference: InferenceConfig) -> dict[str, Any]:
    """:func:`dinobench.dense_inference.dense_predict` keyword arguments of an inference section."""
    crop: int | Sequence[int] = inference.crop_size
    stride: int | Sequence[int] = inference.stride
    return {"mode": inference.mode, "crop_size": crop, "stride": stride}
