# Mask2Former segmentation (DINOv3's released segmentor): frozen backbone -> ViT-Adapter at four evenly spaced
# blocks -> Mask2Former head (multi-scale deformable pixel decoder + masked-attention decoder); Hungarian matching
# and point-sampled mask losses; slide inference with softmax(class) . sigmoid(mask) semantic scores.
# head_weights=PATH: evaluate that segmentor checkpoint (official or trained here) without training.
# Head, loss and inference defaults: dinobench.protocols.m2f_seg.M2FConfig; state only what differs.
_base_ = ["../train/ade20k_m2f_head.py"]  # the head-training recipe (train section)
protocol = dict(type="m2f_seg")
