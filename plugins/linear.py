"""Registers the linear-probe protocol (implementation: :mod:`dinobench.protocols.linear`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import HeadLayoutRegistry, ProtocolRegistry


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """The linear-probe protocol."""
    registry.add("linear", "dinobench.protocols.linear:LinearProbeProtocol",
                 description="official DINOv3 linear probe: lr x n_blocks grid of linear heads, SGD + cosine")


@hookimpl
def dinobench_register_head_layouts(registry: HeadLayoutRegistry) -> None:
    """The official files of the heads this family trains (``dinobench export --run``)."""
    registry.add("classifier", "dinobench.heads.export_layouts:classifier_files",
                 description="the linear probe head: the hub head + an official linear.py checkpoint")
