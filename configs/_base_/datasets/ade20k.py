# ADE20K SceneParsing (150 classes), official layout; --data-root = ADEChallengeData2016 (or its parent):
#   images/{training,validation}/*.jpg, annotations/{training,validation}/*.png (0 = other -> ignored)
# max_{train,val}_samples: use only the first N pairs (sorted) of a split, e.g. for a smoke run.
dataset = dict(type="ade20k", root=None, reduce_zero_label=True, train_split="training", val_split="validation",
               max_train_samples=None, max_val_samples=None)
# Joint transforms (dinobench.data.dense_transforms), official DINOv3 ADE20K linear recipe:
# short side 512 x random ratio 0.5-2.0, random crop 512 (cat_max_ratio 0.75), flip 0.5, photometric
# distortion, pad to 512; evaluation: short side 512, metrics on the original-size mask.
# CPU smoke override: --cfg-options transform.train.scale=64 transform.train.crop_size=32 transform.eval.scale=64
transform = dict(
    train=dict(scale=512, ratio_range=(0.5, 2.0), crop_size=(512, 512), cat_max_ratio=0.75, flip_prob=0.5,
               photometric=True),
    eval=dict(scale=512),
)
