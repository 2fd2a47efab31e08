"""Classification metrics: top-k accuracy of class scores (kNN), and top-1/top-5 from scikit-learn (logistic
regression, linear and attentive probes); top-5 is reported from 6 classes on, as the official evaluation does."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, top_k_accuracy_score
from torch import Tensor


def topk_accuracy(scores: Tensor, labels: Tensor, k: int) -> float:
    """Fraction of rows whose label is among the ``k`` highest scores (in %)."""
    k = min(k, scores.shape[1])
    hits = (scores.topk(k, dim=1).indices == labels[:, None]).any(dim=1)
    return float(hits.double().mean() * 100)


def classification_metrics(labels: np.ndarray, predictions: np.ndarray, scores: np.ndarray,
                           num_classes: int) -> dict[str, float]:
    """``top1`` (and ``top5`` when there are more than 5 classes) in %, from scikit-learn."""
    metrics = {"top1": 100.0 * float(accuracy_score(labels, predictions))}
    if num_classes > 5:  # official reports top-5 from 5 classes on, where it is trivially 100
        metrics["top5"] = 100.0 * float(top_k_accuracy_score(labels, scores, k=5, labels=np.arange(num_classes)))
    return metrics


def head_metrics(scores: Tensor, labels: Tensor, num_classes: int) -> dict[str, float]:
    """top-1 (and top-5 above 5 classes) of one head's logits, from scikit-learn."""
    scores_np = scores.double().numpy()
    return classification_metrics(labels.numpy(), scores_np.argmax(axis=1), scores_np, num_classes)
