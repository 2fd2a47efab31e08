"""Foreground segmentation with a logistic regression on frozen patch features (the official notebook).

As in ``notebooks/foreground_segmentation.ipynb``: the target of a patch is the fraction of its pixels
inside the foreground mask (the mask resized with the image and averaged over the patch); only clear
patches (fraction below ``label_margin`` or above ``1 - label_margin``) are used, foreground = fraction
above it; features are the last block's normalised patch tokens; scikit-learn's
``LogisticRegression(C, random_state=0, max_iter)`` for every C of ``Cs`` (the notebook's
``logspace(-7, 0, 8)``). Differences, to make it a benchmark: C is chosen by the average precision on
held-out train images (``holdout_fraction`` of them, seeded) instead of leave-one-out over the test images,
the classifier is refit on all train images, and it is scored on the val split. The foreground score map
of each image may be median-filtered (``median_filter``: kernel size, the notebook shows 3) before
scoring. Metrics: ``AP`` (scikit-learn ``average_precision_score``), ``mIoU`` (mean of foreground and
background IoU) at the threshold that is best on the held-out train images, and ``mIoU_oracle`` at the
threshold that is best on val.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.signal import medfilt2d
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from tqdm.auto import tqdm

from dinobench.context import RunContext
from dinobench.metrics.dense import best_miou_threshold, binary_miou
from dinobench.errors import ConfigError, DataError
from dinobench.protocol import Protocol, ProtocolResult
from dinobench.visualize import colorize_scores, pca_map, side_by_side

logger = logging.getLogger("dinobench")


@dataclass
class ForegroundConfig:
    """The notebook's C grid and clear-patch margin; 25 % of the train images held out to choose C."""

    # notebooks/foreground_segmentation.ipynb (line 683 of the .ipynb): ``cs = np.logspace(-7, 0, 8)``, written out:
    # the values it means, the same on every CPU (logspace's pow differs in the last bit between CPUs)
    Cs: list[float] = field(default_factory=lambda: [1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    max_iter: int = 10000
    label_margin: float = 0.01
    holdout_fraction: float = 0.25
    median_filter: int = 0  # odd kernel size on the patch grid; 0 = off
    num_visualizations: int = 4  # figures written by --save-predictions


def clear_patches(fractions: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(mask of the clear patches, their binary labels) of foreground fractions of any shape."""
    clear = (fractions < margin) | (fractions > 1 - margin)
    return clear, fractions[clear] > 1 - margin


class ForegroundProtocol(Protocol):
    """Logistic regression foreground / background per patch; AP and mIoU on val."""

    name = "foreground"
    # 2: the default C grid is written out (1e-05, not the 9.999999999999999e-06 an AVX-512 CPU's logspace gave,
    # which moved the protocol hash between CPUs); the C values fitted are the same to the last bit or two
    version = "2"
    Config = ForegroundConfig
    runtime_keys = ("num_visualizations",)

    def validate(self) -> None:
        """Range checks."""
        cfg = self.config
        if not cfg.Cs or min(cfg.Cs) <= 0:
            raise ConfigError("foreground: protocol.Cs must be a non-empty list of positive numbers")
        if not 0 < cfg.label_margin < 0.5 or not 0 < cfg.holdout_fraction < 1 or cfg.max_iter < 1:
            raise ConfigError("foreground: protocol.label_margin must be in (0, 0.5), protocol.holdout_fraction in "
                              "(0, 1) and protocol.max_iter >= 1")
        if cfg.median_filter < 0 or (cfg.median_filter and cfg.median_filter % 2 == 0):
            raise ConfigError(f"foreground: protocol.median_filter={cfg.median_filter}: use an odd kernel size "
                              f"(e.g. 3) or 0 for none")

    # ----------------------------------------------------------------- pieces
    def scores(self, classifier: LogisticRegression, features: np.ndarray) -> np.ndarray:
        """Foreground probability ``[N, h, w]`` of patch features ``[N, h, w, D]`` (median-filtered if asked)."""
        n, h, w, dim = features.shape
        probs = classifier.predict_proba(features.reshape(-1, dim))[:, 1].reshape(n, h, w)
        if self.config.median_filter:
            probs = np.stack([medfilt2d(p, kernel_size=self.config.median_filter) for p in probs])
        return probs

    def fit(self, features: np.ndarray, fractions: np.ndarray, c: float) -> LogisticRegression:
        """The notebook's classifier on the clear patches of ``features`` ``[N, h, w, D]``."""
        clear, labels = clear_patches(fractions, self.config.label_margin)
        if labels.all() or not labels.any():
            raise DataError("foreground: the training images have clear patches of one class only; every split "
                            "needs both foreground and background (masks: 255 = foreground, 0 = background)")
        return LogisticRegression(C=float(c), random_state=0, max_iter=int(self.config.max_iter)).fit(
            features[clear], labels.astype(np.int64))

    def evaluate(self, scores: np.ndarray, fractions: np.ndarray, threshold: float | None) -> dict[str, float]:
        """``AP`` and, at ``threshold`` (None: the best one on these scores), ``mIoU`` / ``IoU_fg`` / ``IoU_bg``."""
        clear, labels = clear_patches(fractions, self.config.label_margin)
        if labels.all() or not labels.any():
            raise DataError("foreground: the evaluated images have clear patches of one class only; AP and mIoU "
                            "need both foreground and background")
        values = scores[clear]
        metrics = {"AP": 100 * float(average_precision_score(labels, values))}
        chosen = best_miou_threshold(values, labels) if threshold is None else threshold
        metrics.update({k: 100 * v for k, v in binary_miou(values, labels, chosen).items()})
        metrics["threshold"] = float(chosen)
        return metrics

    def run(self, ctx: RunContext) -> ProtocolResult:
        """Choose C on held-out train images, refit on all of them, score val."""
        train, val = ctx.features("train", "patch_tokens"), ctx.features("val", "patch_tokens")
        x_train, f_train = np.asarray(train.features, dtype=np.float32), np.asarray(train.targets, dtype=np.float64)
        x_val, f_val = np.asarray(val.features, dtype=np.float32), np.asarray(val.targets, dtype=np.float64)
        if f_train.shape != x_train.shape[:3]:
            raise DataError(f"foreground: targets {list(f_train.shape)} do not match the patch grid "
                            f"{list(x_train.shape[:3])}; use the foreground_folder dataset")
        order = np.random.default_rng(int(ctx.seed)).permutation(len(x_train))
        n_held = min(max(1, round(self.config.holdout_fraction * len(order))), len(order) - 1)
        held, fit = np.sort(order[:n_held]), np.sort(order[n_held:])
        sweep = []
        for c in tqdm(self.config.Cs, desc="foreground C sweep", unit="C", leave=False):
            classifier = self.fit(x_train[fit], f_train[fit], c)
            held_metrics = self.evaluate(self.scores(classifier, x_train[held]), f_train[held], None)
            sweep.append({"C": float(c), "holdout_AP": held_metrics["AP"], "holdout_mIoU": held_metrics["mIoU"],
                          "threshold": held_metrics["threshold"]})
        best = max(range(len(sweep)), key=lambda i: (sweep[i]["holdout_AP"], -i))
        c, threshold = sweep[best]["C"], sweep[best]["threshold"]
        classifier = self.fit(x_train, f_train, c)
        val_scores = self.scores(classifier, x_val)
        metrics = self.evaluate(val_scores, f_val, threshold)
        oracle = self.evaluate(val_scores, f_val, None)
        metrics.update(mIoU_oracle=oracle["mIoU"], threshold_oracle=oracle["threshold"], best_C=c,
                       holdout_AP=sweep[best]["holdout_AP"])
        artifacts = self.draw(ctx, x_val, f_val, val_scores, threshold) if ctx.predictions_dir else []
        return ProtocolResult(metrics, "AP", higher_is_better=True, tables={"C_sweep": sweep}, artifacts=artifacts)

    def draw(self, ctx: RunContext, features: np.ndarray, fractions: np.ndarray, scores: np.ndarray,
             threshold: float) -> list[str]:
        """image | ground-truth fractions | foreground score | PCA map of the predicted foreground, per val image."""
        dataset, out = ctx.dataset("val"), Path(ctx.predictions_dir)  # type: ignore[arg-type]
        names = []
        for i in range(min(int(self.config.num_visualizations), len(scores))):
            image = dataset.image(i) if hasattr(dataset, "image") else None
            panels: list[tuple[str, Any]] = [] if image is None else [("image", image)]
            panels += [("ground truth", colorize_scores(fractions[i])), ("foreground score", colorize_scores(scores[i])),
                       ("PCA (foreground)", pca_map(features[i], scores[i] >= threshold))]
            name = f"foreground_{i:03d}.png"
            side_by_side(panels, out / name, height=max(128, image.height if image is not None else 128))
            names.append(name)
        return names
