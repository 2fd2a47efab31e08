# COCO 2017 detection, official layout; --data-root = the folder holding annotations/, train2017/, val2017/.
# label_mode="category_id": labels are the COCO category ids (91 classes with the unused ids, DETR's and the
# DINOv3 release's convention); "contiguous": 0..K-1. max_{train,val}_samples: the first N images (sorted ids).
dataset = dict(type="coco", root=None, train_split="train2017", val_split="val2017", label_mode="category_id",
               max_train_samples=None, max_val_samples=None)
# Joint transforms (dinobench.data.detection_transforms), DETR's COCO recipe: flip 0.5; short side from 480..800
# (step 32, long side <= 1333) or resize to 400/500/600 + random crop 384..600 + the same multi-scale resize.
# Evaluation: short side 800, long side <= 1333; boxes are scored on the original image.
transform = dict(
    train=dict(scales=[480, 512, 544, 576, 608, 640, 672, 704, 736, 768, 800], max_size=1333, flip_prob=0.5,
               crop=dict(resize=[400, 500, 600], min_size=384, max_size=600)),
    eval=dict(scale=800, max_size=1333),
)
