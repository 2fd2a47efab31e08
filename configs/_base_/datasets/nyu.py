# NYU-Depth v2 in the BTS layout; --data-root DIR with
#   DIR/sync/<scene>/{rgb,sync_depth}_*.{jpg,png}            (train list paths are relative to train_dir)
#   DIR/official_splits/test/<scene>/{rgb,sync_depth}_*      (test list paths are relative to val_dir)
#   DIR/nyudepthv2_{train,test}_files_with_gt.txt  (or DIR/train_test_inputs/...; '<rgb> <depth> <focal>')
# Depth PNGs are uint16 millimetres (/ depth_scale); valid range (min_depth, max_depth) metres; the
# validation split is scored inside the Eigen crop (rows 45:471, cols 41:601 of 480x640, scaled
# proportionally for other sizes). DINOv3's own list files: train_split_file="nyu_train.txt", train_dir=".".
dataset = dict(type="nyu", root=None, train_dir="sync", val_dir="official_splits/test",
               train_split_file="nyudepthv2_train_files_with_gt.txt",
               val_split_file="nyudepthv2_test_files_with_gt.txt",
               depth_scale=1000.0, min_depth=1e-3, max_depth=10.0, eigen_crop=True,
               max_train_samples=None, max_val_samples=None)
# Joint transforms (dinobench.data.dense_transforms), official DINOv3 NYU recipe: NYU fixed crop, rotation
# +-2.5 deg (p 0.5), flip, random crop 416x544, colour augmentation (p 0.5, brightness 0.75-1.25);
# evaluation at the original size.
# CPU smoke override (synthetic 48x64): --cfg-options transform.train.crop_size=[32,48]
transform = dict(
    train=dict(fixed_crop="nyu", crop_size=(416, 544), rotation_deg=2.5, rotation_prob=0.5, flip_prob=0.5,
               color_aug=dict(prob=0.5, brightness_range=(0.75, 1.25))),
    eval=dict(fixed_crop=None, scale=None),
)
