"""Registers the linear-probe protocol (implementation: :mod:`dinobench.protocols.linear`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import ProtocolRegistry


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """The linear-probe protocol."""
    registry.add("linear", "dinobench.protocols.linear:LinearProbeProtocol",
                 description="official DINOv3 linear probe: lr x n_blocks grid of linear heads, SGD + cosine")
