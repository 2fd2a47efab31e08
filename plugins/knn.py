"""k-nearest-neighbour classification, the official DINOv3 protocol.

L2-normalised CLS features; cosine similarity to all training features computed in query
chunks (never the full N x M matrix); the ``max(k)`` nearest neighbours vote with weights
``softmax(sim / T)`` taken over those ``max(k)`` neighbours; the class score for each ``k``
sums the first ``k`` weights. Reports top-1/top-5 per k; the main metric is the best top-1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from dinobench.hookspecs import hookimpl
from dinobench.registry import ProtocolRegistry

if TYPE_CHECKING:
    from torch import Tensor

PROTOCOL_VERSION = "1"


def knn_class_scores(train_features: Tensor, train_labels: Tensor, query_features: Tensor,
                     ks: Sequence[int], temperature: float, num_classes: int,
                     chunk_size: int = 1024) -> dict[int, Tensor]:
    """Per-k class scores ``[M, C]`` for the queries; features are L2-normalised here."""
    import torch

    with torch.inference_mode():
        return _knn_class_scores(train_features, train_labels, query_features, ks, temperature,
                                 num_classes, chunk_size)


def _knn_class_scores(train_features, train_labels, query_features, ks, temperature, num_classes, chunk_size):
    import torch
    import torch.nn.functional as F

    train = F.normalize(train_features.float(), dim=1)
    train_t = train.T.contiguous()
    max_k = min(max(ks), train.shape[0])
    scores = {k: [] for k in ks}
    for start in range(0, query_features.shape[0], chunk_size):
        query = F.normalize(query_features[start:start + chunk_size].float(), dim=1)
        sims, idx = (query @ train_t).topk(max_k, dim=1, largest=True, sorted=True)
        weights = torch.softmax(sims / temperature, dim=1)  # [m, max_k], over the max_k neighbours
        neighbour_labels = train_labels[idx]
        for k in ks:
            kk = min(k, max_k)
            class_scores = torch.zeros(query.shape[0], num_classes, dtype=weights.dtype)
            scores[k].append(class_scores.scatter_add_(1, neighbour_labels[:, :kk], weights[:, :kk]))
    return {k: torch.cat(v) for k, v in scores.items()}


def topk_accuracy(scores: Tensor, labels: Tensor, k: int) -> float:
    """Fraction of rows whose label is among the ``k`` highest scores (in %)."""
    k = min(k, scores.shape[1])
    hits = (scores.topk(k, dim=1).indices == labels[:, None]).any(dim=1)
    return float(hits.double().mean() * 100)


class KNNProtocol:
    """``protocol=dict(type="knn", nb_knn=[10, 20, 100, 200], temperature=0.07, chunk_size=1024)``."""

    name = "knn"

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.ks = sorted(int(k) for k in cfg.get("nb_knn", (10, 20, 100, 200)))
        self.temperature = float(cfg.get("temperature", 0.07))
        self.chunk_size = int(cfg.get("chunk_size", 1024))
        if not self.ks or min(self.ks) < 1 or self.temperature <= 0:
            raise ValueError("knn: nb_knn must be positive integers and temperature > 0")

    def evaluate(self, train_features: Tensor, train_labels: Tensor, query_features: Tensor,
                 query_labels: Tensor, num_classes: int) -> dict[str, float]:
        """Metrics ``top1_k<k>``, ``top5_k<k>``, plus ``top1`` (best k) and ``best_k``."""
        scores = knn_class_scores(train_features, train_labels, query_features, self.ks,
                                  self.temperature, num_classes, self.chunk_size)
        metrics: dict[str, float] = {}
        for k in self.ks:
            metrics[f"top1_k{k}"] = topk_accuracy(scores[k], query_labels, 1)
            metrics[f"top5_k{k}"] = topk_accuracy(scores[k], query_labels, 5)
        best_k = max(self.ks, key=lambda k: (metrics[f"top1_k{k}"], -k))
        metrics["top1"] = metrics[f"top1_k{best_k}"]
        metrics["best_k"] = float(best_k)
        return metrics

    def run(self, ctx) -> dict[str, Any]:
        """kNN from the train split onto the val split of ``ctx``."""
        train, val = ctx.features("train"), ctx.features("val")
        num_classes = len(ctx.datasets["train"].classes)
        metrics = self.evaluate(train.features, train.labels, val.features, val.labels, num_classes)
        return {"metrics": metrics, "main_metric": "top1", "higher_is_better": True}


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """The kNN protocol."""
    registry.add("knn", "dinobench.plugins.knn:KNNProtocol", version=PROTOCOL_VERSION,
                 description="official DINOv3 kNN: cosine top-k, softmax(sim/T) vote, T=0.07")
