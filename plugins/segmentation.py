"""Registers the semantic segmentation protocols (implementations: :mod:`dinobench.protocols.linear_seg`,
:mod:`dinobench.protocols.m2f_seg`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import HeadLayoutRegistry, HeadRegistry, ProtocolRegistry


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


@hookimpl
def dinobench_register_heads(registry: HeadRegistry) -> None:
    """The released ADE20K Mask2Former segmentor: the official ``hubconf.py`` entry, its
    ``--cfg-options`` building the released architecture as the official hub builder does."""
    registry.add("dinov3_vit7b16_ms", backbone="vit7b16", tasks=["ade20k-m2f"],
                 options={"protocol.head.hidden_dim": 2048},
                 file="dinov3_vit7b16_ade20k_m2f_head-bf307cb1.pth",
                 backbone_file="dinov3_vit7b16_pretrain_lvd1689m-*.pth",
                 description="ADE20K Mask2Former segmentor with ViT-Adapter (hidden dim 2048)")
