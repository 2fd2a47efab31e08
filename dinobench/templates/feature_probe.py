"""The feature-probe template: a probe on the cached features of the task's named datasets (kNN, label retrieval, a
plugin's own probe). The features come from :meth:`dinobench.context.RunContext.features` — extracted once per run,
cached on disk under a key of everything that made them — so a probe never runs the backbone itself.

A family subclasses :class:`FeatureProbeProtocol`, names its datasets (``datasets``) and feature kind
(``feature_kind``, or :meth:`~FeatureProbeProtocol.kind` when the config chooses it) and implements
:meth:`~FeatureProbeProtocol.probe`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from dinobench.protocol import Protocol, ProtocolResult

if TYPE_CHECKING:
    from dinobench.context import RunContext
    from dinobench.features.targets import FeatureSet


class FeatureProbeProtocol(Protocol):
    """``run(ctx)`` = ``probe(ctx, {dataset name: its features})`` for every dataset in ``datasets``."""

    #: the registered feature kind the probe reads (``dinobench list kinds``)
    feature_kind: ClassVar[str] = "cls"
    #: storage dtype of the cached features (``float16`` halves the disk and may move results: say so in a config)
    feature_dtype: ClassVar[str] = "float32"

    def kind(self) -> str:
        """The feature kind of this run (default :attr:`feature_kind`; a config option may choose another)."""
        return self.feature_kind

    def features(self, ctx: "RunContext") -> dict[str, "FeatureSet"]:
        """The features of every dataset the protocol needs, in ``datasets`` order."""
        return {name: ctx.features(name, self.kind(), self.feature_dtype) for name in self.datasets}

    def probe(self, ctx: "RunContext", features: dict[str, "FeatureSet"]) -> ProtocolResult:  # pragma: no cover
        """The metrics of the probe on ``features`` (``features[name].features`` / ``.labels``)."""
        raise NotImplementedError

    def run(self, ctx: "RunContext") -> ProtocolResult:
        """Features first (cached), then the probe."""
        return self.probe(ctx, self.features(ctx))
