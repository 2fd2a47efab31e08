# Official DINOv3 linear depth (dinov3/eval/depth/configs/config-nyu.yaml): frozen backbone, LAST layer with
# the backbone norm, no class token -> BatchNorm -> 1x1 conv to 256 bins linearly spaced in
# [min_depth, max_depth] (dataset section), weights relu(x)+0.1 normalised ("linear"); SigLoss with its
# 100-iteration warm-up; whole-image evaluation with horizontal-flip TTA; main metric rmse.
# Head, inference and visualisation defaults: dinobench.protocols.depth.LinearDepthConfig; state only what differs.
_base_ = ["../train/nyu_depth_head.py"]  # the head-training recipe (train section)
protocol = dict(type="linear_depth")
