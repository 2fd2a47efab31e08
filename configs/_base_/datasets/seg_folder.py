# Your segmentation data: <data-root>/{train,val}/images/*.{jpg,png} + <data-root>/{train,val}/masks/<stem>.png
# (single-channel class ids, 255 = ignore); class names from dataset.classes or <data-root>/classes.txt.
# reduce_zero_label=True if id 0 means "unlabelled" (then 0 -> ignore, k -> k-1).
dataset = dict(type="seg_folder", root=None, classes=None, reduce_zero_label=False, train_split="train",
               val_split="val", max_train_samples=None, max_val_samples=None)
# Same joint transforms as ADE20K (dinobench.data.dense_transforms); scale=None keeps the original size.
transform = dict(
    train=dict(scale=512, ratio_range=(0.5, 2.0), crop_size=(512, 512), cat_max_ratio=0.75, flip_prob=0.5,
               photometric=True),
    eval=dict(scale=512),
)
