# Official DINOv3 linear segmentation (dinov3/eval/segmentation/configs/config-ade20k-linear-training.yaml):
# frozen backbone, LAST layer with the backbone norm, no class token -> Dropout2d(0.1) -> BatchNorm -> 1x1 conv;
# per-pixel cross-entropy; sliding-window evaluation (crop 512, stride 341); mIoU from mmseg's IoUMetric.
# num_visualizations: predictions drawn by --save-predictions.
# Head, inference and visualisation defaults: dinobench.protocols.linear_seg.LinearSegConfig; state only what differs.
_base_ = ["../train/ade20k_linear_head.py"]  # the head-training recipe (train section)
protocol = dict(type="linear_seg")
