# scikit-learn's bundled real digits (8x8, 10 classes): seeded stratified 80/20 split.
dataset = dict(type="digits", val_fraction=0.2, split_seed=0)
# 8x8 -> 64x64 so that patch-8 and patch-16 backbones see 8x8 / 4x4 token grids.
transform = dict(resize=64, crop=64, interpolation="bilinear")
