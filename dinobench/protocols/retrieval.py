"""Label retrieval over a query / database folder layout: global descriptors, cosine ranking, mAP, mAP@R, R@k.

Descriptors as in :mod:`dinobench.protocols.revisited_retrieval` (L2-normalised CLS, optionally
multi-scale); a database item is relevant to a query when it has the query's label. Metrics from
:func:`dinobench.metrics.retrieval.label_retrieval_metrics`; queries whose label has no database item
are left out (and counted).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dinobench.context import RunContext
from dinobench.errors import ConfigError
from dinobench.features.targets import FeatureSet
from dinobench.protocol import ProtocolResult
from dinobench.templates.feature_probe import FeatureProbeProtocol
from dinobench.features.builtin import descriptor_kind
from dinobench.metrics.retrieval import iter_rankings, label_retrieval_metrics


@dataclass
class RetrievalConfig:
    """Single-scale CLS descriptors, exhaustive cosine ranking; R@1/5/10; main metric mAP."""

    multiscale: bool = False
    recall_at: list[int] = field(default_factory=lambda: [1, 5, 10])
    backend: Literal["torch", "faiss"] = "torch"
    chunk_size: int = 256  # queries per similarity chunk: memory only
    main_metric: str = "mAP"


class RetrievalProtocol(FeatureProbeProtocol):
    """Rank ``database`` for every ``query``; relevant = same label."""

    name = "retrieval"
    version = "1"
    Config = RetrievalConfig
    runtime_keys = ("backend", "chunk_size")
    datasets = ("query", "database")

    def validate(self) -> None:
        """Range checks."""
        cfg = self.config
        if not cfg.recall_at or min(int(k) for k in cfg.recall_at) < 1 or cfg.chunk_size < 1:
            raise ConfigError("retrieval: protocol.recall_at must be positive integers and protocol.chunk_size >= 1")
        names = ["mAP", "mAP@R", *(f"R@{k}" for k in cfg.recall_at)]
        if cfg.main_metric not in names:
            raise ConfigError(f"retrieval: protocol.main_metric={cfg.main_metric!r}; choose one of {', '.join(names)}")

    def kind(self) -> str:
        """The global descriptor: the CLS token, or the multi-scale CLS with ``protocol.multiscale``."""
        return descriptor_kind(self.config.multiscale)

    def probe(self, ctx: RunContext, features: dict[str, FeatureSet]) -> ProtocolResult:
        """Descriptors of both splits -> rankings -> label metrics."""
        query, database = features["query"], features["database"]
        rankings = iter_rankings(query.features, database.features, chunk_size=self.config.chunk_size,
                                 backend=self.config.backend)
        metrics = label_retrieval_metrics(rankings, query.labels.numpy(), database.labels.numpy(),
                                          [int(k) for k in self.config.recall_at])
        directions = {"queries_without_relevant": False}
        return ProtocolResult(metrics, self.config.main_metric, higher_is_better=directions)
