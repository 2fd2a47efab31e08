"""Instance retrieval on revisited Oxford 5k / Paris 6k: global descriptors, cosine ranking, mAP E/M/H.

The descriptor of an image is its L2-normalised CLS token (``multiscale=True``: the mean of the
normalised CLS tokens at scales 1, 1/sqrt(2), sqrt(2), normalised again: the ``cls_multiscale`` feature
kind); queries are cropped to their boxes by the dataset; the database is ranked by cosine similarity
in query chunks (``backend="faiss"`` for large databases gives the same ranking). Metrics follow the
revisited protocol (:func:`dinobench.metrics.retrieval.revisited_metrics`): mAP and mP@k for Easy,
Medium and Hard with the junk images of each setting ignored; a per-query AP table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dinobench.context import RunContext
from dinobench.errors import ConfigError, DataError
from dinobench.features.builtin import descriptor_kind
from dinobench.metrics.retrieval import iter_rankings, revisited_metrics
from dinobench.protocol import Protocol, ProtocolResult


@dataclass
class RevisitedConfig:
    """Single-scale CLS descriptors, exhaustive cosine ranking; mP@1/5/10; main metric mAP on Hard."""

    multiscale: bool = False
    kappas: list[int] = field(default_factory=lambda: [1, 5, 10])
    backend: Literal["torch", "faiss"] = "torch"  # same ranking either way
    chunk_size: int = 256  # queries per similarity chunk: memory only
    main_metric: str = "mAP_hard"


class RevisitedRetrievalProtocol(Protocol):
    """Rank the ``database`` split for every ``query`` and score with the revisited ground truth."""

    name = "revisited_retrieval"
    version = "1"
    Config = RevisitedConfig
    runtime_keys = ("backend", "chunk_size")
    datasets = ("query", "database")

    def validate(self) -> None:
        """Range checks."""
        cfg = self.config
        if not cfg.kappas or min(int(k) for k in cfg.kappas) < 1 or cfg.chunk_size < 1:
            raise ConfigError("revisited_retrieval: protocol.kappas must be positive integers and "
                              "protocol.chunk_size >= 1")
        names = [f"mAP_{s}" for s in ("easy", "medium", "hard")]
        names += [f"mP@{k}_{s}" for k in cfg.kappas for s in ("easy", "medium", "hard")]
        if cfg.main_metric not in names:
            raise ConfigError(f"revisited_retrieval: protocol.main_metric={cfg.main_metric!r}; choose one of "
                              f"{', '.join(names)}")

    def run(self, ctx: RunContext) -> ProtocolResult:
        """Descriptors of both splits -> rankings -> revisited metrics."""
        gnd = getattr(ctx.dataset("query"), "gnd", None)
        if gnd is None:
            raise DataError(f"task {ctx.task!r}: the query dataset carries no revisited ground truth (gnd); "
                            f"use the roxford5k or rparis6k dataset")
        kind = descriptor_kind(self.config.multiscale)
        query, database = ctx.features("query", kind), ctx.features("database", kind)
        rankings = iter_rankings(query.features, database.features, chunk_size=self.config.chunk_size,
                                 backend=self.config.backend)
        metrics, rows = revisited_metrics(rankings, gnd, [int(k) for k in self.config.kappas])
        return ProtocolResult(metrics, self.config.main_metric, higher_is_better=True, tables={"per_query": rows})
