"""Registers the linear and DPT depth protocols (implementation: :mod:`dinobench.protocols.depth`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import HeadLayoutRegistry, ProtocolRegistry


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """The linear and DPT depth protocols."""
    registry.add("linear_depth", "dinobench.protocols.depth:LinearDepthProtocol",
                 description="official DINOv3 linear depth: frozen backbone, BN + 1x1 conv to 256 bins, SigLoss, "
                             "flip TTA, Eigen-crop metrics")
    registry.add("dpt", "dinobench.protocols.depth:DPTDepthProtocol",
                 description="DPT depth head on 4 backbone layers (official DINOv3 depther), 256 bins, SigLoss")


@hookimpl
def dinobench_register_head_layouts(registry: HeadLayoutRegistry) -> None:
    """The official files of the heads this family trains (``dinobench export --run``)."""
    registry.add("depth", "dinobench.heads.export_layouts:decoder_files",
                 description="linear / DPT depth decoder (and CHMv2): model_final.pth + config.yaml")
