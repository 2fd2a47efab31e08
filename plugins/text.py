"""Registers dino.txt evaluation: the zero-shot classification protocol (:mod:`dinobench.protocols.zeroshot`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import ProtocolRegistry


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """Zero-shot classification with a dino.txt head."""
    registry.add("zeroshot", "dinobench.protocols.zeroshot:ZeroShotProtocol",
                 description="dino.txt zero-shot classification: prompt-ensemble class embeddings (80 OpenAI "
                             "templates), cosine scores, top-1/top-5")
