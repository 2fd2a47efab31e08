# Official DINOv3 linear segmentation (dinov3/eval/segmentation/configs/config-ade20k-linear-training.yaml):
# frozen backbone, LAST layer with the backbone norm, no class token -> Dropout2d(0.1) -> BatchNorm -> 1x1 conv;
# per-pixel cross-entropy; sliding-window evaluation (crop 512, stride 341); mIoU from mmseg's IoUMetric.
# Reported (protocol.report="best", as the official train.py): the best-mIoU evaluation among those every
# train.eval_every iterations (official 5000) and the last one; the record also has mIoU_final (the last head).
# num_visualizations: predictions drawn by --save-predictions.
# Head, inference and visualisation defaults: dinobench.protocols.linear_seg.LinearSegConfig; state only what differs.
_base_ = ["../train/ade20k_linear_head.py"]  # the head-training recipe (train section)
protocol = dict(type="linear_seg")
