"""Registers the linear-probe protocol (implementation: :mod:`dinobench.protocols.linear`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import HeadLayoutRegistry, HeadRegistry, ProtocolRegistry


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


@hookimpl
def dinobench_register_heads(registry: HeadRegistry) -> None:
    """The released ImageNet-1k linear classifier: the official ``hubconf.py`` entry, its
    ``--cfg-options`` building the released architecture as the official hub builder does."""
    registry.add("dinov3_vit7b16_lc", backbone="vit7b16", tasks=["imagenet-linear"],
                 file="dinov3_vit7b16_imagenet1k_linear_head-90d8ed92.pth",
                 backbone_file="dinov3_vit7b16_pretrain_lvd1689m-*.pth",
                 description="ImageNet-1k linear classifier on [CLS, mean patch] of the last block")
