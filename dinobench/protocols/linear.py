"""Linear probe on frozen features: many linear heads trained at once, the official DINOv3 recipe.

Follows ``dinov3/eval/linear.py``: the input of a head is ``create_linear_input(n, avgpool=True)``
= the normalised CLS tokens of the last ``n`` blocks then the mean of the last block's
normalised patch tokens (the ``"cls4_avgpool"`` feature kind: ``n=4`` takes all columns, ``n=1``
the last ``2 * embed_dim``). One ``nn.Linear`` head (weights ``N(0, 0.01)``, bias 0) per
(n, lr) in ``n_last_blocks x learning_rates``; the loss is the sum of the heads' cross-entropies;
SGD momentum 0.9, weight decay 0, lr scaled by ``batch_size / 256``, cosine annealing to 0 over
``epochs * epoch_length`` iterations of an infinite seeded shuffle. The final heads are compared
by val top-1 (first best wins); with a ``test`` split the chosen head is reported on test,
otherwise on val (the official ImageNet protocol selects and reports on val).

The defaults are the official recipe: heads train on the fly as the official code does: every epoch the
frozen backbone embeds a new RandomResizedCrop(0.08-1, bicubic) + flip view of each train image (seeded per
epoch, never cached), and the grid is ``n_last_blocks=(1,)``. Named faster or richer variants, each with its
own protocol hash: ``protocol.train_augmentation=False`` trains on cached eval-transform features (fast, shared
with kNN/logreg), ``protocol.n_last_blocks=[1, 4]`` adds DINOv2's 4-block heads (note that the reported head is
then chosen among heads the official protocol never trains). The heads train on the one engine
(:mod:`dinobench.protocols.linear_heads`): a killed or SIGTERM'd run resumes exactly from its run
folder, a non-finite loss stops it, under torchrun each rank takes its slice of every batch.

``protocol.head_weights=FILE`` evaluates a given classifier instead (the hub head ``dinov3_vit7b16_lc``, an
official ``linear.py`` checkpoint with ``protocol.classifier=NAME``, or a head exported by ``dinobench export``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import torch
from sklearn.metrics import accuracy_score
from torch import Tensor

from dinobench.context import RunContext
from dinobench.data.transforms import build_train_transform
from dinobench.errors import ConfigError, DataError
from dinobench.heads.linear_classifier import classifier_state, official_classifier_name, read_linear_classifier
from dinobench.metrics.classification import head_metrics
from dinobench.protocol import Protocol, ProtocolResult, TrainedHead
from dinobench.protocols.linear_heads import LinearHeads, TrainFeatures, linear_input_columns, train_linear_heads
from dinobench.training.head import run_key, work_dir_for

logger = logging.getLogger("dinobench")
#: official DINOv3 grid (``_DEFAULT_LR_LIST``), before scaling by batch_size / 256
DEFAULT_LEARNING_RATES = (1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1)


@dataclass
class LinearConfig:
    """Official DINOv3 linear-probe defaults (lr grid before scaling by batch_size / 256)."""

    learning_rates: list[float] = field(default_factory=lambda: list(DEFAULT_LEARNING_RATES))
    # official: dinov3/eval/linear.py:93 TrainConfig.n_last_blocks_list = (1,) (avgpool always on, :216)
    n_last_blocks: list[int] = field(default_factory=lambda: [1])
    batch_size: int = 128
    epochs: int = 10
    epoch_length: int | None = None  # iterations per epoch; None = one pass over the train features
    chunk_size: int = 1024  # rows per evaluation chunk: memory only
    # official: dinov3/eval/linear.py:577-584 trains on make_classification_train_transform (RandomResizedCrop
    # bicubic + flip, dinov3/data/transforms.py:60-74); False: cached eval-transform features (fast variant)
    train_augmentation: bool = True
    head_weights: str | None = None  # evaluate this classifier (hub head or official linear.py checkpoint), no training
    classifier: str | None = None  # which head of an official checkpoint's grid (its best_classifier name)


class LinearProbeProtocol(Protocol):
    """Linear heads on ``cls4_avgpool`` features; the best val top-1 is reported (on test when there is one)."""

    name = "linear"
    version = "1"
    Config = LinearConfig
    runtime_keys = ("chunk_size",)
    file_keys = ("head_weights",)
    optional_keys = ("classifier",)

    def validate(self) -> None:
        """Derived settings and range checks."""
        cfg = self.config
        self.learning_rates = [float(lr) for lr in cfg.learning_rates]
        self.n_last_blocks = [int(n) for n in cfg.n_last_blocks]
        self.batch_size, self.epochs = int(cfg.batch_size), int(cfg.epochs)
        self.epoch_length = None if cfg.epoch_length is None else int(cfg.epoch_length)
        self.chunk_size = int(cfg.chunk_size)
        self.train_augmentation = cfg.train_augmentation
        if not self.learning_rates or min(self.learning_rates) <= 0:
            raise ConfigError("linear: protocol.learning_rates must be a non-empty list of positive numbers")
        if not self.n_last_blocks or not all(1 <= n <= 4 for n in self.n_last_blocks):
            raise ConfigError(f"linear: protocol.n_last_blocks={self.n_last_blocks}: use values in 1..4, e.g. [1, 4]")
        if self.batch_size < 1 or self.epochs < 1 or (self.epoch_length is not None and self.epoch_length < 1):
            raise ConfigError("linear: protocol.batch_size, protocol.epochs and protocol.epoch_length must be >= 1")

    def iterations(self, n_train: int) -> int:
        """Total SGD steps: ``epochs * epoch_length`` (default epoch = one pass over the train features)."""
        epoch_length = self.epoch_length or max(1, n_train // self.batch_size)
        return self.epochs * epoch_length

    def train(self, train_features: TrainFeatures, train_labels: Tensor, num_classes: int,
              embed_dim: int, seed: int, device: str = "cpu", feature_dim: int | None = None,
              work_dir: str | None = None, key: str = "") -> LinearHeads:
        """Every (n_blocks, lr) head trained on the train features (or ``epoch -> features``, then with
        ``feature_dim``); init and batch order seeded by ``seed``. ``work_dir``: the run folder (a checkpoint
        of run key ``key`` there is resumed); None: a temporary one."""
        if len(train_labels) == 0:
            raise DataError("linear: the train split is empty; nothing to train the heads on")
        width = feature_dim if callable(train_features) else train_features.shape[1]
        heads = LinearHeads(int(width), embed_dim, self.n_last_blocks, self.learning_rates,
                            num_classes, torch.Generator().manual_seed(int(seed)))
        iterations = self.iterations(len(train_labels))
        summary = train_linear_heads(train_features, train_labels, heads, batch_size=self.batch_size,
                                     iterations=iterations, seed=seed, device=device,
                                     epoch_length=iterations // self.epochs, work_dir=work_dir, run_key=key)
        self.train_summary = summary
        logger.info("linear: %d heads, %d iterations, final summed train loss %.4g", len(heads.specs), iterations,
                    summary["last"].get("loss", float("nan")))
        return heads

    def evaluate(self, train_features: TrainFeatures, train_labels: Tensor,
                 val_features: Tensor, val_labels: Tensor, num_classes: int, embed_dim: int, seed: int,
                 device: str = "cpu", test_features: Tensor | None = None,
                 test_labels: Tensor | None = None, work_dir: str | None = None, key: str = "") -> dict[str, float]:
        """Train every head (in ``work_dir``, resuming run ``key``), pick the best val top-1, report it on test
        (if given) or val."""
        heads = self.train(train_features, train_labels, num_classes, embed_dim, seed, device,
                           feature_dim=val_features.shape[1], work_dir=work_dir, key=key)
        iterations = self.iterations(len(train_labels))
        val_predictions = heads.predict_labels(val_features, device, self.chunk_size)
        val_top1 = [100.0 * float(accuracy_score(val_labels.numpy(), p.numpy())) for p in val_predictions]
        best = max(range(len(val_top1)), key=lambda i: (val_top1[i], -i))  # first best, as official
        for (n, lr), acc in zip(heads.specs, val_top1):
            logger.debug("linear: n_blocks=%d lr=%g val top-1 %.2f", n, lr, acc)
        if test_features is not None:
            metrics = head_metrics(heads.scores(best, test_features, device, self.chunk_size), test_labels,
                                   num_classes)
            metrics["val_top1"] = val_top1[best]
        else:
            metrics = head_metrics(heads.scores(best, val_features, device, self.chunk_size), val_labels,
                                   num_classes)
        n_blocks, lr = heads.specs[best]
        scaled = lr * self.batch_size / 256.0
        self.trained = TrainedHead(classifier_state(heads.heads[best]), "classifier",
                                   {"n_blocks": n_blocks, "classifier": official_classifier_name(n_blocks, scaled),
                                    "num_classes": num_classes})
        metrics.update(best_lr=lr, best_lr_scaled=scaled, best_n_blocks=float(n_blocks),
                       iterations=float(iterations))
        return metrics

    def run(self, ctx: RunContext) -> ProtocolResult:
        """Heads on ``cls4_avgpool`` train features; select on val; report on test if present, else val."""
        depth = int(getattr(ctx.backbone, "n_blocks", 4))
        if depth < 4:
            raise ConfigError(f"linear: the probe input uses the last 4 blocks but the backbone has {depth}; "
                              "use a deeper backbone (e.g. --cfg-options backbone.depth=4)")
        num_classes = len(ctx.datasets["train"].classes)
        if self.config.head_weights:
            return self._evaluate_given_head(ctx, num_classes)
        if self.train_augmentation:
            train_features = self._augmented_train_features(ctx)
            train_labels = torch.as_tensor(ctx.datasets["train"].labels, dtype=torch.long)
        else:
            train = ctx.features("train", "cls4_avgpool")
            train_features, train_labels = train.features, train.labels
        val = ctx.features("val", "cls4_avgpool")
        test = ctx.features("test", "cls4_avgpool") if "test" in ctx.datasets else None
        key = run_key(ctx)
        metrics = self.evaluate(train_features, train_labels, val.features, val.labels, num_classes,
                                int(ctx.backbone.embed_dim), ctx.seed, ctx.device,
                                test_features=None if test is None else test.features,
                                test_labels=None if test is None else test.labels,
                                work_dir=str(work_dir_for(ctx, key)), key=key)
        ctx.timings["train_head_s"] = self.train_summary["train_s"]
        return ProtocolResult(metrics, "top1", higher_is_better=True, head=self.trained)

    def _evaluate_given_head(self, ctx: RunContext, num_classes: int) -> ProtocolResult:
        """top-1 / top-5 of the classifier in ``protocol.head_weights`` on test (if present) and val."""
        embed_dim = int(ctx.backbone.embed_dim)
        n_blocks, head, name = read_linear_classifier(self.config.head_weights, embed_dim, self.config.classifier)
        if head.out_features != num_classes:
            raise ConfigError(f"linear: {self.config.head_weights} classifies {head.out_features} classes but the "
                              f"dataset has {num_classes}; use the dataset the head was trained on")
        metrics: dict[str, float] = {}
        for split in ("val", "test") if "test" in ctx.datasets else ("val",):
            feats = ctx.features(split, "cls4_avgpool")
            cols = linear_input_columns(feats.features.shape[1], embed_dim, n_blocks)
            with torch.inference_mode():
                scores = torch.cat([head(feats.features[start:start + self.chunk_size, cols].float())
                                    for start in range(0, len(feats.features), self.chunk_size)])
            split_metrics = head_metrics(scores, feats.labels, num_classes)
            metrics.update(split_metrics if split == "test" or "test" not in ctx.datasets
                           else {f"val_{k}": v for k, v in split_metrics.items()})
        metrics["best_n_blocks"] = float(n_blocks)
        logger.info("linear: evaluated the given classifier %s (%d blocks)", name, n_blocks)
        return ProtocolResult(metrics, "top1", higher_is_better=True)

    def _augmented_train_features(self, ctx: RunContext) -> Callable[[int], Tensor]:
        """``epoch -> [N, 5D]`` features of a fresh seeded augmentation of every train image."""
        transform = build_train_transform(ctx.cfg.get("transform", {}), ctx.image_mean, ctx.image_std)

        def features(epoch: int) -> Tensor:
            with torch.random.fork_rng(devices=[]):  # the run's global RNG stream stays untouched
                torch.manual_seed(int(ctx.seed) * 100_003 + epoch)
                return ctx.transformed_features("train", "cls4_avgpool", transform,
                                                f"{ctx.task} train augmented features (epoch {epoch + 1})").features
        return features
