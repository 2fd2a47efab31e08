"""Registers the linear and DPT depth protocols (implementation: :mod:`dinobench.protocols.depth`)."""

from dinobench.hookspecs import hookimpl
from dinobench.registry import HeadLayoutRegistry, HeadRegistry, ProtocolRegistry

#: the SynthMix DPT depther of ViT-7B (``dinov3_vit7b16_dd``): layers [9, 19, 29, 39], 512 channels,
#: post-process channels 2048, BatchNorm, backbone norm, no class token, 256 linear bins over 0.001-100 m;
_DD = {"protocol.head.layers": "four_even", "protocol.head.channels": 512,
       "protocol.head.post_process_channels": [2048, 2048, 2048, 2048], "protocol.head.use_batchnorm": True,
       "protocol.head.use_cls_token": False, "protocol.head.use_backbone_norm": True, "protocol.head.n_bins": 256,
       "protocol.head.min_depth": 0.001, "protocol.head.max_depth": 100.0,
       # its official evaluation (dinov3/eval/depth/configs/config-nyu-synthmix-dpt-inference.yaml): short side 768
       # (image only; the prediction is resized back to the ground truth), flip TTA, least-squares alignment
       "transform.eval.scale": 768, "protocol.inference.flip": True, "protocol.inference.align_least_squares": True}


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


@hookimpl
def dinobench_register_heads(registry: HeadRegistry) -> None:
    """The released SynthMix DPT depther: the official ``hubconf.py`` entry, its
    ``--cfg-options`` building the released architecture as the official hub builder does."""
    registry.add("dinov3_vit7b16_dd", backbone="vit7b16", tasks=["nyu-dpt"], options=dict(_DD),
                 file="dinov3_vit7b16_synthmix_dpt_head-02040be1.pth",
                 backbone_file="dinov3_vit7b16_pretrain_lvd1689m-*.pth",
                 description="SynthMix DPT depth estimator (0.001-100 m, 4 layers, 256 bins)")
