"""Registers the linear segmentation protocol (implementation: :mod:`dinobench.protocols.linear_seg`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import ProtocolRegistry


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """The linear segmentation protocol."""
    registry.add("linear_seg", "dinobench.protocols.linear_seg:LinearSegProtocol",
                 description="official DINOv3 linear segmentation: frozen backbone, BN + 1x1 conv head, "
                             "slide inference, mmseg mIoU")
