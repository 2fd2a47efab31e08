# Plain-DETR detection (DINOv3's released detector): frozen backbone -> four evenly spaced blocks concatenated ->
# 1x1 conv + GroupNorm -> encoder -> two-stage proposals at 4 strides -> 6-layer global decoder with box-relative
# position bias, box refinement, look-forward-twice, reparameterised boxes; hybrid matching (1500 one-to-one +
# 1500 one-to-many queries, k=6). head_weights=PATH: evaluate that detector checkpoint without training.
# Head, loss and inference defaults: dinobench.protocols.plaindetr.PlainDetrConfig; state only what differs.
_base_ = ["../train/coco_plaindetr_head.py"]  # the head-training recipe (train section)
protocol = dict(type="plaindetr")
