"""Registers the semantic segmentation protocols (implementations: :mod:`dinobench.protocols.linear_seg`,
:mod:`dinobench.protocols.m2f_seg`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import HeadLayoutRegistry, ProtocolRegistry


@hookimpl
def dinobench_register_protocols(registry: ProtocolRegistry) -> None:
    """The linear and Mask2Former segmentation protocols."""
    registry.add("linear_seg", "dinobench.protocols.linear_seg:LinearSegProtocol",
                 description="official DINOv3 linear segmentation: frozen backbone, BN + 1x1 conv head, "
                             "slide inference, mmseg mIoU")
    registry.add("m2f_seg", "dinobench.protocols.m2f_seg:M2FSegProtocol",
                 description="DINOv3's segmentor: frozen backbone, ViT-Adapter + Mask2Former head, Hungarian-"
                             "matched mask losses, slide (multi-scale) inference, mmseg mIoU")


@hookimpl
def dinobench_register_head_layouts(registry: HeadLayoutRegistry) -> None:
    """The official files of the heads this family trains (``dinobench export --run``)."""
    registry.add("segmentation", "dinobench.heads.export_layouts:decoder_files",
                 description="linear / Mask2Former segmentation head: model_final.pth + config.yaml")
