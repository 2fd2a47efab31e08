"""Two example protocols: a head trained on dinobench's engine and evaluated on two named datasets, and a kNN
on this plugin's own feature kind (``pooled_grid``, an N-D ``[2, 2, D]`` array per image)."""

from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import accuracy_score

from dinobench.api import (BackboneNeckHead, Protocol, ProtocolResult, evaluate_sharded, knn_class_scores,
                           topk_accuracy, train_head)

from dinobench_example_plugin.heads import DictClassifierHead, TokensAndThumbnail


class Predictions:
    """A mergeable metric (state = predictions and labels): top-1 from scikit-learn, per-class rows."""

    def __init__(self) -> None:
        self.predicted, self.labels = [], []

    def update(self, predicted, labels) -> None:
        self.predicted += [int(p) for p in predicted]
        self.labels += [int(label) for label in labels]

    def state(self):
        return {"predicted": self.predicted, "labels": self.labels}

    def merge(self, states) -> None:
        self.predicted = [p for s in states for p in s["predicted"]]
        self.labels = [label for s in states for label in s["labels"]]

    def compute(self):
        return {"top1": 100.0 * float(accuracy_score(self.labels, self.predicted))}

    def per_class(self):
        labels, predicted = np.asarray(self.labels), np.asarray(self.predicted)
        return [{"class": int(c), "top1": 100.0 * float(accuracy_score(labels[labels == c], predicted[labels == c]))}
                for c in np.unique(labels)]


def as_dict(samples):
    """``collate_fn``: (image, label) pairs -> ``{"image": [B, 3, H, W], "label": [B]}``."""
    return {"image": torch.stack([image for image, _ in samples]),
            "label": torch.as_tensor([label for _, label in samples])}


@dataclass
class HeadProbeConfig:
    """``pixels``: thumbnail side of the neck; ``eval_on``: the named datasets the head is evaluated on."""

    pixels: int = 4
    eval_on: list[str] = field(default_factory=lambda: ["val", "holdout"])


class HeadProbeProtocol(Protocol):
    """Train ``TokensAndThumbnail -> DictClassifierHead`` on ``train``; top-1 on ``val`` and ``holdout``."""

    name = "example_head_probe"
    version = "1"
    Config = HeadProbeConfig
    datasets = ("train", "val", "holdout")
    trains = True  # reads the task's train section (checked against the engine's TrainConfig)

    def run(self, ctx):
        train_set = ctx.dataset("train")
        num_classes = len(train_set.classes)
        torch.manual_seed(ctx.seed)
        neck = TokensAndThumbnail(ctx.backbone, self.config.pixels)
        model = BackboneNeckHead(ctx.backbone, DictClassifierHead(neck.out_channels, num_classes), neck=neck)

        def loss(net, batch, iteration):
            logits = net(batch["image"])["logits"]
            return torch.nn.functional.cross_entropy(logits, batch["label"]), {}

        summary = train_head(ctx, model, train_set, loss, None, collate_fn=as_dict)
        metrics, tables = {"train_iterations": float(summary["iterations"])}, {}
        model.eval()
        for name in self.config.eval_on:
            dataset, metric = ctx.dataset(name), Predictions()

            def update(batch, metric=metric):
                images = batch["image"].to(ctx.device)
                predictions = model.postprocess(model(images), images.shape[-2:])
                metric.update(predictions["labels"].cpu(), batch["label"])

            top1 = evaluate_sharded(dataset, update, metric, collate_fn=as_dict, batch_size=64)["top1"]
            metrics["top1" if name == "val" else f"{name}_top1"] = top1
            tables[f"{name}_per_class"] = metric.per_class()
        return ProtocolResult(metrics, "top1", higher_is_better={"train_iterations": True}, tables=tables)


@dataclass
class GridKNNConfig:
    """kNN on flattened ``pooled_grid`` features."""

    k: int = 5
    temperature: float = 0.07


class GridKNNProtocol(Protocol):
    """kNN of ``val`` onto ``train`` with this plugin's ``pooled_grid`` feature kind (cached on disk)."""

    name = "example_grid_knn"
    version = "1"
    Config = GridKNNConfig

    def run(self, ctx):
        train, val = ctx.features("train", "pooled_grid"), ctx.features("val", "pooled_grid")
        scores = knn_class_scores(train.features.flatten(1), train.labels, val.features.flatten(1), [self.config.k],
                                  self.config.temperature, len(ctx.dataset("train").classes))
        return ProtocolResult({"top1": topk_accuracy(scores[self.config.k], val.labels, 1)}, "top1")
