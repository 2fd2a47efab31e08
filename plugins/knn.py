"""Registers the kNN protocol (implementation: :mod:`dinobench.protocols.knn`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import ProtocolRegistry


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """The kNN protocol."""
    registry.add("knn", "dinobench.protocols.knn:KNNProtocol",
                 description="official DINOv3 kNN: cosine top-k, softmax(sim/T) vote, T=0.07")
