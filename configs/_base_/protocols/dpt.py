# DPT depth head as the official DINOv3 depther (dinov3/eval/depth/models/dpt_head.py, hub/depthers.py):
# 4 layers at even intervals (FOUR_EVEN_INTERVALS: [4, 11, 17, 23] on ViT-L) with the backbone norm,
# reassembled at 4x/2x/1x/0.5x, fused with residual conv units, 512 channels, post-process channels = the
# backbone width (None), BatchNorm, no class token (readout "ignore"), 256 linear bins; same loss,
# schedule and evaluation as the linear depth head (official NYU recipe).
_base_ = ["./linear_depth.py"]
# Defaults: dinobench.protocols.depth.DPTDepthConfig; state only what differs.
protocol = dict(type="dpt")
